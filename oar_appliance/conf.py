"""Reading ``oar.conf``: a strict reader of its bash subset, and typed access to its keys.

``oar.conf`` must stay a valid bash file (OAR's shell scripts ``source`` it), so the reader
mirrors bash exactly for the constructs below, and refuses everything else with a
:class:`~oar_appliance.errors.ConfigError` naming the file, the line and what was found,
rather than guessing.  Its values are those of ``bash -c 'set -a; . oar.conf; env'``.

Accepted:

* blank lines, comment lines, trailing comments (``#`` starting a word; inside a word, as in
  ``A=x#y``, it is literal);
* ``NAME=value``, also several on one line (``A=1 B=$A``: assigned left to right, as bash
  does); names are ``[A-Za-z_][A-Za-z0-9_]*``;
* ``export NAME=value ...`` and ``export NAME`` (a no-op).  As in bash, all the arguments of
  one ``export`` are expanded before any is assigned: ``export A=1 B=$A`` gives B the old A;
* values made of any concatenation of: unquoted characters (a backslash escapes the next
  character, backslash-newline is removed), ``'single quotes'`` (literal), ``"double quotes"``
  (``\\"`` ``\\\\`` ``\\$`` ``\\``` escapes and backslash-newline; other backslashes literal), and
  ``$NAME`` / ``${NAME}``; quotes may span lines; values may be empty.  Like bash, no word
  splitting or globbing is done on values;
* ``$NAME`` of a name not assigned earlier in the file is taken from the ``environ``
  argument (never from ``os.environ``), and is ``""`` when absent there too.

Refused (``file:line: what``): command substitution (``$(...)``, backticks), arithmetic
(``$((...))``, ``$[...]``), other parameter expansions (``${A:-x}``, ``${#A}``, ``$1``, ``$@``,
``$_``...), ``$'...'`` and ``$"..."``, the operators ``; & | < > ( )``, a word after an
assignment (``A=b c`` would run ``c``), any line that is not an assignment or ``export``,
``A+=x``, arrays, unterminated quotes (reported where the quote opened), unquoted ``~`` where
bash would expand it (start of a value, after ``:``), unquoted ``{``/``}`` in ``export``
arguments (brace expansion), ``export`` options, carriage returns and other control
characters, and the variables bash sets or manages itself (``PATH``, ``IFS``, ``RANDOM``,
``BASH_*``..., whose values bash, not the file, decides).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from oar_appliance.errors import ConfigError

__all__ = ["DEFAULT_CONF_PATH", "KEYS", "Config", "load_config", "parse_oar_conf"]

#: where the OAR commands and daemons read their configuration by default
DEFAULT_CONF_PATH = "/etc/oar/oar.conf"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_IDENT_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_IDENT_CHARS = _IDENT_START + "0123456789"
_SPECIAL_PARAMS = "0123456789@*#?-$!"
_OPERATORS = {
    ";": "';' (command separator)",
    "&": "'&' (background job or '&&')",
    "|": "'|' (pipe or '||')",
    "<": "'<' (redirection)",
    ">": "'>' (redirection)",
    "(": "'(' (array, subshell or function definition)",
    ")": "')' (array, subshell or function definition)",
}
#: variables whose value bash sets or manages itself: they can be neither assigned nor used
_BASH_MANAGED = frozenset(
    "_ BASH BASHOPTS BASHPID DIRSTACK EPOCHREALTIME EPOCHSECONDS EUID FUNCNAME GROUPS HISTCMD "
    "HOSTNAME HOSTTYPE IFS LINENO MACHTYPE OLDPWD OPTERR OPTIND OSTYPE PATH PIPESTATUS "
    "POSIXLY_CORRECT PPID PS4 PWD RANDOM SECONDS SHELL SHELLOPTS SHLVL SRANDOM TERM UID".split()
)

# --------------------------------------------------------------------------------------------
# The bash-subset reader
# --------------------------------------------------------------------------------------------

# A word is a list of parts: ("c", char, quoted) for one literal character, ("v", name, line)
# for a variable reference, expanded only when the word is assigned (bash order).
_Part = tuple[str, str, Any]


class _Word:
    __slots__ = ("parts", "line", "raw")

    def __init__(self, parts: list[_Part], line: int, raw: str):
        self.parts, self.line, self.raw = parts, line, raw


def _is_bash_managed(name: str) -> bool:
    return name in _BASH_MANAGED or name.startswith(("BASH_", "COMP_"))


class _Lexer:
    """Splits the text into commands (lists of words) the way bash's tokenizer does."""

    def __init__(self, text: str, filename: str):
        self.text, self.filename = text, filename
        self.pos, self.line = 0, 1

    def error(self, what: str, line: int | None = None) -> ConfigError:
        return ConfigError(f"{self.filename}:{self.line if line is None else line}: {what}")

    def _peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def _skip_continuations(self) -> None:
        """Drop backslash-newline pairs: bash removes them before it reads the characters."""
        while self.text.startswith("\\\n", self.pos):
            self.pos += 2
            self.line += 1

    def _check_char(self, c: str) -> None:
        if c == "\r":
            raise self.error("carriage return found (DOS line ending?): bash would keep it")
        if (ord(c) < 32 and c not in "\t\n") or c == "\x7f":
            raise self.error(f"control character {c!r} found")

    def commands(self) -> Iterator[list[_Word]]:
        words: list[_Word] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t":
                self.pos += 1
            elif self.text.startswith("\\\n", self.pos):
                self._skip_continuations()
            elif c == "\n":
                if words:
                    yield words
                    words = []
                self.pos += 1
                self.line += 1
            elif c == "#":  # a comment: '#' starts a word
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                words.append(self._word())
        if words:
            yield words

    def _word(self) -> _Word:
        start, line, parts = self.pos, self.line, []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\n":
                break
            if c == "\\":
                nxt = self._peek(1)
                if nxt == "\n":
                    self._skip_continuations()
                    continue
                if nxt == "":  # bash keeps a backslash that ends the file
                    parts.append(("c", "\\", True))
                    self.pos += 1
                    continue
                self._check_char(nxt)
                parts.append(("c", nxt, True))
                self.pos += 2
            elif c == "'":
                self._single_quoted(parts)
            elif c == '"':
                self._double_quoted(parts)
            elif c == "$":
                self._dollar(parts, quoted=False)
            elif c == "`":
                raise self.error("command substitution with backticks (`...`) is not supported")
            elif c in _OPERATORS:
                raise self.error(f"{_OPERATORS[c]} found: only assignments are allowed")
            else:
                self._check_char(c)
                parts.append(("c", c, False))
                self.pos += 1
        return _Word(parts, line, self.text[start : self.pos])

    def _single_quoted(self, parts: list[_Part]) -> None:
        opened = self.line
        parts.append(("c", "", True))  # even '' makes the word quoted: ''A=1 is a command
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise self.error("unterminated single quote (opened on this line)", opened)
        for c in self.text[self.pos + 1 : end]:
            self._check_char(c)
            parts.append(("c", c, True))
            if c == "\n":
                self.line += 1
        self.pos = end + 1

    def _double_quoted(self, parts: list[_Part]) -> None:
        opened = self.line
        parts.append(("c", "", True))
        self.pos += 1
        while True:
            c = self._peek()
            if c == "":
                raise self.error("unterminated double quote (opened on this line)", opened)
            if c == '"':
                self.pos += 1
                return
            if c == "\\":
                nxt = self._peek(1)
                if nxt == "\n":
                    self._skip_continuations()
                elif nxt in ('"', "\\", "$", "`"):
                    parts.append(("c", nxt, True))
                    self.pos += 2
                else:  # any other backslash is literal; the next character is read normally
                    parts.append(("c", "\\", True))
                    self.pos += 1
            elif c == "$":
                self._dollar(parts, quoted=True)
            elif c == "`":
                raise self.error("command substitution with backticks (`...`) is not supported")
            else:
                self._check_char(c)
                parts.append(("c", c, True))
                self.pos += 1
                if c == "\n":
                    self.line += 1

    def _read_name(self) -> str:
        name = ""
        while self._peek() and self._peek() in _IDENT_CHARS:
            name += self._peek()
            self.pos += 1
            self._skip_continuations()
        return name

    def _dollar(self, parts: list[_Part], quoted: bool) -> None:
        line = self.line
        self.pos += 1
        self._skip_continuations()
        nxt = self._peek()
        if nxt == "(":
            if self._peek(1) == "(":
                raise self.error("arithmetic expansion $((...)) is not supported")
            raise self.error("command substitution $(...) is not supported")
        if nxt == "[":
            raise self.error("arithmetic expansion $[...] is not supported")
        if nxt == "{":
            self.pos += 1
            self._skip_continuations()
            name = self._read_name()
            if not name or self._peek() != "}":
                raise self.error(
                    "parameter expansion '${...' is not supported: only $NAME and ${NAME} are"
                )
            self.pos += 1
        elif nxt and nxt in _IDENT_START:
            name = self._read_name()
        elif nxt and nxt in _SPECIAL_PARAMS:
            raise self.error(f"special parameter '${nxt}' is not supported")
        elif not quoted and nxt in ("'", '"'):
            raise self.error(f"'${nxt}...{nxt}' quoting is not supported")
        else:  # '$' followed by nothing special is a literal dollar
            parts.append(("c", "$", quoted))
            return
        if _is_bash_managed(name):
            raise self.error(f"${name} is set by bash itself: its value does not come from the file")
        parts.append(("v", name, line))


