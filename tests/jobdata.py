"""Write jobs straight into a test database, as the OAR schema stores them.

For tests of the commands that read or act on jobs, independently of ``oarsub``:
``add_job(db_url, job_user="alice", state="Running", resources=[1, 2])`` writes the
``jobs`` row, one moldable alternative with one resource group, its types, its state
log, its assigned resources (for started jobs) or its Gantt prediction (for waiting
ones), and a challenge.  Returns the job id.
"""

from __future__ import annotations

from typing import Any, Sequence

from oar_appliance.db import models as m
from tests.sqlutil import raw_database

STARTED_STATES = ("toLaunch", "Launching", "Running", "Suspended", "Resuming", "Finishing", "Terminated", "Error")


def add_job(
    db_url: str,
    *,
    job_user: str = "alice",
    state: str = "Waiting",
    queue_name: str = "default",
    walltime: int = 3600,
    levels: Sequence[tuple[str, int]] = (("resource_id", 1),),
    constraint: str | None = None,
    types: Sequence[str] = (),
    resources: Sequence[int] = (),
    predicted_start: int | None = None,
    submission_time: int = 1_700_000_000,
    start_time: int = 0,
    stop_time: int = 0,
    dependencies: Sequence[int] = (),
    **columns: Any,
) -> int:
    """Insert one job with everything that hangs off it; return its id."""
    with raw_database(db_url) as db:
        with db.bind_ctx(m.ALL_MODELS), db.atomic():
            job = m.Job.create(
                job_user=job_user, state=state, queue_name=queue_name,
                submission_time=submission_time, start_time=start_time, stop_time=stop_time,
                command=columns.pop("command", "sleep 60"),
                launching_directory=columns.pop("launching_directory", "/tmp"),
                initial_request=columns.pop("initial_request", "oarsub -l /resource_id=1 sleep 60"),
                **columns,
            )
            moldable = m.MoldableJobDescription.create(moldable_job_id=job.job_id, moldable_walltime=walltime)
            group = m.JobResourceGroup.create(res_group_moldable_id=moldable.moldable_id, res_group_property=constraint)
            for order, (label, count) in enumerate(levels):
                m.JobResourceDescription.create(
                    res_job_group_id=group.res_group_id, res_job_resource_type=label,
                    res_job_value=count, res_job_order=order,
                )
            for job_type in types:
                m.JobType.create(job_id=job.job_id, type=job_type)
            for required in dependencies:
                m.JobDependency.create(job_id=job.job_id, job_id_required=required)
            m.JobStateLog.create(job_id=job.job_id, job_state=state, date_start=submission_time)
            if state in STARTED_STATES:
                job.assigned_moldable_job = moldable.moldable_id
                job.save()
                for rid in resources:
                    m.AssignedResource.create(moldable_job_id=moldable.moldable_id, resource_id=rid)
            elif predicted_start is not None:
                m.GanttJobPrediction.create(moldable_job_id=moldable.moldable_id, start_time=predicted_start)
                for rid in resources:
                    m.GanttJobResource.create(moldable_job_id=moldable.moldable_id, resource_id=rid)
            m.Challenge.create(job_id=job.job_id, challenge=f"secret-{job.job_id}")
            return job.job_id
