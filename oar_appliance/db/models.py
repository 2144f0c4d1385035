"""peewee models of the OAR database.

Table and column names are the ones of the OAR documentation ("Database scheme"), plus
the columns OAR 2.5/3 users rely on (``array_id``, ``initial_request``, ``available_upto``,
``drain``, the ``*_index`` history flags, ``walltime_change``...).  Dates and durations are
integers (seconds since the epoch).

The ``resources`` model declares only the *system* columns.  Resource properties (the
default ones such as ``cpu`` or ``cpuset`` and those added by ``oarproperty``) are real
columns of the table too, but they come and go at run time, so they are read and written
through :mod:`oar_appliance.db.properties`, never as model fields.
"""

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    Check,
    CharField,
    CompositeKey,
    DatabaseProxy,
    IntegerField,
    Model,
    TextField,
)

#: bound to the real database by :func:`oar_appliance.db.connection.connect`
database_proxy = DatabaseProxy()

JOB_STATES = (
    "Waiting", "Hold", "toLaunch", "toError", "toAckReservation", "Launching",
    "Running", "Suspended", "Resuming", "Finishing", "Terminated", "Error",
)
RESOURCE_STATES = ("Alive", "Dead", "Suspected", "Absent")
NEXT_STATES = ("UnChanged",) + RESOURCE_STATES
FRAG_STATES = ("LEON", "TIMER_ARMED", "LEON_EXTERMINATE", "FRAGGED")
RESERVATION_STATES = ("None", "toSchedule", "Scheduled")
YES_NO = ("YES", "NO")
INDEX_VALUES = ("CURRENT", "LOG")

#: ``state_num`` of each resource state, as OAR orders them
STATE_NUMBERS = {"Alive": 1, "Absent": 2, "Suspected": 3, "Dead": 4}


def one_of(column: str, values: tuple[str, ...]) -> Check:
    """CHECK constraint keeping an ENUM-like text column within its values."""
    quoted = ", ".join("'%s'" % v for v in values)  # constants of this module only
    return Check(f'"{column}" IN ({quoted})')


def yes_no(column: str, default: str = "NO") -> CharField:
    return CharField(max_length=3, default=default, constraints=[one_of(column, YES_NO)])


def history_index(column: str) -> CharField:
    return CharField(max_length=7, default="CURRENT", constraints=[one_of(column, INDEX_VALUES)])


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Schema(BaseModel):
    """One row: the schema version reached by the migrations."""

    version = IntegerField()
    name = CharField(max_length=255, default="")

    class Meta:
        table_name = "schema"
        primary_key = False


class Accounting(BaseModel):
    window_start = BigIntegerField()
    window_stop = BigIntegerField()
    accounting_user = CharField(max_length=255)
    accounting_project = CharField(max_length=255)
    queue_name = CharField(max_length=100)
    consumption_type = CharField(max_length=5, constraints=[one_of("consumption_type", ("ASKED", "USED"))])
    consumption = BigIntegerField(default=0)

    class Meta:
        table_name = "accounting"
        primary_key = CompositeKey(
            "window_start", "window_stop", "accounting_user", "queue_name",
            "accounting_project", "consumption_type",
        )
        indexes = (
            (("window_start",), False),
            (("window_stop",), False),
            (("accounting_user",), False),
            (("queue_name",), False),
            (("accounting_project",), False),
            (("consumption_type",), False),
        )


class AdmissionRule(BaseModel):
    id = AutoField()
    rule = TextField()
    priority = IntegerField(default=0)
    enabled = yes_no("enabled", default="YES")

    class Meta:
        table_name = "admission_rules"


class EventLog(BaseModel):
    event_id = AutoField()
    type = CharField(max_length=100)
    job_id = IntegerField(default=0)
    date = BigIntegerField(default=0)
    description = CharField(max_length=255, default="")
    to_check = yes_no("to_check", default="YES")

    class Meta:
        table_name = "event_logs"
        indexes = ((("type",), False), (("to_check",), False), (("job_id",), False))


class EventLogHostname(BaseModel):
    event_id = IntegerField()
    hostname = CharField(max_length=255)

    class Meta:
        table_name = "event_log_hostnames"
        primary_key = CompositeKey("event_id", "hostname")
        indexes = ((("hostname",), False),)


class File(BaseModel):
    # the documented column name keeps its capital letter
    file_id = AutoField(column_name="idFile")
    md5sum = CharField(max_length=255, null=True)
    location = CharField(max_length=255, null=True)
    method = CharField(max_length=255, null=True)
    compression = CharField(max_length=255, null=True)
    size = BigIntegerField(default=0)

    class Meta:
        table_name = "files"
        indexes = ((("md5sum",), False),)


class FragJob(BaseModel):
    frag_id_job = IntegerField(primary_key=True)
    frag_date = BigIntegerField(default=0)
    frag_state = CharField(max_length=16, default="LEON", constraints=[one_of("frag_state", FRAG_STATES)])

    class Meta:
        table_name = "frag_jobs"
        indexes = ((("frag_state",), False),)


