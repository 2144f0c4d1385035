"""The spec's scheduling examples, through the commands, on both backends.

Jobs are submitted with ``oarsub`` (its real main()), a round is run with ``oar-metasched
--now EPOCH`` and the decisions are read in the database and with ``oarstat``.

The cluster is the one of the spec's hierarchy figure: two switches, two nodes on each,
two cpus per node and two cores per cpu::

    sw1: node-1 (cpu 1: r1 r2, cpu 2: r3 r4)    node-2 (cpu 3: r5 r6, cpu 4: r7 r8)
    sw2: node-3 (cpu 5: r9 r10, cpu 6: r11 r12) node-4 (cpu 7: r13 r14, cpu 8: r15 r16)

There is no server yet to run jobs: where a test needs a job to be Running or Terminated
it sets that state in the database, as the server would (said at each place).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.sqlutil import run_sql

SECURITY = 1                        # SCHEDULER_JOB_SECURITY_TIME default
HOUR = 3600
NODE = {"node-1": [1, 2, 3, 4], "node-2": [5, 6, 7, 8],
        "node-3": [9, 10, 11, 12], "node-4": [13, 14, 15, 16]}


@pytest.fixture
def fig(created, oar_conf):
    """The cluster of the hierarchy figure, with ``switch`` among the hierarchy labels."""
    oar_conf.write_text(oar_conf.read_text()
                        + "HIERARCHY_LABELS=resource_id,network_address,switch,cpu,core\n")
    oar = created
    for offset, switch in ((1, "sw1"), (3, "sw2")):
        result = oar("oar-resources-add", "-H", "2", "--offset", str(offset), "-C", "2", "-c", "2",
                     "-p", f"switch={switch}")
        assert result.rc == 0, result.err
    return oar


@pytest.fixture
def now():
    """A round date after every submission of the test (jobs are submitted at real time)."""
    return int(time.time()) + 100


def sub(oar, *argv) -> int:
    result = oar("oarsub", *argv)
    assert result.rc == 0, result.err
    ids = [int(line.split("=", 1)[1]) for line in result.lines if line.startswith("OAR_JOB_ID=")]
    assert len(ids) == 1, result.out
    return ids[0]


def round_at(oar, now) -> str:
    result = oar("oar-metasched", "--now", str(now))
    assert result.rc == 0, result.err
    return result.out.strip()


def row(db_url, job_id) -> dict:
    found = run_sql(db_url, "SELECT state, message, reservation, assigned_moldable_job, start_time "
                            "FROM jobs WHERE job_id = %d" % job_id)[0]
    return dict(zip(("state", "message", "reservation", "moldable", "start"), found))


def assigned(db_url, job_id) -> list[int]:
    return sorted(r for (r,) in run_sql(
        db_url, "SELECT a.resource_id FROM assigned_resources a JOIN jobs j "
                "ON j.assigned_moldable_job = a.moldable_job_id WHERE j.job_id = %d" % job_id))


def hosts_of(db_url, resource_ids) -> list[str]:
    if not resource_ids:
        return []
    rows = run_sql(db_url, "SELECT DISTINCT network_address FROM resources WHERE resource_id IN (%s)"
                   % ", ".join(map(str, resource_ids)))
    return sorted(h for (h,) in rows)


def stat(oar, job_id) -> dict:
    result = oar("oarstat", "-f", "-j", str(job_id), "-J")
    assert result.rc == 0, result.err
    return json.loads(result.out)[str(job_id)]


def predicted(oar, job_id):
    data = stat(oar, job_id)
    return data["scheduled_start"], sorted(data["scheduled_resources"] or [])


def set_state(db_url, job_id, state, exit_code=None):
    """What the server (not built yet) records when it runs or ends a job."""
    run_sql(db_url, "UPDATE jobs SET state = %s, exit_code = %s WHERE job_id = %d"
            % (f"'{state}'", "NULL" if exit_code is None else exit_code, job_id))


def moldable_ids(db_url, job_id) -> list[int]:
    return [m for (m,) in run_sql(db_url, "SELECT moldable_id FROM moldable_job_descriptions "
                                          "WHERE moldable_job_id = %d ORDER BY moldable_id" % job_id)]


def date_text(seconds) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


# ------------------------------------------------------------------ the hierarchy figure

def test_switch_2_nodes_1_takes_one_node_on_each_switch(fig, db_url, now):
    jid = sub(fig, "-l", "/switch=2/nodes=1,walltime=1:00:00", "prog")
    round_at(fig, now)
    assert row(db_url, jid)["state"] == "toLaunch"
    assert assigned(db_url, jid) == NODE["node-1"] + NODE["node-3"]
    assert row(db_url, jid)["message"] == "R=8,W=1:0:0,J=B,Q=default"


def test_nodes_2_cpu_1_takes_one_cpu_on_two_nodes(fig, db_url, now):
    jid = sub(fig, "-l", "/nodes=2/cpu=1,walltime=1:00:00", "prog")
    round_at(fig, now)
    assert assigned(db_url, jid) == [1, 2, 5, 6]          # cpu 1 of node-1, cpu 3 of node-2


def test_the_two_requests_of_the_figure_side_by_side(fig, db_url, now):
    """/switch=2/nodes=1 leaves one node per switch; /switch=1/nodes=2 then needs a whole
    switch and waits for the first job, while /nodes=2/cpu=1 fits now in what is left."""
    first = sub(fig, "-l", "/switch=2/nodes=1,walltime=1:00:00", "a")
    whole_switch = sub(fig, "-l", "/switch=1/nodes=2,walltime=1:00:00", "b")
    cpus = sub(fig, "-l", "/nodes=2/cpu=1,walltime=0:30:00", "c")
    out = round_at(fig, now)
    assert out.startswith("Scheduled 3 jobs: 2 to launch, 1 planned")
    assert hosts_of(db_url, assigned(db_url, first)) == ["node-1", "node-3"]
    assert row(db_url, whole_switch)["state"] == "Waiting"
    start, resources = predicted(fig, whole_switch)
    assert start == now + HOUR + SECURITY
    assert resources == NODE["node-1"] + NODE["node-2"]
    assert row(db_url, cpus)["state"] == "toLaunch"
    assert assigned(db_url, cpus) == [5, 6, 13, 14]       # first cpu of node-2 and node-4


def test_complete_syntax_two_groups_on_their_switches(fig, db_url, now):
    """``{sql1}/prop1=1/prop2=..+{sql2}/...``: each group on resources of its own
    expression, the two groups on distinct resources."""
    jid = sub(fig, "-l", "{switch = 'sw1'}/nodes=1/cpu=1+{switch = 'sw2'}/nodes=1/core=3,"
                         "walltime=1:00:00", "prog")
    round_at(fig, now)
    got = assigned(db_url, jid)
    assert got == [1, 2, 9, 10, 11]
    # a second identical job: group 1 on the other cpu of node-1, group 2 on node-4
    # (node-3 has a single core left)
    second = sub(fig, "-l", "{switch = 'sw1'}/nodes=1/cpu=1+{switch = 'sw2'}/nodes=1/core=3,"
                            "walltime=1:00:00", "prog")
    round_at(fig, now + 1)
    assert assigned(db_url, second) == [3, 4, 13, 14, 15]


def test_groups_placed_when_another_split_fits(fig, db_url, now):
    jid = sub(fig, "-l", "/nodes=1+{network_address = 'node-1'}/core=1,walltime=1:00:00", "prog")
    round_at(fig, now)
    assert assigned(db_url, jid) == [1] + NODE["node-2"]


def test_property_switch_sw1(fig, db_url, now):
    """``-p "switch = 'sw1'"``: only resources of sw1, even when sw2 is idle."""
    first = sub(fig, "-p", "switch = 'sw1'", "-l", "/nodes=2/cpu=2,walltime=1:00:00", "a")
    second = sub(fig, "-p", "switch = 'sw1'", "-l", "/nodes=1,walltime=1:00:00", "b")
    anywhere = sub(fig, "-l", "/nodes=2,walltime=1:00:00", "c")
    round_at(fig, now)
    assert assigned(db_url, first) == NODE["node-1"] + NODE["node-2"]
    start, resources = predicted(fig, second)
    assert start == now + HOUR + SECURITY and resources == NODE["node-1"]
    assert assigned(db_url, anywhere) == NODE["node-3"] + NODE["node-4"]
    # more than sw1 holds: refused at submission, nothing stored
    result = fig("oarsub", "-p", "switch = 'sw1'", "-l", "/nodes=3", "d")
    assert result.rc != 0 and result.err.startswith("#ERROR: ")


def test_scheduler_resource_order_of_the_spec(fig, oar_conf, db_url, now):
    """``SCHEDULER_RESOURCE_ORDER="switch ASC, network_address DESC, resource_id ASC"``:
    resources are taken switch by switch, the last node of a switch first."""
    oar_conf.write_text(oar_conf.read_text() + 'SCHEDULER_RESOURCE_ORDER="switch ASC, '
                                               'network_address DESC, resource_id ASC"\n')
    node = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "a")
    cpus = sub(fig, "-l", "/nodes=2/cpu=1,walltime=1:00:00", "b")
    spread = sub(fig, "-l", "/switch=2/nodes=1/core=1,walltime=1:00:00", "c")
    round_at(fig, now)
    assert assigned(db_url, node) == NODE["node-2"]
    # node-2 is taken: a cpu of node-1, then of node-4 (the last node of sw2)
    assert assigned(db_url, cpus) == [1, 2, 13, 14]
    # one core on each switch: the first free ones in that order
    assert assigned(db_url, spread) == [3, 15]


def absent_until(db_url, host, date):
    """An admin's energy-saving setting: the node is Absent, can be woken up until date."""
    run_sql(db_url, "UPDATE resources SET state = 'Absent', available_upto = %d "
                    "WHERE network_address = '%s'" % (date, host))


