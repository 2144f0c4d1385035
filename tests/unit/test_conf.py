"""Tests of oar_appliance.conf: the bash-subset reader (checked against bash itself) and the
typed configuration."""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.conf import DEFAULT_CONF_PATH, KEYS, Config, load_config, parse_oar_conf
from oar_appliance.errors import ConfigError

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

#: what the test environment gives both bash and the reader
ENVIRON = {"ENVV": "from env", "ENV2": "two  words*", "HOME": "/home/tester"}
#: variables bash itself puts in the environment of `env`
BASH_OWN = {"PWD", "SHLVL", "_", "OLDPWD"}


def run_bash(tmp_path, text: str, environ=ENVIRON) -> tuple[dict[str, str], str, str]:
    """Source ``text`` the way OAR's scripts do; return (environment, stdout, stderr)."""
    conf = tmp_path / "oar.conf"
    conf.write_text(text, encoding="utf-8")
    out = tmp_path / "sourced.out"
    env_args = [f"{k}={v}" for k, v in environ.items()]
    proc = subprocess.run(
        ["env", "-i", *env_args, BASH, "-c", 'set -a; . "$1" >"$2"; env -0', "bash", str(conf), str(out)],
        capture_output=True,
        timeout=10,
        cwd=tmp_path,
    )
    env = {}
    for item in proc.stdout.decode("utf-8").split("\0"):
        if item:
            key, _, value = item.partition("=")
            env[key] = value
    return env, out.read_text(encoding="utf-8"), proc.stderr.decode("utf-8", "replace")


def values_of(text: str, environ=ENVIRON) -> dict[str, str]:
    return {key: value for key, (value, _line) in parse_oar_conf(text, environ=environ).items()}


# --------------------------------------------------------------------------------------------
# The reader against bash, on generated files
# --------------------------------------------------------------------------------------------

NAMES = ["A", "B_1", "_c", "Long_NAME9", "D", "ENVV"]
REFS = NAMES + ["ENV2", "HOME", "UNSET_V"]
# no upper case letters in the literal text: a "$A" followed by text can then never form
# the name of a variable bash manages itself (PATH, BASH_...), which the reader refuses
UNQUOTED = "abcxyz0129/.,:-_+%@=^*?![]é"
IN_QUOTES = "abc xyz09\t\n/.,:;-_+%@=^*?![]{}()<>|&#~'é"
IN_SINGLE = IN_QUOTES.replace("'", "") + '"\\$`'

refs = st.sampled_from(REFS)
var_ref = st.one_of(refs.map(lambda n: f"${n}"), refs.map(lambda n: f"${{{n}}}"))

unquoted_part = st.one_of(
    st.text(UNQUOTED, min_size=1, max_size=6),
    st.sampled_from(" \"'$#;&|<>(){}~\\`\t=x").map(lambda c: "\\" + c),  # escaped character
    st.just("x\\\ny"),  # line continuation inside a word
    st.just("x~y"),  # a tilde bash leaves alone
    st.sampled_from(["$/", "$.", "a$,"]),  # a dollar followed by nothing special
    var_ref,
)
single_quoted = st.text(IN_SINGLE, max_size=8).map(lambda s: f"'{s}'")
double_item = st.one_of(
    st.text(IN_QUOTES, min_size=1, max_size=6),
    st.sampled_from(['\\"', "\\\\", "\\$", "\\`", "\\\n", "\\a", "\\n", "\\'", "\\ ", "\\#"]),
    st.sampled_from(["$/", "$ ", "$.", "$'"]),
    var_ref,
)
double_quoted = st.tuples(st.lists(double_item, max_size=4), st.booleans()).map(
    lambda t: '"' + "".join(t[0]) + ("$" if t[1] else "") + '"'
)
value = st.lists(st.one_of(unquoted_part, single_quoted, double_quoted), max_size=4).map("".join)
assignment = st.tuples(st.sampled_from(NAMES), value).map(lambda t: f"{t[0]}={t[1]}")
assignments = st.lists(assignment, min_size=1, max_size=3).map(" ".join)
comment = st.text(IN_QUOTES.replace("\n", "") + "\"'\\$`", max_size=12).map(lambda s: "#" + s)
statement = st.tuples(
    st.sampled_from(["", " ", "\t"]),
    st.one_of(
        assignments,
        assignments.map(lambda s: "export " + s),
        st.sampled_from(NAMES).map(lambda n: "export " + n),
        comment,
        st.just(""),
    ),
    st.one_of(st.just(""), comment.map(lambda c: " " + c)),
).map("".join)
conf_file = st.lists(statement, max_size=8).map(lambda lines: "\n".join(lines) + "\n")


