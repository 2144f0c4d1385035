"""The schema on both backends: every documented table and column, versions, the read-only account."""

import peewee
import pytest

from oar_appliance.db import connection, schema
from oar_appliance.db.models import ALL_MODELS, Queue
from oar_appliance.errors import ConflictError, DatabaseError
from tests.conftest import RO_LOGIN, RO_PASSWORD

# The "Database scheme" section of the OAR documentation, table by table.
SPEC_COLUMNS = {
    "accounting": "window_start window_stop accounting_user accounting_project queue_name consumption_type consumption",
    "admission_rules": "id rule",
    "event_logs": "event_id type job_id date description to_check",
    "event_log_hostnames": "event_id hostname",
    "files": "idFile md5sum location method compression size",
    "frag_jobs": "frag_id_job frag_date frag_state",
    "gantt_jobs_resources": "moldable_job_id resource_id",
    "gantt_jobs_resources_visu": "moldable_job_id resource_id",
    "gantt_jobs_predictions": "moldable_job_id start_time",
    "gantt_jobs_predictions_visu": "moldable_job_id start_time",
    "jobs": "job_id job_name cpuset_name job_type info_type state reservation message job_user command "
            "queue_name properties launching_directory submission_time start_time stop_time file_id "
            "accounted notify assigned_moldable_job checkpoint checkpoint_signal stdout_file stderr_file "
            "resubmit_job_id project suspended job_env exit_code job_group",
    "job_dependencies": "job_id job_id_required",
    "moldable_job_descriptions": "moldable_id moldable_job_id moldable_walltime",
    "job_resource_groups": "res_group_id res_group_moldable_id res_group_property",
    "job_resource_descriptions": "res_job_group_id res_job_resource_type res_job_value res_job_order",
    "job_state_logs": "job_state_log_id job_id job_state date_start date_stop",
    "job_types": "job_type_id job_id type type_index",
    "resources": "resource_id type network_address state next_state finaud_decision next_finaud_decision "
                 "state_num suspended_jobs scheduler_priority switch cpu cpuset besteffort deploy "
                 "expiry_date desktop_computing last_job_date cm_availability",
    "resource_logs": "resource_log_id resource_id attribute value date_start date_stop finaud_decision",
    "assigned_resources": "moldable_job_id resource_id",
    "queues": "queue_name priority scheduler_policy state",
    "challenges": "job_id challenge ssh_private_key ssh_public_key",
}
# Columns OAR 2.5/3 users rely on, beyond the documentation.
LATER_COLUMNS = {
    "jobs": "array_id array_index initial_request scheduler_info last_karma",
    "resources": "available_upto last_available_upto drain",
    "moldable_job_descriptions": "moldable_index",
    "job_resource_groups": "res_group_index",
    "job_resource_descriptions": "res_job_index",
    "job_dependencies": "job_dependency_index",
    "assigned_resources": "assigned_resource_index",
    "walltime_change": "job_id pending force delay_next_jobs granted granted_with_force "
                       "granted_with_delaying_next_jobs",
}


def test_every_documented_table_and_column_exists(db):
    tables = set(db.get_tables())
    for table, columns in list(SPEC_COLUMNS.items()) + list(LATER_COLUMNS.items()):
        assert table in tables, table
        live = {c.name for c in db.get_columns(table)}
        missing = set(columns.split()) - live
        assert not missing, f"{table}: {missing}"


def test_documented_indexes_exist(db):
    def indexed(table):
        return {tuple(ix.columns) for ix in db.get_indexes(table)}

    assert {("state",), ("reservation",), ("queue_name",), ("accounted",), ("suspended",)} <= indexed("jobs")
    assert {("state",), ("next_state",), ("type",), ("suspended_jobs",)} <= indexed("resources")
    assert {("type",), ("to_check",)} <= indexed("event_logs")
    assert {("frag_state",)} <= indexed("frag_jobs")


def test_check_reports_a_clean_database(db):
    assert schema.check(db, readonly_login=RO_LOGIN) == []