def test_absent_node_usable_until_its_available_upto(fig, db_url, now):
    absent_until(db_url, "node-4", now + 1800)
    absent_until(db_url, "node-3", 0)                       # never woken up
    short = sub(fig, "-p", "network_address = 'node-4'", "-l", "/nodes=1,walltime=0:20:00", "a")
    never = sub(fig, "-p", "network_address = 'node-3'", "-l", "/nodes=1,walltime=0:20:00", "b")
    round_at(fig, now)
    # planned on its Absent node at once, launched only once the node is woken up (Alive)
    assert row(db_url, short)["state"] == "Waiting"
    assert predicted(fig, short)[1] == NODE["node-4"]
    run_sql(db_url, "UPDATE resources SET state = 'Alive' WHERE network_address = 'node-4'")
    round_at(fig, now + 60)
    assert row(db_url, short)["state"] == "toLaunch"
    assert assigned(db_url, short) == NODE["node-4"]
    assert row(db_url, never)["state"] == "Waiting"
    assert predicted(fig, never) == (None, [])
    assert row(db_url, never)["message"].startswith("cannot be satisfied")


def test_nothing_is_planned_past_available_upto(fig, db_url, now):
    """REFERENCE: nothing may be planned past a resource's available_upto."""
    absent_until(db_url, "node-4", now + 1800)
    long_ = sub(fig, "-p", "network_address = 'node-4'", "-l", "/nodes=1,walltime=1:00:00", "a")
    wide = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "b")
    round_at(fig, now)
    assert row(db_url, long_)["state"] == "Waiting"
    assert predicted(fig, long_) == (None, [])
    assert row(db_url, wide)["state"] == "Waiting"
    assert predicted(fig, wide) == (None, [])