@needs_bash
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=conf_file)
def test_reader_agrees_with_bash(tmp_path, text):
    env, stdout, stderr = run_bash(tmp_path, text)
    assert stderr == "" and stdout == "", f"bash did more than assign: {stderr or stdout}"
    got = values_of(text)
    for key, value in got.items():
        assert env.get(key) == value, f"{key}: reader {value!r}, bash {env.get(key)!r}\n{text}"
    missing = set(env) - set(got) - BASH_OWN - set(ENVIRON)
    assert not missing, f"bash assigned {missing} that the reader did not see\n{text}"


# arbitrary text from bash's syntax characters: the reader refuses most of it, and whatever
# it accepts must be read by bash the same way, with nothing printed
FUZZ_TOKENS = [
    "A", "B", "_", "x", "1", "=", "A=", "B=", "C=", "A\\=", "export ", "$", "$A", "${A}", "$ENVV",
    " ", "\t", "\n", "\n", "\\\n", "\\", "\\\\", "'", '"', "#", "~", ":", "{", "}", "-", "+",
    "[", "]", "*", "?", "!", "@", "%", ",", "/", "é", "$'", '$"', ";", "(", "`",
]


@needs_bash
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(FUZZ_TOKENS), max_size=25))
def test_whatever_the_reader_accepts_bash_reads_the_same(tmp_path, parts):
    text = "".join(parts)
    try:
        got = values_of(text)
    except ConfigError:
        return
    env, stdout, stderr = run_bash(tmp_path, text)
    assert stderr == "" and stdout == "", f"bash did more than assign: {stderr or stdout}"
    assert {key: env.get(key) for key in got} == got, text
    assert not set(env) - set(got) - BASH_OWN - set(ENVIRON), text


@needs_bash
def test_reader_agrees_with_bash_on_the_spec_examples(tmp_path):
    text = """# Database
DB_TYPE=Pg
DB_HOSTNAME=localhost
DB_BASE_NAME=oar
DB_BASE_LOGIN=oar
DB_BASE_PASSWD=oar   # a comment
export DB_BASE_LOGIN_RO=oar_ro DB_BASE_PASSWD_RO='o"ar#r;o'
SERVER_HOSTNAME=localhost
SERVER_PORT=6666
OARSUB_DEFAULT_RESOURCES="/resource_id=1"
OARSUB_FORCE_JOB_KEY="no"
DETACH_JOB_FROM_SERVER=1
PINGCHECKER_TAKTUK_ARG_COMMAND="-t 3 broadcast exec [ true ]"
LOG_LEVEL=2
ALLOWED_NETWORKS="127.0.0.1/32 0.0.0.0/0"
SCHEDULER_RESOURCE_ORDER="switch ASC, network_address DESC, resource_id ASC"
SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE="default licence vlan"
JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD=cpuset
OAR_DIR=/usr/lib/oar
OARMONITOR_SENSOR_FILE="$OAR_DIR/oarmonitor_sensor.pl"
OARSH_OPENSSH_DEFAULT_OPTIONS="-oProxyCommand=none -oPermitLocalCommand=no"
MULTI='line one
line two'
"""
    env, stdout, stderr = run_bash(tmp_path, text)
    assert (stdout, stderr) == ("", "")
    got = values_of(text)
    assert len(got) == 22
    assert all(env[key] == value for key, value in got.items())
    assert got["OARMONITOR_SENSOR_FILE"] == "/usr/lib/oar/oarmonitor_sensor.pl"


