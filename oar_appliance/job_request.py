"""A job as submitted: the typed parameters that admission rules read and may change.

``oarsub`` builds a :class:`JobRequest` from its options (and the ``#OAR`` lines of a
script), the admission rules run on it in order, then :mod:`oar_appliance.submission`
checks it and writes it.  Admission rules see it as ``job``; what they may change is
every attribute below (see the README, "Admission rules").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .lang.request import MoldableRequest


@dataclass
class JobRequest:
    """Everything a submission asks for."""

    #: the submitter (from the operating system; rules may read it, never set it)
    user: str
    #: the program and its arguments ("" for an interactive job)
    command: str = ""
    #: "PASSIVE" (a command) or "INTERACTIVE" (a shell, ``-I``)
    job_type: str = "PASSIVE"
    #: queue name; None until a rule or the default sets it
    queue: str | None = None
    #: moldable alternatives (one per ``-l``); walltime None until a rule sets it
    moldables: list[MoldableRequest] = field(default_factory=list)
    #: ``-p`` expression restricting every group, or None
    properties: str | None = None
    #: ``-t`` types, e.g. ["besteffort"], ["timesharing=user,*"], ["container"]
    types: list[str] = field(default_factory=list)
    name: str | None = None
    project: str | None = None
    #: absolute launching directory
    directory: str = "/"
    stdout: str | None = None
    stderr: str | None = None
    notify: str | None = None
    #: job ids this job depends on (``-a``)
    anterior: list[int] = field(default_factory=list)
    #: advance reservation start (epoch seconds), or None
    reservation: int | None = None
    #: seconds before the walltime to send the checkpoint signal (0: none)
    checkpoint: int = 0
    signal: int = 12
    hold: bool = False
    resubmit: int | None = None
    #: the job key: generate one (``-k``), or the private key text imported (``-i``)
    use_job_key: bool = False
    import_job_key: str | None = None
    export_job_key_file: str | None = None
    #: number of jobs of an array (1: not an array) and their parameter lines
    array: int = 1
    array_params: list[str] | None = None
    stagein: str | None = None
    stagein_md5sum: str | None = None
    #: the command line as typed, kept in jobs.initial_request
    initial_request: str = ""
    #: messages of the admission rules, shown to the user
    messages: list[str] = field(default_factory=list)

    def set_default_walltime(self, seconds: int) -> None:
        """Give ``seconds`` to every alternative that has no walltime."""
        self.moldables = [
            m if m.walltime is not None else dataclasses.replace(m, walltime=seconds)
            for m in self.moldables
        ]

    def cap_walltime(self, seconds: int) -> bool:
        """Lower every walltime above ``seconds`` to it; True if one was lowered."""
        capped = False
        new = []
        for m in self.moldables:
            if m.walltime is not None and m.walltime > seconds:
                m = dataclasses.replace(m, walltime=seconds)
                capped = True
            new.append(m)
        self.moldables = new
        return capped

    def add_property(self, expression: str) -> None:
        """Restrict every group further: ``-p`` becomes ``(old) AND (expression)``."""
        self.properties = expression if not self.properties else f"({self.properties}) AND ({expression})"

    def has_type(self, name: str) -> bool:
        """True for ``-t name`` and ``-t name=...``."""
        return any(t == name or t.startswith(name + "=") for t in self.types)