# ------------------------------------------------------------------ advance reservations

def test_reservation_granted_at_its_time_and_kept_across_rounds(fig, db_url, now):
    start = now + 2 * HOUR
    resa = sub(fig, "-r", date_text(start), "-l", "/switch=1/nodes=2,walltime=1:00:00")
    round_at(fig, now)
    assert (row(db_url, resa)["state"], row(db_url, resa)["reservation"]) == ("Waiting", "Scheduled")
    slot = predicted(fig, resa)
    assert slot == (start, NODE["node-1"] + NODE["node-2"])
    # batch jobs that would overlap it go around it: a short one before, a long one after,
    # one beside it on the other switch
    short = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "short")
    long_ = sub(fig, "-l", "/nodes=4,walltime=3:00:00", "long")
    other = sub(fig, "-l", "/nodes=2,walltime=1:00:00", "other")
    for k in range(1, 4):
        round_at(fig, now + 10 * k)
        assert predicted(fig, resa) == slot                 # kept, round after round
        assert row(db_url, resa)["reservation"] == "Scheduled"
    assert row(db_url, short)["state"] == "toLaunch" and row(db_url, short)["start"] == now + 10
    assert predicted(fig, long_)[0] == start + HOUR + SECURITY
    # other: 2 nodes for 1 h, after `short`; on sw2, as sw1 is reserved before it ends
    assert predicted(fig, other) == (now + 10 + HOUR + SECURITY, NODE["node-3"] + NODE["node-4"])
    # its time has come: it starts on its resources (the server set `short` Terminated)
    set_state(db_url, short, "Terminated", 0)
    round_at(fig, start)
    assert (row(db_url, resa)["state"], row(db_url, resa)["start"]) == ("toLaunch", start)
    assert assigned(db_url, resa) == NODE["node-1"] + NODE["node-2"]


def test_reservation_rejected_when_its_resources_are_taken(fig, db_url, now):
    busy = sub(fig, "-l", "/switch=1/nodes=2,walltime=5:00:00", "busy")
    round_at(fig, now)
    set_state(db_url, busy, "Running")                      # the server ran it
    fits = sub(fig, "-r", date_text(now + HOUR), "-l", "/nodes=2,walltime=1:00:00")
    too_big = sub(fig, "-r", date_text(now + HOUR), "-l", "/nodes=3,walltime=1:00:00")
    out = round_at(fig, now + 10)
    assert "0 to launch" in out
    assert predicted(fig, fits) == (now + HOUR, NODE["node-3"] + NODE["node-4"])
    got = row(db_url, too_big)
    assert got["state"] == "Error" and got["message"].startswith("reservation rejected")
    assert predicted(fig, too_big) == (None, [])
    # the rejection is final: a later round does not take it up again
    round_at(fig, now + 20)
    assert row(db_url, too_big)["state"] == "Error"
    assert predicted(fig, fits)[0] == now + HOUR


def test_reservation_comes_before_an_earlier_batch_job(fig, db_url, now):
    """Reservations are placed before the batch jobs: a batch job planned on the slot a
    new reservation asks for moves after it."""
    busy = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "busy")
    batch = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "batch")
    round_at(fig, now)
    assert predicted(fig, batch)[0] == now + HOUR + SECURITY
    resa_start = now + HOUR + 600
    resa = sub(fig, "-r", date_text(resa_start), "-l", "/nodes=1,walltime=1:00:00")
    round_at(fig, now + 10)
    assert predicted(fig, resa) == (resa_start, NODE["node-1"])
    assert predicted(fig, batch)[0] == resa_start + HOUR + SECURITY
    assert row(db_url, busy)["state"] == "toLaunch"