# --------------------------------------------------------------------------------------------
# The reader on chosen cases
# --------------------------------------------------------------------------------------------


def test_line_numbers_are_those_of_each_assignment():
    text = "# c\n\nA=1\nB='x\ny'\nC=\"p\\\nq\" D=2\nexport E=3\nA=4\n"
    assert parse_oar_conf(text) == {
        "A": ("4", 9),
        "B": ("x\ny", 4),
        "C": ("pq", 6),
        "D": ("2", 7),
        "E": ("3", 8),
    }


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A=", {"A": ""}),
        ('A=""', {"A": ""}),
        ("A=''", {"A": ""}),
        ("A=x#y", {"A": "x#y"}),
        ("A=x #y", {"A": "x"}),
        ("A=\"x\"'y'z$B", {"A": "xyz"}),
        ("B=b A=\"x\"'y'z$B", {"B": "b", "A": "xyzb"}),
        ("A=1 B=$A", {"A": "1", "B": "1"}),  # plain assignments: left to right
        ("export A=1 B=$A", {"A": "1", "B": ""}),  # export: all expanded first
        ("A=\\\\ B=\\$A", {"A": "\\", "B": "$A"}),
        ('A="a\\b\\"c\\$d"', {"A": 'a\\b"c$d'}),
        ("A=${ENVV}x B=$ENVVx", {"A": "from envx", "B": ""}),
        ("ENVV=mine A=$ENVV", {"ENVV": "mine", "A": "mine"}),
        ("A=*  B=x:y~", {"A": "*", "B": "x:y~"}),
        ('A=b=~ B="x:"~ C=x:""~ D=\\~', {"A": "b=~", "B": "x:~", "C": "x:~", "D": "~"}),
        ("A\\\nB=5", {"AB": "5"}),
        ("A=x\\", {"A": "x\\"}),
        ('A="$" B=$', {"A": "$", "B": "$"}),
        ("export A", {}),
        ("A=é", {"A": "é"}),
    ],
)
def test_reader_cases(text, expected):
    assert values_of(text) == expected


def test_environ_is_the_only_source_of_outside_values(monkeypatch):
    monkeypatch.setenv("FROM_OS", "leaked")
    assert values_of("A=$FROM_OS", environ=None) == {"A": ""}
    assert values_of("A=$FROM_OS", environ={"FROM_OS": "given"}) == {"A": "given"}


