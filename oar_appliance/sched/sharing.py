"""Who may share resources with whom in the Gantt: timesharing, placeholders, besteffort (pure).

A *view* is the Gantt seen by one kind of job: the occupations that block it, and only
those.  A view is named by a :data:`ViewKey` ``(sees_besteffort, timesharing, allow)``:

- ``sees_besteffort``: besteffort occupations block only besteffort jobs (a normal job
  sees their resources free; it has them killed when it starts there);
- ``timesharing``: the resolved sharing key of a ``-t timesharing`` job (see
  :func:`timesharing_key`); the occupations of timesharing jobs with the *same* key do
  not block it, every other occupation does (a non-timesharing job, key None, is blocked
  by every timesharing job, and blocks every job);
- ``allow``: the name of a ``-t allow=NAME`` job; the occupations of ``-t
  placeholder=NAME`` jobs do not block it (they hold their resources for such jobs only),
  while the jobs placed inside a placeholder (allow jobs) block as any job does.

:class:`Views` keeps the list of everything placed so far (running jobs, reservations,
placements of the round, planning horizons) and builds a view's Gantt the first time a job
needs it: a copy of an existing view that every occupation blocking it blocks too, plus
the occupations of the list that block the new view only (e.g. the Gantt of besteffort
jobs: the Gantt of the others, plus the besteffort occupations), or else a replay of the
whole list; afterwards each new occupation is applied to every view it blocks.  A view whose key names nothing present in that list is the plain view (the
first job of a timesharing key, a besteffort job when no besteffort job is placed yet):
a round builds one Gantt per kind of sharing actually in use, one when there is none.

Also here: reading the scheduling attributes of a job from its ``-t`` types
(:func:`job_policy`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Tuple

__all__ = ["Share", "ViewKey", "Views", "JobPolicy", "job_policy", "timesharing_key", "FAR"]

#: (sees besteffort occupations, timesharing key or None, allowed placeholder name or None)
ViewKey = Tuple[bool, Optional[str], Optional[str]]

#: a date beyond any real one: "until the end of time" for horizons and container windows;
#: a start found at or after it means "never"
FAR = 1 << 60


@dataclass(frozen=True)
class Share:
    """How an occupation lets other jobs use its resources (the default: it never does)."""

    besteffort: bool = False
    timesharing: str | None = None
    placeholder: str | None = None

    def blocks(self, key: ViewKey) -> bool:
        """Does an occupation with these attributes block the jobs of view ``key``?"""
        if self.besteffort and not key[0]:
            return False
        if self.timesharing is not None and self.timesharing == key[1]:
            return False
        if self.placeholder is not None and self.placeholder == key[2]:
            return False
        return True


EXCLUSIVE = Share()


class Views:
    """The Gantt views of one round, built lazily.

    ``factory()`` returns a new placer (an object with a ``gantt`` attribute whose
    ``occupy(start, end, bits)`` removes free resources).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._records: list[tuple[int, int, int, Share]] = []
        self._views: dict[ViewKey, Any] = {}
        # what the records hold that some view does not see: a view whose key names
        # nothing of it is the same Gantt as the plain view, and shares its placer
        self._besteffort = False
        self._timesharing: set[str] = set()
        self._placeholders: set[str] = set()
        # jobs still to place per timesharing key / allowed placeholder (see expect())
        self._wanted_ts: dict[str, int] | None = None
        self._wanted_allow: dict[str, int] | None = None

    def expect(self, keys: Iterable[ViewKey]) -> None:
        """Announce the keys of the jobs to come, in any order (optional): a view of a key
        that no job to come names is dropped as soon as the last one is placed
        (:meth:`done`), so that it is no longer updated."""
        ts: dict[str, int] = {}
        allow: dict[str, int] = {}
        for _, t, a in keys:
            if t is not None:
                ts[t] = ts.get(t, 0) + 1
            if a is not None:
                allow[a] = allow.get(a, 0) + 1
        self._wanted_ts, self._wanted_allow = ts, allow

    def done(self, key: ViewKey) -> None:
        """The job of ``key`` announced by :meth:`expect` has been handled."""
        if self._wanted_ts is None:
            return
        drop = []
        for value, wanted, part in ((key[1], self._wanted_ts, 1), (key[2], self._wanted_allow, 2)):
            if value is not None and wanted.get(value):
                wanted[value] -= 1
                if not wanted[value]:
                    drop.append((part, value))
        for part, value in drop:
            for k in [k for k in self._views if k[part] == value]:
                del self._views[k]      # (rebuilt from the records if ever needed again)

    def occupy(self, start: int, end: int, bits: int, share: Share = EXCLUSIVE,
               found_by: Any = None) -> None:
        """Take ``bits`` on ``[start, end)`` in every view the occupation blocks.

        ``found_by``: the placer whose Gantt has ``bits`` free during the whole interval
        (the placement was found there): its Gantt takes them without checks.
        """
        if end <= start or not bits:
            return
        self._records.append((start, end, bits, share))
        if share is not EXCLUSIVE:
            self._besteffort |= share.besteffort
            if share.timesharing is not None:
                self._timesharing.add(share.timesharing)
            if share.placeholder is not None:
                self._placeholders.add(share.placeholder)
        for key, placer in self._views.items():
            if share is EXCLUSIVE or share.blocks(key):
                if placer is found_by:
                    placer.gantt.take(start, end, bits)
                else:
                    placer.gantt.occupy(start, end, bits)

    def placer(self, key: ViewKey) -> Any:
        """The placer of view ``key`` (built from every occupation so far on first use).

        Parts of the key that match no occupation so far are dropped first: e.g. the first
        timesharing job of a key, or any job of a round without besteffort occupations,
        uses the plain view (its later jobs get their own view once they have something
        to share).  So a round builds as many Gantts as it has kinds of sharing in use.
        """
        key = (key[0] and self._besteffort,
               key[1] if key[1] in self._timesharing else None,
               key[2] if key[2] in self._placeholders else None)
        placer = self._views.get(key)
        if placer is None:
            placer = self._factory()
            base = next((k for k in self._views if _sees_more(key, k)), None)
            if base is None:
                occupy = placer.gantt.occupy
                for start, end, bits, share in self._records:
                    if share is EXCLUSIVE or share.blocks(key):
                        occupy(start, end, bits)
            else:
                # the base view's Gantt plus what blocks this view only: a copy and a few
                # occupations instead of replaying every record (e.g. the Gantt of the
                # besteffort jobs, once one is placed, from the Gantt of the others)
                placer.gantt = self._views[base].gantt.copy()
                occupy = placer.gantt.occupy
                for start, end, bits, share in self._records:
                    if share is not EXCLUSIVE and share.blocks(key) and not share.blocks(base):
                        occupy(start, end, bits)
            self._views[key] = placer
        return placer

    def keys(self) -> list[ViewKey]:
        return list(self._views)