def _split_assignment(word: _Word) -> tuple[str, list[_Part]] | None:
    """(name, value parts) when bash reads ``word`` as an assignment, else None."""
    name = ""
    for i, part in enumerate(word.parts):
        if part[0] != "c" or part[2]:  # a quoted character or an expansion before the '='
            return None
        if part[1] == "=":
            return name, word.parts[i + 1 :]
        name += part[1]
    return None


def _expand(parts: list[_Part], values: Mapping[str, str], environ: Mapping[str, str]) -> str:
    out = []
    for part in parts:
        if part[0] == "c":
            out.append(part[1])
        else:
            out.append(values[part[1]] if part[1] in values else environ.get(part[1], ""))
    return "".join(out)


def _check_assignment(lexer: _Lexer, word: _Word, in_export: bool) -> tuple[str, list[_Part]]:
    """(name, value parts) of an assignment word, or the ConfigError that refuses it."""

    def refuse(what: str) -> ConfigError:
        return lexer.error(what, word.line)

    split = _split_assignment(word)
    if split is None:
        raise refuse(f"not an assignment: {word.raw!r}")
    name, value = split
    if name.endswith("+") and _IDENT.match(name[:-1]):
        raise refuse(f"'{name}=' (append) is not supported: use {name[:-1]}=...")
    if "[" in name:
        raise refuse(f"array assignment {word.raw!r} is not supported")
    if not _IDENT.match(name):
        raise refuse(f"not an assignment: {word.raw!r} ({name!r} is not a valid name)")
    if _is_bash_managed(name):
        raise refuse(f"{name} is a variable bash sets or manages itself: use another name")
    for i, part in enumerate(value):
        if part[0] != "c" or part[2]:
            continue
        if part[1] == "~" and (i == 0 or value[i - 1] == ("c", ":", False)):
            raise refuse(f"unquoted '~' in {word.raw!r}: bash would expand it; quote it")
        if in_export and part[1] in "{}":  # bash brace-expands export arguments
            raise refuse(f"unquoted '{part[1]}' in export argument {word.raw!r}: quote it")
    return name, value