def test_moldable_reservation_takes_the_alternative_that_fits_at_its_date(fig, db_url, now):
    busy = sub(fig, "-l", "/nodes=2,walltime=3:00:00", "busy")
    round_at(fig, now)
    assert assigned(db_url, busy) == NODE["node-1"] + NODE["node-2"]
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-l", "/nodes=4,walltime=0:30:00",
               "-l", "/nodes=2,walltime=1:00:00")
    round_at(fig, now + 10)
    assert predicted(fig, resa) == (start, NODE["node-3"] + NODE["node-4"])
    assert row(db_url, resa)["message"] == "R=8,W=1:0:0,J=B,Q=default"


def test_reservation_whose_slot_has_passed_is_rejected(fig, db_url, now):
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-l", "/nodes=1,walltime=1:00:00")
    round_at(fig, start + 2 * HOUR)
    got = row(db_url, resa)
    assert got["state"] == "Error"
    assert got["message"].startswith("reservation rejected")


def test_accepted_reservation_missed_entirely_goes_to_error(fig, db_url, now):
    """An accepted reservation whose start passed by more than its walltime (no round
    during its whole slot) goes to Error instead of being launched."""
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-l", "/nodes=1,walltime=1:00:00")
    round_at(fig, now)
    assert row(db_url, resa)["reservation"] == "Scheduled"
    round_at(fig, start + 2 * HOUR)
    assert row(db_url, resa)["state"] == "Error"
    assert assigned(db_url, resa) == []


def test_late_round_launches_a_reservation_inside_its_slot(fig, db_url, now):
    """A round a few minutes after an accepted reservation's start still launches it."""
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-l", "/nodes=1,walltime=1:00:00")
    round_at(fig, now)
    round_at(fig, start + 300)
    got = row(db_url, resa)
    assert (got["state"], got["start"]) == ("toLaunch", start + 300)
    assert assigned(db_url, resa) == NODE["node-1"]


def test_reservation_never_launched_on_cores_still_in_use(fig, db_url, now):
    """A job still running past its walltime holds its cores: an accepted reservation
    on them is not launched there at its start (it waits for its resources)."""
    start = now + HOUR
    busy = sub(fig, "-l", "/nodes=1,walltime=0:30:00", "busy")
    resa = sub(fig, "-r", date_text(start), "-l", "/nodes=1,walltime=1:00:00")
    round_at(fig, now)
    assert assigned(db_url, busy) == NODE["node-1"]
    assert predicted(fig, resa) == (start, NODE["node-1"])
    set_state(db_url, busy, "Running")                      # still running at `start`
    round_at(fig, start)
    assert not set(assigned(db_url, resa)) & set(assigned(db_url, busy))


# ------------------------------------------------------------------ queues

def test_queues_by_decreasing_priority_and_inactive_queue(fig, db_url, now):
    """admin (priority 10) before default (2) whatever the submission order; the jobs of
    an inactive queue wait."""
    default = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "d")
    admin = sub(fig, "-q", "admin", "-l", "/nodes=4,walltime=1:00:00", "a")
    assert fig("oarnotify", "--add_queue", "night,3").rc == 0
    night = sub(fig, "-q", "night", "-l", "/nodes=4,walltime=1:00:00", "n")
    assert fig("oarnotify", "-d", "night").rc == 0
    round_at(fig, now)
    assert row(db_url, admin)["state"] == "toLaunch"
    assert predicted(fig, default)[0] == now + HOUR + SECURITY
    assert row(db_url, night)["state"] == "Waiting" and predicted(fig, night) == (None, [])
    # enabled again: priority 3, before the default job that was planned first
    assert fig("oarnotify", "-e", "night").rc == 0
    round_at(fig, now + 10)
    assert predicted(fig, night)[0] == now + HOUR + SECURITY
    assert predicted(fig, default)[0] == now + 2 * (HOUR + SECURITY)


# ------------------------------------------------------------------ besteffort

def test_besteffort_killed_only_when_a_normal_job_needs_its_cores(fig, db_url, now):
    best = sub(fig, "-t", "besteffort", "-l", "/switch=1/nodes=2,walltime=5:00:00", "be")
    round_at(fig, now)
    assert assigned(db_url, best) == NODE["node-1"] + NODE["node-2"]
    set_state(db_url, best, "Running")                      # the server ran it
    # a normal job on other resources: no kill
    beside = sub(fig, "-p", "switch = 'sw2'", "-l", "/nodes=2,walltime=1:00:00", "beside")
    out = round_at(fig, now + 10)
    assert out.endswith("0 besteffort kills.")
    assert assigned(db_url, beside) == NODE["node-3"] + NODE["node-4"]
    assert run_sql(db_url, "SELECT COUNT(*) FROM frag_jobs") == [(0,)]
    # a normal job that needs its cores now: the besteffort job is killed, the normal job
    # waits for it to be gone (it would run on top of it otherwise)
    needs = sub(fig, "-l", "/nodes=1/cpu=1,walltime=1:00:00", "needs")
    out = round_at(fig, now + 20)
    assert out.endswith("1 besteffort kills.")
    assert row(db_url, needs)["state"] == "Waiting"
    assert assigned(db_url, needs) == []
    assert predicted(fig, needs) == (now + 20, [1, 2])
    assert run_sql(db_url, "SELECT frag_id_job, frag_state FROM frag_jobs") == [(best, "LEON")]
    events = run_sql(db_url, "SELECT job_id, type FROM event_logs WHERE type = 'BESTEFFORT_KILL'")
    assert events == [(best, "BESTEFFORT_KILL")]
    assert any(e["type"] == "BESTEFFORT_KILL" for e in stat(fig, best)["events"])