def _sees_more(key: ViewKey, base: ViewKey) -> bool:
    """Is every occupation that blocks view ``base`` blocking view ``key`` too?  (Each
    exemption of ``key`` is one of ``base``'s.)"""
    return ((key[0] or not base[0]) and (key[1] is None or key[1] == base[1])
            and (key[2] is None or key[2] == base[2]))


# ----------------------------------------------------------------------------- job types

def timesharing_key(value: str, user: str | None, name: str | None) -> str:
    """The sharing key of ``-t timesharing[=VALUE]`` for a job of ``user`` named ``name``.

    VALUE is ``U,N`` with U ``user`` or ``*`` and N ``name`` or ``*`` (empty: ``*,*``);
    ``user`` and ``name`` are replaced by the job's user and name, so two timesharing jobs
    share resources iff their keys are equal: ``*,*`` with every ``*,*`` job, ``user,*``
    with the same user's ``user,*`` jobs, ``*,name`` with the ``*,name`` jobs of the same
    name, ``user,name`` with the same user's jobs of the same name.  ValueError otherwise.
    """
    text = (value or "*,*").strip()
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or parts[0] not in ("user", "*") or parts[1] not in ("name", "*"):
        raise ValueError(f"invalid timesharing type {text!r} (use user|*,name|*)")
    who = "user=" + (user or "") if parts[0] == "user" else "*"
    what = "name=" + (name or "") if parts[1] == "name" else "*"
    return f"{who},{what}"


@dataclass(frozen=True)
class JobPolicy:
    """The scheduling attributes a job's ``-t`` types give it.

    ``inner``: the value of ``inner=`` as given (a container job id, or a container name
    to be resolved by the caller); ``container``: the job is a container (its value, the
    container's name, may be empty).
    """

    besteffort: bool = False
    timesharing: str | None = None
    placeholder: str | None = None
    allow: str | None = None
    container: str | None = None
    inner: str | None = None


def job_policy(types: Iterable[str], user: str | None = None, name: str | None = None
               ) -> JobPolicy:
    """Read the types of a job (``["timesharing=user,*", "inner=42"]``); ValueError on a
    malformed value (the caller turns it into the job's message)."""
    found: dict[str, Any] = {}
    for job_type in types:
        kind, sep, value = job_type.partition("=")
        value = value.strip()
        if kind == "besteffort":
            found["besteffort"] = True
        elif kind == "timesharing":
            found["timesharing"] = timesharing_key(value, user, name)
        elif kind in ("placeholder", "allow", "inner"):
            if not value:
                raise ValueError(f"job type {kind!r} needs a value ({kind}=...)")
            found[kind] = value
        elif kind == "container":
            found["container"] = value
    return JobPolicy(**found)
