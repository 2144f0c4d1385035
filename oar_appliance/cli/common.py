"""What every command shares: option parsing, configuration, database, identity, errors.

A command module defines ``build_parser()`` and ``run(args, ctx) -> int`` and its
``main(argv=None)`` is ``run_command(build_parser(), run, argv)``.  This module is the one
place where the environment is read (``OARCONFFILE``, the caller's identity), where
exceptions become one ``#ERROR: ...`` line and an exit code, and where the table of exit
codes is written into every ``--help``.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import configargparse

from .. import __version__
from ..accounts import ADMIN_USERS
from ..conf import DEFAULT_CONF_PATH, Config, load_config
from ..errors import ERROR_CLASSES, DatabaseError, OarError, PermissionDeniedError, UsageError

log = logging.getLogger(__name__)

INTERNAL_ERROR_EXIT = 70  # EX_SOFTWARE: a bug of ours, never the user's fault
INTERRUPTED_EXIT = 130



def exit_code_table(extra: Sequence[tuple[int, str]] = ()) -> str:
    rows = [(0, "success")] + [(c.exit_code, c.kind + " error: " + (c.__doc__ or "").strip().splitlines()[0])
                               for c in ERROR_CLASSES]
    rows += list(extra)
    rows.append((INTERNAL_ERROR_EXIT, "internal error (a bug: please report it)"))
    return "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in sorted(rows))


class ArgumentParser(configargparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def make_parser(prog: str, description: str, short_help: bool = True,
                extra_exit_codes: Sequence[tuple[int, str]] = ()) -> ArgumentParser:
    """A parser with the options every command has: help, version, configuration file."""
    parser = ArgumentParser(
        prog=prog,
        description=description,
        epilog=exit_code_table(extra_exit_codes),
        add_help=False,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        args_for_setting_config_path=[],
        default_config_files=[],
    )
    common = parser.add_argument_group("common options")
    common.add_argument(*(["-h", "--help"] if short_help else ["--help"]), action="help",
                        help="show this help and exit")
    common.add_argument("-V", "--version", action="version", version=f"OAR appliance {__version__}",
                        help="print the OAR version and exit")
    # OARCONFFILE is read in run_command, not through ConfigArgParse's env_var: that one
    # inserts the value among the command-line words, before a word like "-1:30"
    common.add_argument("--conf", metavar="FILE", default=None,
                        help=f"oar.conf to read (default: $OARCONFFILE, else {DEFAULT_CONF_PATH})")
    return parser


def add_output_formats(parser: ArgumentParser) -> None:
    """``-J`` JSON and ``-Y`` YAML: the same fields in both."""
    group = parser.add_argument_group("output format").add_mutually_exclusive_group()
    group.add_argument("-J", "--json", dest="output", action="store_const", const="json",
                       help="print JSON")
    group.add_argument("-Y", "--yaml", dest="output", action="store_const", const="yaml",
                       help="print YAML")


def caller_name(environ: dict[str, str] | None = None) -> str:
    """Who runs the command: the OS account, or sudo's caller when sudo ran it as ``oar``."""
    environ = os.environ if environ is None else environ
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = str(os.getuid())
    # user commands reach the database as "oar" through a sudo rule: the real caller is
    # sudo's; root stays root (an admin who ran "sudo oarnodesetting" is root)
    if name == "oar" and environ.get("SUDO_USER"):
        return environ["SUDO_USER"]
    return name


@dataclass
class Context:
    """What a command's ``run`` gets besides its arguments."""

    config: Config
    user: str
    now: int = field(default_factory=lambda: int(time.time()))
    stdout: Any = field(default_factory=lambda: sys.stdout)
    _db: Any = None

    @property
    def db(self):
        """The database, opened on first use, with its schema checked."""
        if self._db is None:
            self.open_db()
        return self._db

    def open_db(self, create: bool = False, check_schema: bool = True):
        """Open the database of oar.conf (``create``: an SQLite file may be made)."""
        from ..db import connection, schema

        self._db = connection.connect(self.config.database_url(), create=create)
        if check_schema:
            schema.require_schema(self._db)
        return self._db

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def warn(self, text: str) -> None:
        """A ``#WARNING:`` line on stderr: something the user should know, not a failure."""
        print("#WARNING: " + " ".join(str(text).split()), file=sys.stderr)

    def emit(self, data: Any, fmt: str) -> None:
        """Print ``data`` as JSON or YAML (plain types only: no language-specific tags)."""
        if fmt == "json":
            self.out(json.dumps(data, indent=2, sort_keys=False, default=str))
        else:
            import yaml

            self.stdout.write(yaml.safe_dump(data, default_flow_style=False, sort_keys=False,
                                             allow_unicode=True))

    def require_admin(self) -> None:
        """Only root, oar, or in the lab mode the owner of the database file, may administer."""
        if self.user in ADMIN_USERS:
            return
        if self.config["DB_TYPE"] == "sqlite":
            try:
                owner = pwd.getpwuid(os.stat(self.config["DB_BASE_FILE"]).st_uid).pw_name
            except (OSError, KeyError):
                owner = None
            if owner == self.user:
                return
        raise PermissionDeniedError(f"only oar or root may do this (you are {self.user})")

    def close(self) -> None:
        if self._db is not None and not self._db.is_closed():
            self._db.close()


def _report_internal_error(config: Config | None, exc: BaseException) -> str:
    """Append the traceback to LOG_FILE when possible; return where it went."""
    path = config.get("LOG_FILE") if config is not None else None
    if path:
        try:
            with open(path, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} internal error in {sys.argv[0]}\n")
                f.write("".join(traceback.format_exception(exc)))
            return f"; details in {path}"
        except OSError:
            pass
    return ""


def error_line(message: str) -> str:
    return "#ERROR: " + " ".join(str(message).split())


def run_command(parser: ArgumentParser, body: Callable[[Any, Context], int],
                argv: Sequence[str] | None = None) -> int:
    """Parse, load oar.conf, run ``body``; turn every failure into one line and an exit code."""
    import peewee

    config = None
    ctx = None
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        conf_path = args.conf or os.environ.get("OARCONFFILE") or DEFAULT_CONF_PATH
        config = load_config(conf_path, environ=dict(os.environ))
        ctx = Context(config=config, user=caller_name())
        return int(body(args, ctx) or 0)
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    except OarError as exc:
        print(error_line(exc.message), file=sys.stderr)
        return exc.exit_code
    except peewee.DatabaseError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(error_line(f"database error: {text}"), file=sys.stderr)
        return DatabaseError.exit_code
    except KeyboardInterrupt:
        print(error_line("interrupted"), file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as exc:  # the last barrier: no traceback ever reaches the user
        where = _report_internal_error(config, exc)
        print(error_line(f"internal error: {type(exc).__name__}: {exc}{where}"), file=sys.stderr)
        return INTERNAL_ERROR_EXIT
    finally:
        if ctx is not None:
            ctx.close()


def parse_int_list(values: Sequence[str] | None, what: str) -> list[int]:
    """``["1", "2,3"]`` -> ``[1, 2, 3]``, with a clear error for anything else."""
    result: list[int] = []
    for value in values or ():
        for item in str(value).split(","):
            item = item.strip()
            if not item.isdigit():
                raise UsageError(f"{what} must be a number, got {item!r}")
            result.append(int(item))
    return result


__all__ = [
    "ArgumentParser", "Context", "make_parser", "add_output_formats", "run_command",
    "caller_name", "parse_int_list",
]