# (text, line of the error, words the message must contain, what a naive reader would
#  return: bash must print something or disagree with it; None: no bash check)
REJECTED = [
    ("A=$(echo hi)", 1, "command substitution", {"A": "$(echo hi)"}),
    ('A="$(echo hi)"', 1, "command substitution", {"A": "$(echo hi)"}),
    ("A=`echo hi`", 1, "backticks", {"A": "`echo hi`"}),
    ('A="x`echo hi`"', 1, "backticks", {"A": "x`echo hi`"}),
    ("A=$((1+2))", 1, "arithmetic", {"A": "$((1+2))"}),
    ("A=$[1+2]", 1, "arithmetic", {"A": "$[1+2]"}),
    ("A=${ENVV:-x}", 1, "parameter expansion", {"A": "${ENVV:-x}"}),
    ("B=1\nA=${#B}", 2, "parameter expansion", {"A": "${#B}"}),
    ("A=${ENVV[0]}", 1, "parameter expansion", {"A": "${ENVV[0]}"}),
    ("A=${!ENVV}", 1, "parameter expansion", {"A": "${!ENVV}"}),
    ("A=$1", 1, "special parameter", {"A": "$1"}),
    ('A="$@"', 1, "special parameter", {"A": "$@"}),
    ("A=$$", 1, "special parameter", {"A": "$$"}),
    ("A=$#", 1, "special parameter", {"A": "$#"}),
    ("A=$_", 1, "$_", {"A": "$_"}),
    ("A=$'x\\ty'", 1, "quoting", {"A": "$'x\\ty'"}),
    ('A=$"x"', 1, "quoting", {"A": '$"x"'}),
    ("A=1; B=2", 1, "';'", {"A": "1; B=2"}),
    ("A=1 && B=2", 1, "'&'", {"A": "1 && B=2"}),
    ("A=1 &", 1, "'&'", {"A": "1 &"}),
    ("A=1 | cat", 1, "'|'", {"A": "1 | cat"}),
    ("A=1 >/dev/null", 1, "'>'", {"A": "1 >/dev/null"}),
    ("A=1 </dev/null", 1, "'<'", {"A": "1 </dev/null"}),
    ("A=(1 2)", 1, "'('", {"A": "(1 2)"}),
    ("f() { A=1; }", 1, "'('", None),
    ("A=b c", 1, "would run it as a command", {"A": "b c"}),
    ("A=1 B", 1, "would run it as a command", {"A": "1 B"}),
    ("A=1 export B=2", 1, "would run it as a command", {"A": "1", "B": "2"}),
    ("source x", 1, "not an assignment", {}),
    ("echo hi", 1, "not an assignment", {}),
    ("A", 1, "not an assignment", {}),
    ("if true\nthen A=1\nfi", 1, "not an assignment", None),
    ("function f {\nA=1\n}", 1, "not an assignment", None),
    ('"A"=1', 1, "not an assignment", {"A": "1"}),
    ("1A=2", 1, "not a valid name", {"1A": "2"}),
    ("A-B=2", 1, "not a valid name", {"A-B": "2"}),
    ("export 1A=2", 1, "not a valid name", {"1A": "2"}),
    ("export", 1, "without arguments", {}),
    ("export -n A", 1, "option", None),
    ('B=1\nA="abc\nC=2\n', 2, "unterminated double quote", {"B": "1", "C": "2"}),
    ("A='abc\nB=1\n", 1, "unterminated single quote", {"B": "1"}),
    ("A=1\nA+=x", 2, "append", {"A": "x"}),
    ("A[0]=x", 1, "array", {"A[0]": "x"}),
    ("A=~", 1, "'~'", {"A": "~"}),
    ("A=/x:~/y", 1, "'~'", {"A": "/x:~/y"}),
    ("export A=~", 1, "'~'", {"A": "~"}),
    ("export J={a,b}", 1, "'{'", {"J": "{a,b}"}),
    ("A=x\r\n", 1, "carriage return", {"A": "x"}),
    ("A=x\x01y", 1, "control character", None),  # bash keeps it: refused as a likely mistake
    ("A=$PATH", 1, "set by bash", {"A": ""}),
    ("A=$RANDOM", 1, "set by bash", {"A": ""}),
    ("A=${BASH_VERSION}", 1, "set by bash", {"A": ""}),
    ("PATH=/x", 1, "bash sets or manages", None),
    ("IFS=x", 1, "bash sets or manages", None),
]


@pytest.mark.parametrize("text, line, words, naive", REJECTED, ids=[r[0][:24] for r in REJECTED])
def test_rejected_constructs(text, line, words, naive):
    with pytest.raises(ConfigError) as caught:
        parse_oar_conf(text)
    message = str(caught.value)
    assert message.startswith(f"oar.conf:{line}: "), message
    assert words in message


@needs_bash
@pytest.mark.parametrize(
    "text, naive", [(r[0], r[3]) for r in REJECTED if r[3] is not None], ids=lambda v: repr(v)[:24]
)
def test_bash_does_not_simply_assign_rejected_constructs(tmp_path, text, naive):
    env, stdout, stderr = run_bash(tmp_path, text)
    differs = any(env.get(key) != value for key, value in naive.items())
    assert stdout or stderr or differs, f"bash assigned {naive} like a naive reader would"


def test_filename_appears_in_messages():
    with pytest.raises(ConfigError, match=r"^/etc/oar/oar\.conf:3: "):
        parse_oar_conf("A=1\n\nB=`x`\n", "/etc/oar/oar.conf")