def parse_oar_conf(
    text: str, filename: str = "oar.conf", environ: Mapping[str, str] | None = None
) -> dict[str, tuple[str, int]]:
    """Read the assignments of an oar.conf text as bash would.

    Returns ``{name: (value, line of the last assignment)}``.  ``environ`` gives the values
    of names used before being assigned in the file (``os.environ`` is never read).  Raises
    :class:`ConfigError` ``"<filename>:<line>: <what>"`` for anything outside the subset
    described in the module documentation.
    """
    environ = environ or {}
    lexer = _Lexer(text, filename)
    values: dict[str, str] = {}
    result: dict[str, tuple[str, int]] = {}
    for words in lexer.commands():
        first = words[0]
        if first.raw == "export":  # the plain, unquoted word only
            if len(words) == 1:
                raise lexer.error("'export' without arguments (it would print variables)", first.line)
            pending = []
            for word in words[1:]:
                if word.parts and word.parts[0][:2] == ("c", "-"):
                    raise lexer.error(f"export option {word.raw!r} is not supported", word.line)
                bare = "".join(p[1] for p in word.parts if p[0] == "c" and not p[2])
                if len(bare) == len(word.parts) and _IDENT.match(bare):  # 'export NAME'
                    if _is_bash_managed(bare):
                        raise lexer.error(f"{bare} is a variable bash sets or manages itself", word.line)
                    continue  # a no-op: set -a already exports every assigned name
                name, value = _check_assignment(lexer, word, in_export=True)
                pending.append((name, _expand(value, values, environ), word.line))
            for name, value, line in pending:  # bash expands every argument before export runs
                values[name] = value
                result[name] = (value, line)
            continue
        if _split_assignment(first) is None:
            command = " ".join(word.raw for word in words)
            raise lexer.error(
                f"not an assignment: {command[:60]!r} (only NAME=value and export lines are allowed)",
                first.line,
            )
        for index, word in enumerate(words):
            if index and _split_assignment(word) is None:
                raise lexer.error(
                    f"unquoted whitespace before {word.raw!r}: bash would run it as a command"
                    " (quote the value)",
                    word.line,
                )
            name, value = _check_assignment(lexer, word, in_export=False)
            values[name] = _expand(value, values, environ)
            result[name] = (values[name], word.line)
    return result


