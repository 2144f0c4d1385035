"""What to do with an accepted advance reservation whose start has come (pure).

An accepted reservation keeps its slot (start, resources) across rounds.  When its start
has come, some of its resources may have become unusable (Suspected, Absent, Dead, still
held by a job that overran its walltime).  :func:`reservation_at_start` decides:

- ``EXPIRED``: its start passed by more than its walltime (the scheduler did not run in
  time, or the job waited until then): it can no longer run, it goes to Error;
- ``LAUNCH``: every reserved resource is available: it starts on all of them;
- ``WAIT``: some are missing and ``RESERVATION_WAITING_RESOURCES_TIMEOUT`` has not
  passed since its start: it keeps waiting for them (its slot is kept);
- ``REDUCE``: the timeout has passed: it starts on the available resources only (OAR's
  event ``SCHEDULER_REDUCE_NB_NODES_FOR_RESERVATION``);
- ``NO_RESOURCE``: the timeout has passed and none of its resources is available: Error.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReservationStart", "reservation_at_start", "LAUNCH", "WAIT", "REDUCE",
           "EXPIRED", "NO_RESOURCE"]

LAUNCH, WAIT, REDUCE, EXPIRED, NO_RESOURCE = "launch", "wait", "reduce", "expired", "no_resource"


@dataclass(frozen=True)
class ReservationStart:
    """The decision: ``action`` (one of the constants), the bits to start on (LAUNCH,
    REDUCE) and a message for the job (empty for LAUNCH)."""

    action: str
    bits: int = 0
    message: str = ""


def reservation_at_start(start: int, walltime: int, now: int, reserved: int,
                         available: int, waiting_timeout: int) -> ReservationStart:
    """Decide for a reservation due at ``start`` (``start <= now``) on ``reserved`` bits,
    of which ``available`` may be used now; see the module docstring."""
    if now > start + walltime:
        return ReservationStart(EXPIRED, 0, (
            f"reservation expired: its start passed by more than its walltime "
            f"({now - start} s late, walltime {walltime} s)"))
    have = reserved & available
    if have == reserved:
        return ReservationStart(LAUNCH, reserved)
    missing = reserved.bit_count() - have.bit_count()
    if now < start + waiting_timeout:
        return ReservationStart(WAIT, 0, (
            f"reservation waiting for {missing} missing resource{'s' if missing > 1 else ''} "
            f"(until {start + waiting_timeout}, RESERVATION_WAITING_RESOURCES_TIMEOUT)"))
    if not have:
        return ReservationStart(NO_RESOURCE, 0, (
            "reservation cannot start: none of its resources is available after "
            f"{waiting_timeout} s of waiting"))
    return ReservationStart(REDUCE, have, (
        f"reservation started on {have.bit_count()} of its {reserved.bit_count()} resources "
        f"({missing} unavailable after {waiting_timeout} s of waiting)"))