def test_job_needing_besteffort_resources_starts_once_they_are_gone(fig, db_url, now):
    """The kill is asked once; the job starts in the first round after the besteffort
    job has ended, never while it still holds the resources (running or finishing)."""
    best = sub(fig, "-t", "besteffort", "-l", "/nodes=4,walltime=5:00:00", "be")
    round_at(fig, now)
    set_state(db_url, best, "Running")                      # the server ran it
    needs = sub(fig, "-l", "/nodes=2,walltime=1:00:00", "needs")
    assert round_at(fig, now + 10).endswith("1 besteffort kills.")
    assert row(db_url, needs)["state"] == "Waiting"
    # still there while it is being killed, then while its nodes are cleaned
    for step, state in ((20, "Running"), (30, "Finishing")):
        set_state(db_url, best, state)
        assert round_at(fig, now + step).endswith("0 besteffort kills.")
        assert row(db_url, needs)["state"] == "Waiting"
        assert predicted(fig, needs) == (now + step, NODE["node-1"] + NODE["node-2"])
    assert run_sql(db_url, "SELECT frag_id_job FROM frag_jobs") == [(best,)]
    events = run_sql(db_url, "SELECT job_id FROM event_logs WHERE type = 'BESTEFFORT_KILL'")
    assert events == [(best,)]                              # once, not at every round
    set_state(db_url, best, "Error")                        # killed: gone
    out = round_at(fig, now + 40)
    assert out.endswith("0 besteffort kills.")
    assert row(db_url, needs)["state"] == "toLaunch"
    assert row(db_url, needs)["start"] == now + 40
    assert assigned(db_url, needs) == NODE["node-1"] + NODE["node-2"]


def test_reservation_waits_for_the_besteffort_jobs_on_its_resources(fig, db_url, now):
    best = sub(fig, "-t", "besteffort", "-l", "/nodes=1,walltime=5:00:00", "be")
    round_at(fig, now)
    set_state(db_url, best, "Running")                      # the server ran it
    resv = sub(fig, "-r", date_text(now + HOUR), "-l", "/nodes=4,walltime=1:00:00")
    round_at(fig, now + 10)
    assert row(db_url, resv)["reservation"] == "Scheduled"  # besteffort does not block it
    assert round_at(fig, now + HOUR).endswith("1 besteffort kills.")
    assert row(db_url, resv)["state"] == "Waiting"
    assert "besteffort" in row(db_url, resv)["message"]
    assert predicted(fig, resv)[0] == now + HOUR            # its slot is kept
    assert run_sql(db_url, "SELECT frag_id_job FROM frag_jobs") == [(best,)]
    set_state(db_url, best, "Error")
    assert round_at(fig, now + HOUR + 10).endswith("0 besteffort kills.")
    assert row(db_url, resv)["state"] == "toLaunch"
    assert assigned(db_url, resv) == sorted(r for rs in NODE.values() for r in rs)


def test_besteffort_never_blocks_a_normal_job(fig, db_url, now):
    """A waiting besteffort job submitted first does not delay the normal job after it;
    it is planned around it."""
    best = sub(fig, "-t", "besteffort", "-l", "/nodes=4,walltime=5:00:00", "be")
    normal = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "n")
    round_at(fig, now)
    assert row(db_url, normal)["state"] == "toLaunch"
    assert assigned(db_url, normal) == NODE["node-1"]
    assert row(db_url, best)["state"] == "Waiting"
    assert predicted(fig, best)[0] == now + HOUR + SECURITY


def test_besteffort_killed_when_the_normal_job_starts_not_before(fig, db_url, now):
    busy = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "busy")
    best = sub(fig, "-t", "besteffort", "-l", "/nodes=3,walltime=5:00:00", "be")
    round_at(fig, now)
    assert assigned(db_url, best) == NODE["node-2"] + NODE["node-3"] + NODE["node-4"]
    set_state(db_url, busy, "Running")                      # the server ran both
    set_state(db_url, best, "Running")
    # planned on the besteffort job's nodes in an hour: nothing is killed yet
    later = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "later")
    out = round_at(fig, now + 10)
    assert out.endswith("0 besteffort kills.")
    assert predicted(fig, later)[0] == now + HOUR + SECURITY
    assert run_sql(db_url, "SELECT COUNT(*) FROM frag_jobs") == [(0,)]
    # the busy job ended: the besteffort job is killed, then `later` starts
    set_state(db_url, busy, "Terminated", 0)
    out = round_at(fig, now + HOUR + SECURITY)
    assert out.endswith("1 besteffort kills.")
    assert row(db_url, later)["state"] == "Waiting"
    assert run_sql(db_url, "SELECT frag_id_job FROM frag_jobs") == [(best,)]
    set_state(db_url, best, "Error")
    round_at(fig, now + HOUR + SECURITY + 10)
    assert row(db_url, later)["state"] == "toLaunch"


