"""Building blocks of the service tests: a small cluster and rows read back."""

from __future__ import annotations

from oar_appliance import resources
from oar_appliance.conf import Config
from oar_appliance.db.models import EventLog, FragJob, ResourceLog

T0 = 1_700_000_000


def make_cluster(db, hosts=("node-1", "node-2"), cores=2, now=T0 - 10_000) -> dict[str, list[int]]:
    """Register ``hosts`` x 1 cpu x ``cores``; host -> its resource ids."""
    with db.atomic():
        ids = resources.register_cluster(db, list(hosts), 1, cores, now)
    return {host: ids[i * cores:(i + 1) * cores] for i, host in enumerate(hosts)}


def config(**values) -> Config:
    return Config().with_overrides(**values)


def events(job_id=None, kind=None) -> list[EventLog]:
    query = EventLog.select().order_by(EventLog.event_id)
    if job_id is not None:
        query = query.where(EventLog.job_id == job_id)
    if kind is not None:
        query = query.where(EventLog.type == kind)
    return list(query)


def frag_state(job_id: int) -> str | None:
    row = FragJob.get_or_none(FragJob.frag_id_job == job_id)
    return None if row is None else row.frag_state


def state_logs(resource_id: int) -> list[tuple[str, int, int, str]]:
    """(value, date_start, date_stop, finaud_decision) of the resource's state intervals."""
    return [(r.value, r.date_start, r.date_stop, r.finaud_decision) for r in
            ResourceLog.select().where((ResourceLog.resource_id == resource_id)
                                       & (ResourceLog.attribute == "state"))
            .order_by(ResourceLog.resource_log_id)]