# --------------------------------------------------------------------------------------------
# Typed keys
# --------------------------------------------------------------------------------------------

_STR, _INT, _PORT, _BOOL, _LIST, _OPT, _DBTYPE = "str", "int", "port", "bool", "list", "opt", "db_type"

#: every known key: name -> (type, default).  Types: str, int, port (an int in 1-65535),
#: bool, list (words separated by commas and/or spaces), opt (str or None; "" means None)
#: and db_type ("sqlite" or "Pg").
KEYS: Mapping[str, tuple[str, Any]] = MappingProxyType({
    "DB_TYPE": (_DBTYPE, "sqlite"),
    "DB_HOSTNAME": (_STR, "localhost"),
    "DB_PORT": (_PORT, 5432),
    "DB_BASE_NAME": (_STR, "oar"),
    "DB_BASE_LOGIN": (_STR, "oar"),
    "DB_BASE_PASSWD": (_STR, "oar"),
    "DB_BASE_LOGIN_RO": (_STR, "oar_ro"),
    "DB_BASE_PASSWD_RO": (_STR, "oar_ro"),
    "DB_BASE_FILE": (_STR, "/var/lib/oar/oar.sqlite"),
    "SERVER_HOSTNAME": (_STR, "localhost"),
    "SERVER_PORT": (_PORT, 6666),
    "OARSUB_DEFAULT_RESOURCES": (_STR, "/resource_id=1"),
    "OARSUB_NODES_RESOURCES": (_STR, "network_address"),
    "OARSUB_FORCE_JOB_KEY": (_BOOL, False),
    "DEFAULT_JOB_WALLTIME": (_INT, 7200),
    "DEPLOY_HOSTNAME": (_STR, "127.0.0.1"),
    "COSYSTEM_HOSTNAME": (_STR, "127.0.0.1"),
    "DETACH_JOB_FROM_SERVER": (_BOOL, True),
    "OAR_RUNTIME_DIRECTORY": (_STR, "/tmp/oar_runtime"),
    "NODE_FILE_DB_FIELD": (_STR, "network_address"),
    "NODE_FILE_DB_FIELD_DISTINCT_VALUES": (_STR, "resource_id"),
    "PINGCHECKER_TAKTUK_ARG_COMMAND": (_OPT, None),
    "PINGCHECKER_SENTINELLE_SCRIPT_COMMAND": (_OPT, None),
    "PINGCHECKER_FPING_COMMAND": (_OPT, None),
    "PINGCHECKER_NMAP_COMMAND": (_OPT, None),
    "PINGCHECKER_GENERIC_COMMAND": (_OPT, None),
    "LOG_LEVEL": (_INT, 2),
    "LOG_FILE": (_STR, "/var/log/oar.log"),
    "OAREXEC_DEBUG_MODE": (_BOOL, False),
    "OAR_CONNECTOR": (_STR, "ssh"),
    "NODE_SSH_USER": (_OPT, "oar"),
    "NODE_PYTHON": (_STR, "python3"),
    "NODE_COMMAND_PREFIX": (_OPT, "sudo -n"),
    "ALLOWED_NETWORKS": (_LIST, ("127.0.0.1/32", "0.0.0.0/0")),
    "ACCOUNTING_WINDOW": (_INT, 86400),
    "MAIL_SMTP_SERVER": (_OPT, None),
    "MAIL_RECIPIENT": (_OPT, None),
    "MAIL_SENDER": (_OPT, None),
    "PROLOGUE_EPILOGUE_TIMEOUT": (_INT, 60),
    "PROLOGUE_EXEC_FILE": (_OPT, None),
    "EPILOGUE_EXEC_FILE": (_OPT, None),
    "SERVER_PROLOGUE_EPILOGUE_TIMEOUT": (_INT, 60),
    "SERVER_PROLOGUE_EXEC_FILE": (_OPT, None),
    "SERVER_EPILOGUE_EXEC_FILE": (_OPT, None),
    "FINAUD_FREQUENCY": (_INT, 300),
    "DEAD_SWITCH_TIME": (_INT, 0),
    "SCHEDULER_TIMEOUT": (_INT, 10),
    "RESERVATION_WAITING_RESOURCES_TIMEOUT": (_INT, 300),
    "SCHEDULER_JOB_SECURITY_TIME": (_INT, 1),
    "SCHEDULER_GANTT_HOLE_MINIMUM_TIME": (_INT, 300),
    "SCHEDULER_RESOURCE_ORDER": (_STR, "resource_id ASC"),
    "SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE": (_LIST, ()),
    "SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE": (_LIST, ()),
    "SUSPEND_RESUME_FILE": (_STR, "suspend_resume_manager.pl"),
    "JUST_AFTER_SUSPEND_EXEC_FILE": (_OPT, None),
    "JUST_BEFORE_RESUME_EXEC_FILE": (_OPT, None),
    "SUSPEND_RESUME_SCRIPT_TIMEOUT": (_INT, 60),
    "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD": (_STR, "cpuset"),
    "JOB_RESOURCE_MANAGER_FILE": (_STR, "cpuset_manager.pl"),
    # nodes: the resource column naming the device a resource stands for (a GPU's
    # /dev/nvidia0): a job cannot open its node's devices that are not its resources'.
    # Off when empty or when the resources table has no such column
    "JOB_RESOURCE_MANAGER_DEVICES_DB_FIELD": (_STR, "gpu_device"),
    # nodes: confine jobs in cgroups: auto (when the node can), cgroup (always; a node that
    # cannot refuses the job), none (process groups only)
    "JOB_RESOURCE_MANAGER": (_STR, "auto"),
    # nodes: where the jobs' cgroups go in each hierarchy; a relative path is taken inside
    # the cgroup oarexec starts in (a node that runs inside a delegated cgroup)
    "JOB_RESOURCE_MANAGER_CGROUP_BASE": (_STR, "/oar"),
    "TAKTUK_CMD": (_OPT, None),
    "SCHEDULER_NODE_MANAGER_WAKE_UP_CMD": (_OPT, None),
    "SCHEDULER_NODE_MANAGER_SLEEP_CMD": (_OPT, None),
    "SCHEDULER_NODE_MANAGER_IDLE_TIME": (_INT, 600),
    "SCHEDULER_NODE_MANAGER_SLEEP_TIME": (_INT, 600),
    "SCHEDULER_NODE_MANAGER_WAKEUP_TIME": (_INT, 1),
    "ENERGY_SAVING_INTERNAL": (_BOOL, False),
    "SCHEDULER_FAIRSHARING_WINDOW_SIZE": (_INT, 30 * 3600),
    "SCHEDULER_FAIRSHARING_PROJECT_TARGETS": (_STR, ""),
    "SCHEDULER_FAIRSHARING_USER_TARGETS": (_STR, ""),
    "SCHEDULER_FAIRSHARING_COEF_PROJECT": (_INT, 3),
    "SCHEDULER_FAIRSHARING_COEF_USER": (_INT, 2),
    "SCHEDULER_FAIRSHARING_COEF_USER_ASK": (_INT, 1),
    "QUOTAS": (_BOOL, False),
    "QUOTAS_CONF_FILE": (_STR, "/etc/oar/scheduler_quotas.conf"),
    "OPENSSH_CMD": (_STR, "ssh"),
    "DESKTOP_COMPUTING_ALLOW_CREATE_NODE": (_BOOL, False),
    "DESKTOP_COMPUTING_EXPIRY": (_INT, 10),
    "STAGEOUT_DIR": (_STR, "/var/lib/oar/stageouts/"),
    "STAGEIN_DIR": (_STR, "/var/lib/oar/stageins"),
    "STAGEIN_CACHE_EXPIRY": (_INT, 144),
    "OARSH_OARSTAT_CMD": (_OPT, None),
    "OARSH_OPENSSH_DEFAULT_OPTIONS": (_STR, "-oProxyCommand=none -oPermitLocalCommand=no"),
    "OARMONITOR_SENSOR_FILE": (_STR, "/etc/oar/oarmonitor_sensor.pl"),
    "HIERARCHY_LABELS": (_LIST, ("resource_id", "network_address", "cpu", "core")),
    "WALLTIME_CHANGE_ENABLED": (_BOOL, False),
    "USERS_ALLOWED_HOLD_RESUME": (_BOOL, False),
    "JOBDEL_SOFTWALLTIME": (_INT, 20),
    "JOBDEL_WALLTIME": (_INT, 300),
    # oar-server: at most this many launches, ends and node actions at once
    "LAUNCHER_POOL_SIZE": (_INT, 10),
    # oar-server: a pass of the automaton (and a scheduling round) at least this often
    "SERVER_TIMER_PERIOD": (_INT, 5),
    # oar-server: how often sarko runs (walltimes, checkpoints, stuck kills), in seconds
    "SARKO_FREQUENCY": (_INT, 30),
    # oar-server: how long oarexec may take to say it is ready
    "OAREXEC_START_TIMEOUT": (_INT, 30),
})

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_BOOLS = {word: True for word in ("yes", "true", "1", "on")}
_BOOLS.update({word: False for word in ("no", "false", "0", "off")})
_DB_TYPES = {"sqlite": "sqlite", "pg": "Pg", "postgresql": "Pg"}