# ------------------------------------------------------------------ dependencies

def test_dependency_starts_after_the_predicted_end_of_the_required_job(fig, db_url, now):
    full = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "full")
    required = sub(fig, "-l", "/nodes=1,walltime=2:00:00", "required")
    after = sub(fig, "-a", str(required), "-l", "/nodes=1,walltime=0:10:00", "after")
    free_rider = sub(fig, "-l", "/nodes=1,walltime=0:10:00", "free")
    round_at(fig, now)
    assert row(db_url, full)["state"] == "toLaunch"
    required_start = now + HOUR + SECURITY
    assert predicted(fig, required)[0] == required_start
    # not before the required job's predicted end, although nodes are free earlier
    assert predicted(fig, after)[0] == required_start + 2 * HOUR
    assert predicted(fig, free_rider)[0] == required_start          # (for comparison)
    assert stat(fig, after)["dependencies"] == [required]


def test_dependency_on_a_failed_job_blocks_and_says_why(fig, db_url, now):
    required = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "required")
    after = sub(fig, "-a", str(required), "-l", "/nodes=1,walltime=1:00:00", "after")
    round_at(fig, now)
    assert predicted(fig, after)[0] == now + HOUR
    set_state(db_url, required, "Terminated", 256)          # the server: exit code 1
    round_at(fig, now + 60)
    got = row(db_url, after)
    assert got["state"] == "Waiting"
    assert got["message"] == f"dependency on job {required} which ended with exit code 256"
    assert predicted(fig, after) == (None, [])
    assert stat(fig, after)["message"] == got["message"]


def test_dependency_on_a_job_in_error_is_ignored(fig, db_url, now):
    required = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "required")
    after = sub(fig, "-a", str(required), "-l", "/nodes=1,walltime=1:00:00", "after")
    round_at(fig, now)
    assert predicted(fig, after)[0] == now + HOUR
    set_state(db_url, required, "Error")
    round_at(fig, now + 60)
    assert row(db_url, after)["state"] == "toLaunch"


def test_dependency_on_a_job_ended_well_runs_now(fig, db_url, now):
    required = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "required")
    after = sub(fig, "-a", str(required), "-l", "/nodes=1,walltime=1:00:00", "after")
    set_state(db_url, required, "Terminated", 0)
    round_at(fig, now)
    assert row(db_url, after)["state"] == "toLaunch"


def test_dependent_job_not_delayed_by_a_job_queued_after_it(fig, db_url, now):
    """Conservative backfilling holds with dependencies: a job queued after a dependent
    job does not take the slot the dependent job gets without it."""
    def scenario(with_later):
        sub(fig, "-l", "/nodes=4,walltime=1:00:00", "a")
        required = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "r")
        dependent = sub(fig, "-a", str(required), "-l", "/nodes=4,walltime=1:00:00", "d")
        if with_later:
            sub(fig, "-l", "/nodes=4,walltime=1:00:00", "l")
        return dependent

    alone = scenario(False)
    round_at(fig, now)
    expected = predicted(fig, alone)[0]
    assert expected == now + 2 * (HOUR + SECURITY)
    run_sql(db_url, "UPDATE jobs SET state = 'Terminated' WHERE state <> 'Terminated'")
    dependent = scenario(True)
    round_at(fig, now + 10)
    assert predicted(fig, dependent)[0] == now + 10 + 2 * (HOUR + SECURITY)


def test_dependency_on_an_overdue_running_job_waits_for_it(fig, db_url, now):
    required = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "required")
    after = sub(fig, "-a", str(required), "-l", "/nodes=1,walltime=1:00:00", "after")
    round_at(fig, now)
    set_state(db_url, required, "Running")                  # the server ran it
    round_at(fig, now + 2 * HOUR)                           # still running, overdue
    assert row(db_url, after)["state"] == "Waiting"
    assert predicted(fig, after)[0] > now + 2 * HOUR


# ------------------------------------------------------------------ moldable jobs

