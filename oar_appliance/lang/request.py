"""The resource request of ``oarsub -l``: data types (the grammar is below them).

A job has one or several moldable alternatives (one per ``-l``); each is a list of
resource groups joined by ``+`` and an optional walltime::

    request  := [ groups ] [ "," "walltime=" duration ]
    groups   := group ( "+" group )*
    group    := [ "{" property-expression "}" ] [ "/" ] level ( "/" level )*
    level    := label "=" ( count | "ALL" | "BEST" | "HALF_BEST" )
    duration := hours | hours ":" minutes | hours ":" minutes ":" seconds

In the database a request is stored as ``moldable_job_descriptions`` (walltime),
``job_resource_groups`` (the group's property expression) and
``job_resource_descriptions`` (one row per level, ``res_job_order`` from 0, the count in
``res_job_value`` with the codes of :data:`COUNT_CODES` for ALL, BEST and HALF_BEST).
"""

from __future__ import annotations

from dataclasses import dataclass

#: stored values of the symbolic counts in ``job_resource_descriptions.res_job_value``
COUNT_CODES = {"ALL": -1, "BEST": -2, "HALF_BEST": -3}
COUNT_NAMES = {code: name for name, code in COUNT_CODES.items()}


@dataclass(frozen=True)
class Level:
    """One level of a group: ``label=count``, e.g. ``network_address=2`` or ``core=ALL``."""

    label: str
    #: a positive int, or one of "ALL", "BEST", "HALF_BEST"
    count: int | str

    @property
    def stored_count(self) -> int:
        return self.count if isinstance(self.count, int) else COUNT_CODES[self.count]


@dataclass(frozen=True)
class ResourceGroup:
    """Levels from the top of the hierarchy down, restricted by an optional expression."""

    levels: tuple[Level, ...]
    #: the text between ``{`` and ``}``, or None
    constraint: str | None = None


@dataclass(frozen=True)
class MoldableRequest:
    """One ``-l`` alternative: groups on disjoint resources, and a walltime in seconds."""

    groups: tuple[ResourceGroup, ...]
    walltime: int | None = None