def _convert(key: str, value: str, where: str) -> Any:
    """The typed value of ``key`` from its text; ``where`` ("file:line") prefixes errors."""
    kind = KEYS[key][0] if key in KEYS else _STR
    if kind in (_INT, _PORT):
        if not _INT_RE.match(value):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        number = int(value)
        if kind == _PORT and not 0 < number < 65536:
            raise ConfigError(f"{where}: {key} must be a port number (1-65535), got {value!r}")
        return number
    if kind == _BOOL:
        if value.lower() not in _BOOLS:
            raise ConfigError(f"{where}: {key} must be yes/no, true/false, on/off or 1/0, got {value!r}")
        return _BOOLS[value.lower()]
    if kind == _LIST:
        return tuple(w for w in re.split(r"[,\s]+", value) if w)
    if kind == _OPT:
        return value or None
    if kind == _DBTYPE:
        if value.lower() == "mysql":
            raise ConfigError(f"{where}: DB_TYPE={value}: MySQL is not supported, use sqlite or Pg")
        if value.lower() not in _DB_TYPES:
            raise ConfigError(f"{where}: DB_TYPE must be sqlite or Pg (or postgresql), got {value!r}")
        return _DB_TYPES[value.lower()]
    return value


def _check_typed(key: str, value: Any) -> Any:
    """Validate an already typed override value (a str is converted like file text)."""
    kind = KEYS[key][0] if key in KEYS else _STR
    if isinstance(value, str) and (kind != _OPT or value):
        return _convert(key, value, "override")
    ok = {
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _PORT: isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536,
        _BOOL: isinstance(value, bool),
        _LIST: isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
        _OPT: value is None or value == "",
    }.get(kind, False)
    if not ok:
        raise ConfigError(f"override: {key} cannot be set to {value!r} (type {kind})")
    if kind == _LIST:
        return tuple(value)
    return None if kind == _OPT else value