class _GanttResources(BaseModel):
    moldable_job_id = IntegerField()
    resource_id = IntegerField()

    class Meta:
        primary_key = CompositeKey("moldable_job_id", "resource_id")


class GanttJobResource(_GanttResources):
    class Meta:
        table_name = "gantt_jobs_resources"


class GanttJobResourceVisu(_GanttResources):
    class Meta:
        table_name = "gantt_jobs_resources_visu"


class GanttJobPrediction(BaseModel):
    moldable_job_id = IntegerField(primary_key=True)
    start_time = BigIntegerField(default=0)

    class Meta:
        table_name = "gantt_jobs_predictions"


class GanttJobPredictionVisu(BaseModel):
    moldable_job_id = IntegerField(primary_key=True)
    start_time = BigIntegerField(default=0)

    class Meta:
        table_name = "gantt_jobs_predictions_visu"


class Job(BaseModel):
    job_id = AutoField()
    array_id = IntegerField(default=0)
    array_index = IntegerField(default=1)
    initial_request = TextField(null=True)
    job_name = CharField(max_length=100, null=True)
    cpuset_name = CharField(max_length=255, null=True)
    job_type = CharField(
        max_length=11, default="PASSIVE", constraints=[one_of("job_type", ("INTERACTIVE", "PASSIVE"))]
    )
    info_type = CharField(max_length=255, null=True)
    state = CharField(max_length=16, default="Waiting", constraints=[one_of("state", JOB_STATES)])
    reservation = CharField(
        max_length=10, default="None", constraints=[one_of("reservation", RESERVATION_STATES)]
    )
    message = CharField(max_length=255, default="")
    scheduler_info = CharField(max_length=255, default="")
    job_user = CharField(max_length=255, default="")
    project = CharField(max_length=255, default="")
    job_group = CharField(max_length=255, default="")
    command = TextField(null=True)
    exit_code = IntegerField(null=True)
    queue_name = CharField(max_length=100, default="")
    properties = TextField(null=True)
    launching_directory = TextField(default="")
    submission_time = BigIntegerField(default=0)
    start_time = BigIntegerField(default=0)
    stop_time = BigIntegerField(default=0)
    file_id = IntegerField(null=True)
    accounted = yes_no("accounted")
    notify = CharField(max_length=255, null=True)
    assigned_moldable_job = IntegerField(default=0)
    checkpoint = IntegerField(default=0)
    checkpoint_signal = IntegerField(default=0)
    stdout_file = TextField(null=True)
    stderr_file = TextField(null=True)
    resubmit_job_id = IntegerField(default=0)
    suspended = yes_no("suspended")
    job_env = TextField(null=True)
    last_karma = IntegerField(null=True)

    class Meta:
        table_name = "jobs"
        indexes = (
            (("state",), False),
            (("reservation",), False),
            (("queue_name",), False),
            (("accounted",), False),
            (("suspended",), False),
            (("job_user",), False),
            (("array_id",), False),
        )


class JobDependency(BaseModel):
    job_id = IntegerField()
    job_id_required = IntegerField()
    job_dependency_index = history_index("job_dependency_index")

    class Meta:
        table_name = "job_dependencies"
        primary_key = CompositeKey("job_id", "job_id_required")
        indexes = ((("job_id",), False), (("job_id_required",), False))


class MoldableJobDescription(BaseModel):
    moldable_id = AutoField()
    moldable_job_id = IntegerField()
    moldable_walltime = BigIntegerField(default=0)
    moldable_index = history_index("moldable_index")

    class Meta:
        table_name = "moldable_job_descriptions"
        indexes = ((("moldable_job_id",), False),)


class JobResourceGroup(BaseModel):
    res_group_id = AutoField()
    res_group_moldable_id = IntegerField()
    res_group_property = TextField(null=True)
    res_group_index = history_index("res_group_index")

    class Meta:
        table_name = "job_resource_groups"
        indexes = ((("res_group_moldable_id",), False),)


class JobResourceDescription(BaseModel):
    res_job_group_id = IntegerField()
    res_job_resource_type = CharField(max_length=255)
    res_job_value = IntegerField()
    res_job_order = IntegerField(default=0)
    res_job_index = history_index("res_job_index")

    class Meta:
        table_name = "job_resource_descriptions"
        primary_key = CompositeKey("res_job_group_id", "res_job_resource_type", "res_job_order")
        indexes = ((("res_job_group_id",), False),)


class JobStateLog(BaseModel):
    job_state_log_id = AutoField()
    job_id = IntegerField()
    job_state = CharField(max_length=16, constraints=[one_of("job_state", JOB_STATES)])
    date_start = BigIntegerField(default=0)
    date_stop = BigIntegerField(default=0)

    class Meta:
        table_name = "job_state_logs"
        indexes = ((("job_id",), False), (("job_state",), False))