def test_moldable_keeps_the_alternative_that_finishes_first(fig, db_url, now):
    busy = sub(fig, "-l", "/nodes=3,walltime=1:00:00", "busy")
    round_at(fig, now)
    assert hosts_of(db_url, assigned(db_url, busy)) == ["node-1", "node-2", "node-3"]
    # narrow: 4 nodes for 1 h would end at now + 2 h + 1 s; 1 node for 1 h 30 can start now
    # on node-4 and ends first: kept, launched
    narrow = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "-l", "/nodes=1,walltime=1:30:00", "n")
    # wide: 1 node for 3 h could start when `busy` ends but would end at now + 4 h; 4 nodes
    # for 1 h after `narrow` end first: kept, planned
    wide = sub(fig, "-l", "/nodes=4,walltime=1:00:00", "-l", "/nodes=1,walltime=3:00:00", "w")
    round_at(fig, now + 10)
    got = row(db_url, narrow)
    assert got["state"] == "toLaunch"
    assert got["moldable"] == moldable_ids(db_url, narrow)[1]
    assert got["message"] == "R=4,W=1:30:0,J=B,Q=default"
    assert assigned(db_url, narrow) == NODE["node-4"]
    assert row(db_url, wide)["state"] == "Waiting"
    assert predicted(fig, wide) == (now + 10 + 90 * 60 + SECURITY, list(range(1, 17)))
    assert row(db_url, wide)["message"] == "R=16,W=1:0:0,J=B,Q=default"


# ------------------------------------------------------------------ timesharing

@pytest.fixture
def as_user(monkeypatch):
    """``as_user("bob")``: the next commands run as bob (the caller's login, as oarsub
    reads it)."""

    def switch(name):
        monkeypatch.setattr("oar_appliance.cli.common.caller_name", lambda environ=None: name)

    return switch


def test_timesharing_user_and_all_modes(fig, db_url, now, as_user):
    """``timesharing=user,*`` shares with the same user's jobs of that mode, ``*,*`` (the
    default) with anyone's jobs of that mode, ``user,name`` with the same user and name;
    a job that is not timesharing shares nothing."""
    def ts(user, mode, name):
        as_user(user)
        return sub(fig, "-t", mode, "-n", name, "-l", "/nodes=1,walltime=1:00:00", "prog")

    a = ts("alice", "timesharing=user,*", "x")
    b = ts("alice", "timesharing=user,*", "y")             # same user: shares a's node
    c = ts("bob", "timesharing=user,*", "x")               # another user
    d = ts("bob", "timesharing", "x")                       # *,* : another key than c's
    e = ts("alice", "timesharing=*,*", "z")                # shares d's node
    f = ts("alice", "timesharing=user,name", "sim")
    g = ts("alice", "timesharing=user,name", "sim")        # shares f's node
    h = ts("bob", "timesharing=user,name", "sim")          # another user: waits
    as_user("alice")
    plain = sub(fig, "-l", "/nodes=1,walltime=1:00:00", "plain")
    as_user("oar")                                          # the scheduler's account
    round_at(fig, now)
    assert assigned(db_url, a) == assigned(db_url, b) == NODE["node-1"]
    assert assigned(db_url, c) == NODE["node-2"]
    assert assigned(db_url, d) == assigned(db_url, e) == NODE["node-3"]
    assert assigned(db_url, f) == assigned(db_url, g) == NODE["node-4"]
    for jid in (h, plain):
        assert row(db_url, jid)["state"] == "Waiting"
        assert predicted(fig, jid)[0] == now + HOUR + SECURITY


def test_timesharing_name_mode_across_users(fig, db_url, now, as_user):
    as_user("alice")
    first = sub(fig, "-t", "timesharing=*,name", "-n", "post", "-l", "/nodes=4,walltime=1:00:00", "a")
    as_user("bob")
    same_name = sub(fig, "-t", "timesharing=*,name", "-n", "post", "-l", "/nodes=2/cpu=1,walltime=0:30:00", "b")
    other_name = sub(fig, "-t", "timesharing=*,name", "-n", "pre", "-l", "/core=1,walltime=0:30:00", "c")
    as_user("oar")
    round_at(fig, now)
    assert row(db_url, first)["state"] == row(db_url, same_name)["state"] == "toLaunch"
    assert assigned(db_url, same_name) == [1, 2, 5, 6]
    assert predicted(fig, other_name)[0] == now + HOUR + SECURITY


# ------------------------------------------------------------------ containers

def test_container_and_inner_jobs_of_the_spec(fig, db_url, now):
    """The spec's example, on 4 nodes: a container of 3 nodes for 2:10:00; inner jobs of
    2, 1 and 3 nodes run inside it, one after the other when they must; one of 4 nodes is
    never scheduled; the jobs outside wait for the container's nodes."""
    container = sub(fig, "-t", "container", "-l", "/nodes=3,walltime=2:10:00", "c")
    round_at(fig, now)
    assert assigned(db_url, container) == NODE["node-1"] + NODE["node-2"] + NODE["node-3"]
    set_state(db_url, container, "Running")                 # the server ran it
    two = sub(fig, "-t", f"inner={container}", "-l", "/nodes=2,walltime=0:30:00", "i2")
    one = sub(fig, "-t", f"inner={container}", "-l", "/nodes=1,walltime=0:30:00", "i1")
    three = sub(fig, "-t", f"inner={container}", "-l", "/nodes=3,walltime=1:00:00", "i3")
    four = sub(fig, "-t", f"inner={container}", "-l", "/nodes=4,walltime=0:10:00", "i4")
    too_long = sub(fig, "-t", f"inner={container}", "-l", "/nodes=1,walltime=2:10:00", "il")
    outside = sub(fig, "-l", "/nodes=2,walltime=1:00:00", "o")
    round_at(fig, now + 10)
    assert assigned(db_url, two) == NODE["node-1"] + NODE["node-2"]
    assert assigned(db_url, one) == NODE["node-3"]
    assert predicted(fig, three) == (now + 10 + 30 * 60 + SECURITY,
                                     NODE["node-1"] + NODE["node-2"] + NODE["node-3"])
    for jid in (four, too_long):                            # never, with the reason
        assert row(db_url, jid)["state"] == "Waiting"
        assert predicted(fig, jid) == (None, [])
        assert f"container job {container}" in row(db_url, jid)["message"]
    # outside: only node-4 is free of the container until its end
    assert predicted(fig, outside)[0] == now + 2 * HOUR + 10 * 60 + SECURITY