# --------------------------------------------------------------------------------------------
# Typed configuration
# --------------------------------------------------------------------------------------------

SPEC_DEFAULTS = {
    "DB_TYPE": "sqlite",
    "DB_HOSTNAME": "localhost",
    "DB_BASE_NAME": "oar",
    "DB_BASE_LOGIN": "oar",
    "DB_BASE_PASSWD": "oar",
    "DB_BASE_LOGIN_RO": "oar_ro",
    "DB_BASE_PASSWD_RO": "oar_ro",
    "DB_BASE_FILE": "/var/lib/oar/oar.sqlite",
    "DB_PORT": 5432,
    "SERVER_HOSTNAME": "localhost",
    "SERVER_PORT": 6666,
    "OARSUB_DEFAULT_RESOURCES": "/resource_id=1",
    "OARSUB_FORCE_JOB_KEY": False,
    "DEPLOY_HOSTNAME": "127.0.0.1",
    "COSYSTEM_HOSTNAME": "127.0.0.1",
    "DETACH_JOB_FROM_SERVER": True,
    "OAR_RUNTIME_DIRECTORY": "/tmp/oar_runtime",
    "NODE_FILE_DB_FIELD": "network_address",
    "NODE_FILE_DB_FIELD_DISTINCT_VALUES": "resource_id",
    "PINGCHECKER_GENERIC_COMMAND": None,
    "LOG_LEVEL": 2,
    "LOG_FILE": "/var/log/oar.log",
    "OAREXEC_DEBUG_MODE": False,
    "ALLOWED_NETWORKS": ["127.0.0.1/32", "0.0.0.0/0"],
    "ACCOUNTING_WINDOW": 86400,
    "PROLOGUE_EPILOGUE_TIMEOUT": 60,
    "PROLOGUE_EXEC_FILE": None,
    "SERVER_EPILOGUE_EXEC_FILE": None,
    "FINAUD_FREQUENCY": 300,
    "DEAD_SWITCH_TIME": 0,
    "SCHEDULER_TIMEOUT": 10,
    "RESERVATION_WAITING_RESOURCES_TIMEOUT": 300,
    "SCHEDULER_JOB_SECURITY_TIME": 1,
    "SCHEDULER_GANTT_HOLE_MINIMUM_TIME": 300,
    "SCHEDULER_RESOURCE_ORDER": "resource_id ASC",
    "SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE": [],
    "SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE": [],
    "SUSPEND_RESUME_FILE": "suspend_resume_manager.pl",
    "JUST_AFTER_SUSPEND_EXEC_FILE": None,
    "SUSPEND_RESUME_SCRIPT_TIMEOUT": 60,
    "JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD": "cpuset",
    "JOB_RESOURCE_MANAGER_FILE": "cpuset_manager.pl",
    "SCHEDULER_NODE_MANAGER_WAKE_UP_CMD": None,
    "SCHEDULER_NODE_MANAGER_IDLE_TIME": 600,
    "SCHEDULER_NODE_MANAGER_SLEEP_TIME": 600,
    "OPENSSH_CMD": "ssh",
    "DESKTOP_COMPUTING_EXPIRY": 10,
    "STAGEIN_CACHE_EXPIRY": 144,
    "OARSH_OARSTAT_CMD": None,
    "OARSH_OPENSSH_DEFAULT_OPTIONS": "-oProxyCommand=none -oPermitLocalCommand=no",
    "OARMONITOR_SENSOR_FILE": "/etc/oar/oarmonitor_sensor.pl",
    "HIERARCHY_LABELS": ["resource_id", "network_address", "cpu", "core"],
    "OARSUB_NODES_RESOURCES": "network_address",
    "DEFAULT_JOB_WALLTIME": 7200,
    "WALLTIME_CHANGE_ENABLED": False,
    "USERS_ALLOWED_HOLD_RESUME": False,
    "JOBDEL_SOFTWALLTIME": 20,
    "JOBDEL_WALLTIME": 300,
}
SPEC_KEYS = """DB_TYPE DB_HOSTNAME DB_BASE_NAME DB_BASE_LOGIN DB_BASE_PASSWD DB_BASE_LOGIN_RO
DB_BASE_PASSWD_RO SERVER_HOSTNAME SERVER_PORT OARSUB_DEFAULT_RESOURCES OARSUB_FORCE_JOB_KEY
DEPLOY_HOSTNAME COSYSTEM_HOSTNAME DETACH_JOB_FROM_SERVER OAR_RUNTIME_DIRECTORY NODE_FILE_DB_FIELD
NODE_FILE_DB_FIELD_DISTINCT_VALUES PINGCHECKER_TAKTUK_ARG_COMMAND PINGCHECKER_SENTINELLE_SCRIPT_COMMAND
PINGCHECKER_FPING_COMMAND PINGCHECKER_NMAP_COMMAND PINGCHECKER_GENERIC_COMMAND LOG_LEVEL LOG_FILE
OAREXEC_DEBUG_MODE ALLOWED_NETWORKS ACCOUNTING_WINDOW MAIL_SMTP_SERVER MAIL_RECIPIENT MAIL_SENDER
PROLOGUE_EPILOGUE_TIMEOUT PROLOGUE_EXEC_FILE EPILOGUE_EXEC_FILE SERVER_PROLOGUE_EPILOGUE_TIMEOUT
SERVER_PROLOGUE_EXEC_FILE SERVER_EPILOGUE_EXEC_FILE FINAUD_FREQUENCY DEAD_SWITCH_TIME SCHEDULER_TIMEOUT
RESERVATION_WAITING_RESOURCES_TIMEOUT SCHEDULER_JOB_SECURITY_TIME SCHEDULER_GANTT_HOLE_MINIMUM_TIME
SCHEDULER_RESOURCE_ORDER SCHEDULER_RESOURCES_ALWAYS_ASSIGNED_TYPE SCHEDULER_AVAILABLE_SUSPENDED_RESOURCE_TYPE
SUSPEND_RESUME_FILE JUST_AFTER_SUSPEND_EXEC_FILE JUST_BEFORE_RESUME_EXEC_FILE SUSPEND_RESUME_SCRIPT_TIMEOUT
JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD JOB_RESOURCE_MANAGER_FILE TAKTUK_CMD
SCHEDULER_NODE_MANAGER_WAKE_UP_CMD SCHEDULER_NODE_MANAGER_SLEEP_CMD SCHEDULER_NODE_MANAGER_IDLE_TIME
SCHEDULER_NODE_MANAGER_SLEEP_TIME OPENSSH_CMD DESKTOP_COMPUTING_ALLOW_CREATE_NODE DESKTOP_COMPUTING_EXPIRY
STAGEOUT_DIR STAGEIN_DIR STAGEIN_CACHE_EXPIRY OARSH_OARSTAT_CMD OARSH_OPENSSH_DEFAULT_OPTIONS
OARMONITOR_SENSOR_FILE""".split()