class JobType(BaseModel):
    job_type_id = AutoField()
    job_id = IntegerField()
    type = CharField(max_length=255)
    type_index = history_index("type_index")

    class Meta:
        table_name = "job_types"
        indexes = ((("job_id",), False), (("type",), False))


class Resource(BaseModel):
    """System columns of ``resources``; properties live in :mod:`.properties`."""

    resource_id = AutoField()
    type = CharField(max_length=100, default="default")
    network_address = CharField(max_length=100, default="")
    state = CharField(max_length=9, default="Alive", constraints=[one_of("state", RESOURCE_STATES)])
    next_state = CharField(max_length=9, default="UnChanged", constraints=[one_of("next_state", NEXT_STATES)])
    finaud_decision = yes_no("finaud_decision")
    next_finaud_decision = yes_no("next_finaud_decision")
    state_num = IntegerField(default=1)
    suspended_jobs = yes_no("suspended_jobs")
    scheduler_priority = BigIntegerField(default=0)
    besteffort = yes_no("besteffort", default="YES")
    deploy = yes_no("deploy")
    expiry_date = BigIntegerField(default=0)
    desktop_computing = yes_no("desktop_computing")
    last_job_date = BigIntegerField(default=0)
    available_upto = BigIntegerField(default=2147483647)
    last_available_upto = BigIntegerField(default=0)
    drain = yes_no("drain")
    cm_availability = BigIntegerField(default=0)

    class Meta:
        table_name = "resources"
        indexes = (
            (("state",), False),
            (("next_state",), False),
            (("type",), False),
            (("suspended_jobs",), False),
            (("network_address",), False),
        )


class ResourceLog(BaseModel):
    resource_log_id = AutoField()
    resource_id = IntegerField()
    attribute = CharField(max_length=255)
    value = CharField(max_length=255, default="")
    date_start = BigIntegerField(default=0)
    date_stop = BigIntegerField(default=0)
    finaud_decision = yes_no("finaud_decision")

    class Meta:
        table_name = "resource_logs"
        indexes = ((("resource_id",), False), (("attribute",), False))


class AssignedResource(BaseModel):
    moldable_job_id = IntegerField()
    resource_id = IntegerField()
    assigned_resource_index = history_index("assigned_resource_index")

    class Meta:
        table_name = "assigned_resources"
        primary_key = CompositeKey("moldable_job_id", "resource_id")
        indexes = ((("moldable_job_id",), False), (("resource_id",), False))


class Queue(BaseModel):
    queue_name = CharField(max_length=100, primary_key=True)
    priority = IntegerField(default=0)
    scheduler_policy = CharField(max_length=100, default="oar_sched_gantt_with_timesharing")
    state = CharField(max_length=9, default="Active", constraints=[one_of("state", ("Active", "notActive"))])

    class Meta:
        table_name = "queues"


class Challenge(BaseModel):
    """Secret shared by the server and a job's oarexec; never readable by users."""

    job_id = IntegerField(primary_key=True)
    challenge = CharField(max_length=255)
    ssh_private_key = TextField(null=True, default=None)
    ssh_public_key = TextField(null=True, default=None)

    class Meta:
        table_name = "challenges"


class WalltimeChange(BaseModel):
    job_id = IntegerField(primary_key=True)
    pending = IntegerField(default=0)
    force = yes_no("force")
    delay_next_jobs = yes_no("delay_next_jobs")
    granted = IntegerField(default=0)
    granted_with_force = IntegerField(default=0)
    granted_with_delaying_next_jobs = IntegerField(default=0)

    class Meta:
        table_name = "walltime_change"


#: every table, in creation order
ALL_MODELS = (
    Schema, Accounting, AdmissionRule, EventLog, EventLogHostname, File, FragJob,
    GanttJobResource, GanttJobResourceVisu, GanttJobPrediction, GanttJobPredictionVisu,
    Job, JobDependency, MoldableJobDescription, JobResourceGroup, JobResourceDescription,
    JobStateLog, JobType, Resource, ResourceLog, AssignedResource, Queue, Challenge,
    WalltimeChange,
)



def _add_sql_defaults(models) -> None:
    """Give every constant default to the database too (the documented DEFAULTs), so that
    rows written by plain SQL (admins, bulk paths, other tools) get them as well."""
    for model in models:
        for field in model._meta.sorted_fields:
            value = field.default
            if isinstance(field, AutoField) or value is None or callable(value):
                continue
            literal = str(int(value)) if isinstance(value, int) else "'%s'" % value.replace("'", "''")
            field.constraints = list(field.constraints or []) + [SQL(f"DEFAULT {literal}")]


_add_sql_defaults(ALL_MODELS)

#: tables the read-only database account may not read
SECRET_TABLES = ("challenges",)

__all__ = [m.__name__ for m in ALL_MODELS] + [
    "ALL_MODELS", "SECRET_TABLES", "database_proxy", "JOB_STATES", "RESOURCE_STATES",
    "NEXT_STATES", "STATE_NUMBERS",
]