def test_container_reservation_takes_inner_jobs_in_its_slot(fig, db_url, now):
    """``-t container`` on an advance reservation: its inner jobs are planned inside the
    reserved slot, on its resources."""
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-t", "container", "-l", "/nodes=2,walltime=2:00:00")
    round_at(fig, now)
    assert predicted(fig, resa) == (start, NODE["node-1"] + NODE["node-2"])
    inner = sub(fig, "-t", f"inner={resa}", "-l", "/nodes=1,walltime=1:00:00", "i")
    second = sub(fig, "-t", f"inner={resa}", "-l", "/nodes=2,walltime=0:59:00", "j")
    round_at(fig, now + 10)
    assert predicted(fig, inner) == (start, NODE["node-1"])
    assert predicted(fig, second)[0] == start + HOUR + SECURITY


def test_inner_job_cannot_be_a_reservation(fig, db_url, now):
    start = now + HOUR
    resa = sub(fig, "-r", date_text(start), "-t", "container", "-l", "/nodes=2,walltime=2:00:00")
    refused = fig("oarsub", "-r", date_text(start), "-t", f"inner={resa}", "-l", "/nodes=1", "k")
    assert refused.rc == 2 and refused.err.startswith("#ERROR: ")
    assert "inner" in refused.err and "reservation" in refused.err


# ------------------------------------------------------------------ stability

def test_plans_are_kept_from_round_to_round(fig, db_url, now):
    """With nothing new, a round at the same date again changes no prediction of a waiting
    job (those launched by the first round are now occupations, the others keep their
    slot), nor does a round a minute later."""
    for argv in (["-l", "/switch=1/nodes=2,walltime=2:00:00"], ["-l", "/nodes=3,walltime=1:00:00"],
                 ["-l", "/nodes=1/cpu=1,walltime=0:30:00"], ["-l", "/core=3,walltime=3:00:00"],
                 ["-t", "besteffort", "-l", "/nodes=2,walltime=1:00:00"],
                 ["-l", "/nodes=4,walltime=1:00:00", "-l", "/nodes=1,walltime=4:00:00"],
                 ["-p", "switch = 'sw2'", "-l", "/nodes=1/core=2,walltime=0:45:00"]):
        sub(fig, *argv, "job")
    round_at(fig, now)

    def plan():
        return sorted(run_sql(db_url, "SELECT m.moldable_job_id, p.start_time, r.resource_id "
                                      "FROM gantt_jobs_predictions p JOIN moldable_job_descriptions m "
                                      "ON m.moldable_id = p.moldable_job_id JOIN gantt_jobs_resources r "
                                      "ON r.moldable_job_id = p.moldable_job_id JOIN jobs j "
                                      "ON j.job_id = m.moldable_job_id WHERE j.state = 'Waiting'"))

    first = plan()
    launched = run_sql(db_url, "SELECT job_id, start_time FROM jobs WHERE state = 'toLaunch' ORDER BY job_id")
    assert len({job for job, _, _ in first}) >= 2 and len(launched) >= 2
    out = round_at(fig, now)
    assert "0 to launch" in out
    assert plan() == first
    round_at(fig, now + 60)                                 # later: nothing planned earlier moves
    assert plan() == first


# ------------------------------------------------------------------ oarstat

def test_oarstat_full_shows_the_scheduled_start_after_a_round(fig, db_url, now):
    running = sub(fig, "-l", "/nodes=4,walltime=2:00:00", "a")
    waiting = sub(fig, "-l", "/switch=1/nodes=1,walltime=1:00:00", "b")
    before = fig("oarstat", "-f", "-j", str(waiting))
    assert before.rc == 0 and "    scheduled_start = no prediction" in before.lines
    round_at(fig, now)
    result = fig("oarstat", "-f", "-j", str(waiting))
    assert result.rc == 0, result.err
    expected = date_text(now + 2 * HOUR + SECURITY)
    assert f"    scheduled_start = {expected}" in result.lines
    assert "    scheduled_resources = 1+2+3+4" in result.lines
    assert "    message = R=4,W=1:0:0,J=B,Q=default" in result.lines
    assert stat(fig, waiting)["scheduled_start"] == now + 2 * HOUR + SECURITY
    assert stat(fig, running)["state"] == "toLaunch"