def test_every_spec_key_is_known():
    assert set(SPEC_KEYS) - set(KEYS) == set()


@pytest.mark.parametrize("key, default", SPEC_DEFAULTS.items())
def test_defaults(key, default):
    config = Config.from_text("")
    assert config[key] == default
    assert type(config[key]) is type(default)
    assert config.source(key) == "default"
    assert key in config and not config.is_set(key)


def test_conversions_and_sources():
    config = Config.from_text(
        "SERVER_PORT=7000\nLOG_LEVEL=-1\nOARSUB_FORCE_JOB_KEY=YES\nDETACH_JOB_FROM_SERVER=off\n"
        "HIERARCHY_LABELS='resource_id, host  cpu'\nALLOWED_NETWORKS=\nPROLOGUE_EXEC_FILE=\n"
        "TAKTUK_CMD='/usr/bin/taktuk -s'\nDB_TYPE=PostgreSQL\n",
        filename="/etc/oar/oar.conf",
    )
    assert config["SERVER_PORT"] == 7000 and config["LOG_LEVEL"] == -1
    assert config["OARSUB_FORCE_JOB_KEY"] is True and config["DETACH_JOB_FROM_SERVER"] is False
    assert config["HIERARCHY_LABELS"] == ["resource_id", "host", "cpu"]
    assert config["ALLOWED_NETWORKS"] == []
    assert config["PROLOGUE_EXEC_FILE"] is None
    assert config["TAKTUK_CMD"] == "/usr/bin/taktuk -s"
    assert config["DB_TYPE"] == "Pg"
    assert config.source("SERVER_PORT") == "/etc/oar/oar.conf:1"
    assert config.source("DB_TYPE") == "/etc/oar/oar.conf:9"
    assert config.path == "/etc/oar/oar.conf"