class Config(Mapping[str, Any]):
    """An immutable, typed oar.conf.

    ``config[key]`` gives the typed value of a known key (its default when the file does not
    set it) or the plain string of an admin's own key found in the file; unknown keys raise
    KeyError.  Lists are returned as fresh ``list`` objects.  ``DB_TYPE`` is normalised to
    ``"sqlite"`` or ``"Pg"``.  Build one with :meth:`from_text` or :func:`load_config`;
    ``Config()`` holds only the defaults.
    """

    __slots__ = ("_path", "_values", "_origins")

    def __init__(self, values: Mapping[str, Any] | None = None, origins: Mapping[str, str] | None = None,
                 path: str | None = None):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_values", dict(values or {}))
        object.__setattr__(self, "_origins", dict(origins or {}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Config is immutable: use with_overrides()")

    def __reduce__(self) -> tuple:
        return (Config, (self._values, self._origins, self._path))

    @classmethod
    def from_text(cls, text: str, filename: str = "oar.conf",
                  environ: Mapping[str, str] | None = None) -> Config:
        """Read ``text`` (see :func:`parse_oar_conf`) and convert every key to its type now."""
        values, origins = {}, {}
        for key, (raw, line) in parse_oar_conf(text, filename, environ).items():
            origins[key] = f"{filename}:{line}"
            values[key] = _convert(key, raw, origins[key])
        return cls(values, origins, filename)

    def with_overrides(self, **values: Any) -> Config:
        """A new Config where the given keys take the given values (typed, or text to convert)."""
        new_values, origins = dict(self._values), dict(self._origins)
        for key, value in values.items():
            new_values[key] = _check_typed(key, value)
            origins[key] = "override"
        return Config(new_values, origins, self._path)

    @property
    def path(self) -> str | None:
        """The file this configuration was read from (None for bare defaults)."""
        return self._path

    def __getitem__(self, key: str) -> Any:
        if key in self._values:
            value = self._values[key]
        elif key in KEYS:
            value = KEYS[key][1]
        else:
            raise KeyError(key)
        return list(value) if isinstance(value, tuple) else value

    def get(self, key: str, default: Any = None) -> Any:
        """``config[key]`` for a known key or a key set in the file, else ``default``."""
        return self[key] if key in self else default

    def __contains__(self, key: object) -> bool:
        return key in self._values or key in KEYS

    def __iter__(self) -> Iterator[str]:
        yield from KEYS
        yield from (k for k in self._values if k not in KEYS)

    def __len__(self) -> int:
        return len(KEYS) + sum(1 for k in self._values if k not in KEYS)

    def __repr__(self) -> str:
        return f"<Config {self._path!r}: {len(self._values)} keys set>"

    def is_set(self, key: str) -> bool:
        """True when the file (or an override) sets ``key``."""
        return key in self._values

    def source(self, key: str) -> str:
        """Where the value of ``key`` comes from: ``"file:line"``, ``"override"`` or ``"default"``."""
        if key in self._origins:
            return self._origins[key]
        if key in KEYS:
            return "default"
        raise KeyError(key)

    def database_url(self, read_only: bool = False) -> str:
        """The database URL: ``sqlite:///<absolute DB_BASE_FILE>`` or
        ``postgresql://LOGIN:PASSWD@HOST:PORT/NAME`` (the ``_RO`` account when ``read_only``;
        SQLite has no accounts, so its URL is the same).  A relative DB_BASE_FILE is taken
        from the current directory."""
        if self["DB_TYPE"] == "sqlite":
            if not self["DB_BASE_FILE"]:
                raise ConfigError(f"{self.source('DB_BASE_FILE')}: DB_BASE_FILE is empty")
            return "sqlite:///" + os.path.abspath(self["DB_BASE_FILE"])
        suffix = "_RO" if read_only else ""
        login = quote(self[f"DB_BASE_LOGIN{suffix}"], safe="")
        password = quote(self[f"DB_BASE_PASSWD{suffix}"], safe="")
        host = self["DB_HOSTNAME"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        name = quote(self["DB_BASE_NAME"], safe="")
        return f"postgresql://{login}:{password}@{host}:{self['DB_PORT']}/{name}"


def load_config(path: str = DEFAULT_CONF_PATH, environ: Mapping[str, str] | None = None) -> Config:
    """Read and type the oar.conf at ``path``; ConfigError names the file and the OS reason."""
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from None
    return Config.from_text(text, path, environ)