def test_check_reports_missing_table_and_column(db, backend_name):
    db.execute_sql('DROP TABLE "walltime_change"')
    db.execute_sql('DROP INDEX IF EXISTS "jobs_suspended"')
    problems = schema.check(db)
    assert "table walltime_change is missing" in problems
    assert "index on jobs(suspended) is missing" in problems


def test_default_queues(db):
    queues = {q.queue_name: (q.priority, q.state) for q in Queue.select()}
    assert queues == {"admin": (10, "Active"), "default": (2, "Active"), "besteffort": (0, "Active")}


def test_create_twice_is_refused_and_changes_nothing(db):
    Queue.create(queue_name="extra", priority=1)
    with pytest.raises(ConflictError):
        schema.create(db)
    assert Queue.select().where(Queue.queue_name == "extra").exists()


def test_upgrade_applies_pending_migrations_in_order(db):
    """A second migration, registered by the test, is applied once by upgrade."""
    def add_column(database, backend):
        backend.add_column(database, "queues", "max_jobs", "int")

    migrations = schema.MIGRATIONS + (schema.Migration(2, "queues.max_jobs", add_column),)
    with pytest.raises(DatabaseError, match="oar-database --upgrade"):
        schema.require_schema(db, migrations)
    applied = schema.upgrade(db, migrations)
    assert [m.version for m in applied] == [2]
    assert "max_jobs" in {c.name for c in db.get_columns("queues")}
    assert schema.current_version(db) == 2
    assert schema.upgrade(db, migrations) == []
    schema.require_schema(db, migrations)


def test_failed_migration_leaves_previous_version(db):
    def broken(database, backend):
        backend.add_column(database, "queues", "half_done", "int")
        raise peewee.IntegrityError("simulated failure in the middle of a migration")

    migrations = schema.MIGRATIONS + (schema.Migration(2, "broken", broken),)
    with pytest.raises(peewee.IntegrityError):
        schema.upgrade(db, migrations)
    assert schema.current_version(db) == 1
    assert "half_done" not in {c.name for c in db.get_columns("queues")}


def test_reset_empties_everything(db):
    Queue.create(queue_name="extra", priority=1)
    schema.reset(db, readonly_account=(RO_LOGIN, RO_PASSWORD))
    assert not Queue.select().where(Queue.queue_name == "extra").exists()
    assert schema.check(db, readonly_login=RO_LOGIN) == []


def test_missing_schema_is_a_clear_error(db_url):
    database = connection.connect(db_url, create=True)
    with pytest.raises(DatabaseError, match="oar-database --create"):
        schema.require_schema(database)
    database.close()


def test_missing_sqlite_file_is_not_created(tmp_path):
    with pytest.raises(DatabaseError, match="does not exist"):
        connection.connect(f"sqlite:///{tmp_path}/absent.sqlite")
    assert not (tmp_path / "absent.sqlite").exists()


@pytest.mark.parametrize("backend_name", ["postgresql"])
def test_readonly_account_reads_all_but_challenges(db, db_url, pg_cluster):
    import psycopg

    dbname = db_url.rsplit("/", 1)[1]
    db.execute_sql("INSERT INTO challenges (job_id, challenge) VALUES (1, 'secret')")
    with psycopg.connect(host="127.0.0.1", port=pg_cluster.port, user=RO_LOGIN,
                         password=RO_PASSWORD, dbname=dbname, autocommit=True) as ro:
        for model in ALL_MODELS:
            table = model._meta.table_name
            if table == "challenges":
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    ro.execute('SELECT * FROM "challenges"')
            else:
                ro.execute(f'SELECT * FROM "{table}"')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ro.execute("INSERT INTO queues (queue_name) VALUES ('x')")


@pytest.mark.parametrize("backend_name", ["postgresql"])
def test_check_notices_a_readable_challenges_table(db):
    db.execute_sql(f'GRANT SELECT ON "challenges" TO {RO_LOGIN}')
    assert schema.check(db, readonly_login=RO_LOGIN) == [
        f"read-only account {RO_LOGIN} can read the secret table challenges"
    ]