@pytest.mark.parametrize("word, expected", [
    ("yes", True), ("No", False), ("TRUE", True), ("false", False),
    ("1", True), ("0", False), ("On", True), ("off", False),
])
def test_booleans(word, expected):
    assert Config.from_text(f"OAREXEC_DEBUG_MODE={word}")["OAREXEC_DEBUG_MODE"] is expected


def test_lists_are_copies():
    config = Config.from_text("ALLOWED_NETWORKS='10.0.0.0/8 192.168.0.0/16'")
    config["ALLOWED_NETWORKS"].append("0.0.0.0/0")
    assert config["ALLOWED_NETWORKS"] == ["10.0.0.0/8", "192.168.0.0/16"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("A=1\n\nSERVER_PORT=abc", "oar.conf:3: SERVER_PORT must be an integer, got 'abc'"),
        ("SCHEDULER_TIMEOUT=1.5", "oar.conf:1: SCHEDULER_TIMEOUT must be an integer, got '1.5'"),
        ("SCHEDULER_TIMEOUT=' 5'", "oar.conf:1: SCHEDULER_TIMEOUT must be an integer, got ' 5'"),
        ("SCHEDULER_TIMEOUT=1_000", "oar.conf:1: SCHEDULER_TIMEOUT must be an integer, got '1_000'"),
        ("DB_PORT=", "oar.conf:1: DB_PORT must be an integer, got ''"),
        ("DB_PORT=70000", "oar.conf:1: DB_PORT must be a port number (1-65535), got '70000'"),
        ("OARSUB_FORCE_JOB_KEY=maybe", "oar.conf:1: OARSUB_FORCE_JOB_KEY must be yes/no"),
        ("DB_TYPE=mysql", "oar.conf:1: DB_TYPE=mysql: MySQL is not supported"),
        ("DB_TYPE=MySQL", "oar.conf:1: DB_TYPE=MySQL: MySQL is not supported"),
        ("DB_TYPE=oracle", "oar.conf:1: DB_TYPE must be sqlite or Pg"),
    ],
)
def test_bad_values_are_refused_at_load_time(text, message):
    with pytest.raises(ConfigError) as caught:
        Config.from_text(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize("word", ["sqlite", "SQLite", "Pg", "pg", "postgresql", "PG"])
def test_accepted_database_types(word):
    assert Config.from_text(f"DB_TYPE={word}")["DB_TYPE"] in ("sqlite", "Pg")


def test_unknown_keys_are_kept_as_strings():
    config = Config.from_text("MY_SITE_KEY=42\nOTHER='a b'")
    assert config["MY_SITE_KEY"] == "42" and config["OTHER"] == "a b"
    assert config.source("MY_SITE_KEY") == "oar.conf:1"
    assert "MY_SITE_KEY" in config and "NOT_THERE" not in config
    assert config.get("NOT_THERE", "dflt") == "dflt" and config.get("OTHER") == "a b"
    assert set(config) >= {"MY_SITE_KEY", "OTHER", "SERVER_PORT"}
    assert len(config) == len(KEYS) + 2
    with pytest.raises(KeyError):
        config["NOT_THERE"]
    with pytest.raises(KeyError):
        config.source("NOT_THERE")


def test_config_is_immutable_and_overrides_make_a_new_one():
    config = Config.from_text("SERVER_PORT=7000")
    with pytest.raises(AttributeError):
        config.path = "/x"
    with pytest.raises(TypeError):
        config["SERVER_PORT"] = 1
    assert pickle.loads(pickle.dumps(config)) == config == copy.deepcopy(config)
    assert pickle.loads(pickle.dumps(config)).source("SERVER_PORT") == "oar.conf:1"
    changed = config.with_overrides(SERVER_PORT="7001", LOG_LEVEL=3, HIERARCHY_LABELS=["a", "b"],
                                    TAKTUK_CMD=None, WALLTIME_CHANGE_ENABLED=True, SITE="x")
    assert config["SERVER_PORT"] == 7000 and changed["SERVER_PORT"] == 7001
    assert changed["LOG_LEVEL"] == 3 and changed["HIERARCHY_LABELS"] == ["a", "b"]
    assert changed["WALLTIME_CHANGE_ENABLED"] is True and changed["SITE"] == "x"
    assert changed.source("SERVER_PORT") == "override" and changed.path == config.path
    for bad in ({"SERVER_PORT": "x"}, {"SERVER_PORT": True}, {"LOG_LEVEL": "2.0"},
                {"WALLTIME_CHANGE_ENABLED": 1}, {"DB_TYPE": "mysql"}, {"HIERARCHY_LABELS": [1]}):
        with pytest.raises(ConfigError):
            config.with_overrides(**bad)


def test_sqlite_database_url(tmp_path, monkeypatch):
    assert Config.from_text("").database_url() == "sqlite:////var/lib/oar/oar.sqlite"
    monkeypatch.chdir(tmp_path)
    config = Config.from_text("DB_BASE_FILE=db/oar.sqlite")
    assert config.database_url() == f"sqlite:///{tmp_path}/db/oar.sqlite"
    assert config.database_url(read_only=True) == config.database_url()


def test_postgresql_database_url():
    config = Config.from_text(
        "DB_TYPE=Pg\nDB_HOSTNAME=db.example\nDB_PORT=5433\nDB_BASE_NAME=oar\n"
        "DB_BASE_LOGIN=oar\nDB_BASE_PASSWD='p@ss:w/rd%'\nDB_BASE_LOGIN_RO=reader\n"
    )
    assert config.database_url() == "postgresql://oar:p%40ss%3Aw%2Frd%25@db.example:5433/oar"
    assert config.database_url(read_only=True) == "postgresql://reader:oar_ro@db.example:5433/oar"
    ipv6 = config.with_overrides(DB_HOSTNAME="::1")
    assert ipv6.database_url().startswith("postgresql://oar:p%40ss%3Aw%2Frd%25@[::1]:5433/")


def test_load_config(tmp_path):
    path = tmp_path / "oar.conf"
    path.write_text("SERVER_PORT=6667\nDB_BASE_FILE=$ROOT/oar.sqlite\n")
    config = load_config(str(path), environ={"ROOT": "/srv"})
    assert config.path == str(path) and config["SERVER_PORT"] == 6667
    assert config["DB_BASE_FILE"] == "/srv/oar.sqlite"
    assert config.source("SERVER_PORT") == f"{path}:1"
    path.write_text("SERVER_PORT=x\n")
    with pytest.raises(ConfigError, match=f"^{path}:1: SERVER_PORT must be an integer"):
        load_config(str(path))


def test_load_config_missing_or_unreadable(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as caught:
        load_config(str(missing))
    assert str(missing) in str(caught.value) and "No such file or directory" in str(caught.value)
    with pytest.raises(ConfigError, match="Is a directory"):
        load_config(str(tmp_path))
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(binary))
    assert DEFAULT_CONF_PATH == "/etc/oar/oar.conf"
    assert os.path.isabs(DEFAULT_CONF_PATH)
