"""Tests of the ``oarsub -l`` request grammar (oar_appliance.lang.request)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oar_appliance.errors import ConfigError, DatabaseError, ExpressionError, UsageError
from oar_appliance.lang.request import (
    COUNT_CODES,
    MAX_COUNT,
    MAX_DURATION,
    Level,
    MoldableRequest,
    RequestError,
    ResourceGroup,
    format_duration,
    from_storage,
    parse_duration,
    parse_request,
    parse_requests,
    request_to_text,
    storage_rows,
)

LABELS = ["resource_id", "network_address", "cpu", "core", "switch"]
SPEC_LABELS = LABELS + ["prop1", "prop2", "prop3", "prop4", "prop5"]
WIDE_LABELS = LABELS + ["gpu", "licence", "host"]


def group(*levels, constraint=None):
    return ResourceGroup(levels=tuple(Level(label, count) for label, count in levels), constraint=constraint)


def req(*groups, walltime=None):
    return MoldableRequest(groups=tuple(groups), walltime=walltime)


# ----------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    "text, expected",
    [
        ("/node=4", req(group(("network_address", 4)))),
        ("/nodes=4", req(group(("network_address", 4)))),
        ("/node=10/cpu=3,walltime=2:15:00", req(group(("network_address", 10), ("cpu", 3)), walltime=8100)),
        ("/node=12/cpu=2", req(group(("network_address", 12), ("cpu", 2)))),
        ("nodes=4/cpu=1,walltime=2:00:00", req(group(("network_address", 4), ("cpu", 1)), walltime=7200)),
        ("/nodes=2/cpu=1/core=2", req(group(("network_address", 2), ("cpu", 1), ("core", 2)))),
        ("core=ALL", req(group(("core", "ALL")))),
        ("nodes=BEST", req(group(("network_address", "BEST")))),
        ("/cpu=half_best", req(group(("cpu", "HALF_BEST")))),
        ("switch=Best", req(group(("switch", "BEST")))),
        ("/resource_id=1", req(group(("resource_id", 1)))),
        ("network_address=007", req(group(("network_address", 7)))),
        (f"core={MAX_COUNT}", req(group(("core", MAX_COUNT)))),
        (
            "{gpu_model IN ('A100','H100')}/nodes=2",
            req(group(("network_address", 2), constraint="gpu_model IN ('A100','H100')")),
        ),
        ("{host LIKE 'n+1/%'}/core=2", req(group(("core", 2), constraint="host LIKE 'n+1/%'"))),
        ("{x = 'a,b+c/d}' OR y = \"}{\"}core=1", req(group(("core", 1), constraint="x = 'a,b+c/d}' OR y = \"}{\""))),
        ("{name = 'it''s}'}/cpu=1", req(group(("cpu", 1), constraint="name = 'it''s}'"))),
        ("{cluster='a'}/nodes=2+{cluster='b'}/core=4", req(
            group(("network_address", 2), constraint="cluster='a'"), group(("core", 4), constraint="cluster='b'"))),
        ("nodes=1+core=2+resource_id=3", req(
            group(("network_address", 1)), group(("core", 2)), group(("resource_id", 3)))),
        ("walltime=2", req(walltime=7200)),
        ("walltime=1:30", req(walltime=5400)),
        ("walltime=0:0:1", req(walltime=1)),
        ("walltime=0:90", req(walltime=5400)),
        (",walltime=2", req(walltime=7200)),
        ("WALLTIME=1", req(walltime=3600)),
        ("", req()),
        ("   ", req()),
        # whitespace around every separator
        ("walltime = 60", req(walltime=60 * 3600)),
        ("nodes = 2 / cpu = 1", req(group(("network_address", 2), ("cpu", 1)))),
        (" / nodes = 2 / cpu = 1 , walltime = 1:30 ", req(group(("network_address", 2), ("cpu", 1)), walltime=5400)),
        ("\t{ cluster = 'a' } / core = 1 + { cluster='b' } core=2\n", req(
            group(("core", 1), constraint="cluster = 'a'"), group(("core", 2), constraint="cluster='b'"))),
    ],
)
def test_examples(text, expected):
    assert parse_request(text, LABELS) == expected


def test_spec_long_form():
    # The spec's template, with real WHERE clauses in place of sql1 and sql2.
    text = "{ cluster='a' }/prop1=1/prop2=3+{mem >= 64}/prop3=2/prop4=1/prop5=1,walltime=1:00:00"
    assert parse_request(text, SPEC_LABELS) == req(
        group(("prop1", 1), ("prop2", 3), constraint="cluster='a'"),
        group(("prop3", 2), ("prop4", 1), ("prop5", 1), constraint="mem >= 64"),
        walltime=3600,
    )
    # The template itself: 'sql1' alone is not an expression, and the message names the group.
    with pytest.raises(ExpressionError, match=r"in the \{\.\.\.\} of group 1 \(column 1\)"):
        parse_request("{ sql1 }/prop1=1/prop2=3+{sql2}/prop3=2/prop4=1/prop5=1,walltime=1:00:00", SPEC_LABELS)


def test_node_aliases():
    assert parse_request("nodes=2", LABELS, nodes_label="switch") == req(group(("switch", 2)))
    # a label named like an alias is the label, not the alias
    assert parse_request("node=2", LABELS + ["node"]) == req(group(("node", 2)))
    # host is an alias of nothing: a label when it is one, else unknown
    assert parse_request("host=2", WIDE_LABELS) == req(group(("host", 2)))
    with pytest.raises(RequestError, match="unknown resource label 'host'"):
        parse_request("host=2", LABELS)
    with pytest.raises(RequestError, match="'nodes' stands for 'network_address', which is not a resource label"):
        parse_request("nodes=2", ["resource_id", "core"])


def test_error_class_and_prefix():
    with pytest.raises(RequestError) as info:
        parse_request("nodes=2/cpu=x", LABELS)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert str(info.value) == (
        "in -l \"nodes=2/cpu=x\": count of 'cpu' must be a positive integer, ALL, BEST or HALF_BEST, got 'x'"
    )
    with pytest.raises(RequestError) as info:
        parse_request("/gpux=1", LABELS)
    assert str(info.value).endswith(
        "unknown resource label 'gpux' (valid: resource_id, network_address, cpu, core, switch)"
    )


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, hint",
    [
        ("gpux=1", "unknown resource label 'gpux' (valid: resource_id, network_address, cpu, core, switch)"),
        ("/nodes=2/Cpu=1", "unknown resource label 'Cpu'"),
        ("cpu=0", "count of 'cpu' must be a positive integer, ALL, BEST or HALF_BEST, got '0'"),
        ("cpu=-1", "got '-1'"),
        ("nodes=2/cpu=x", "count of 'cpu' must be a positive integer"),
        ("nodes=1.5", "count of 'nodes' must be a positive integer, ALL, BEST or HALF_BEST, got '1.5'"),
        ("core=٣", "got '٣'"),
        ("core=ALLL", "got 'ALLL'"),
        (f"core={MAX_COUNT + 1}", "count of 'core' is too large"),
        ("core=" + "9" * 5000, "is too large"),
        ("nodes=ALL/cpu=1", "ALL, BEST and HALF_BEST are allowed only in a group with a single level"),
        ("nodes=2/core=BEST", "allowed only in a group with a single level, got 'nodes=2/core=BEST'"),
        ("{x=1", "unbalanced '{' at column 1"),
        ("nodes=2+{x=1/core=1", "unbalanced '{' at column 9"),
        ("core=1}", "unbalanced '}' at column 7"),
        ("{a{b}}/core=1", "nested '{' at column 3"),
        ("{x='a}/cpu=1", "unterminated quote (') at column 4"),
        ('{x="a}/cpu=1', 'unterminated quote (") at column 4'),
        ("nodes=2+", "empty group after '+' at column 8"),
        ("+nodes=2", "empty group before '+' at column 1"),
        ("nodes=2++core=1", "empty group before '+' at column 9"),
        ("//cpu=1", "empty level: '//' at column 1"),
        ("nodes=1//cpu=1", "empty level: '//'"),
        ("nodes=1/", "empty level after '/' at column 8"),
        ("nodes", "missing '=' after 'nodes'"),
        ("nodes 2", "missing '=' after 'nodes' at column 6; expected label=count, got '2'"),
        ("nodes=", "missing count after 'nodes='"),
        ("=2", "missing label before '=' at column 1"),
        ("nodes=2=3", "unexpected '=' at column 8 after 'nodes=2'"),
        ("nodes=2 cpu=1", "unexpected 'cpu' at column 9"),
        ("nodes=2/network_address=1", "label 'network_address' appears twice"),
        ("cpu=1/core=1/cpu=2", "label 'cpu' appears twice in group 1"),
        ("{x=1}", "has no level"),
        ("{x=1}{y=2}/core=1", "'{...}' at column 6 must come first in its group"),
        ("core=1/{x=1}", "must come first in its group"),
        ("nodes=2,walltime=1,walltime=2", "walltime given twice"),
        ("walltime=1,walltime=2", "walltime given twice"),
        ("walltime=1,nodes=2", "walltime must come last"),
        ("walltime=1+nodes=2", "unexpected '+' at column 11 after the walltime"),
        ("nodes=2/walltime=1", "walltime is not a resource: it must come last, after a ','"),
        ("nodes=2,nodes=3", "only walltime=<duration> may follow ',' (column 8), got 'nodes=3'"),
        ("nodes=2,", "nothing after ',' at column 8; expected walltime=<duration>"),
        ("nodes=2,walltime=", "missing duration after 'walltime='"),
        ("nodes=2,walltime=1:xx", "invalid walltime '1:xx': 'xx' is not a non-negative integer"),
        ("walltime=-1", "invalid walltime '-1'"),
        ("walltime=1:2:3:4", "invalid walltime '1:2:3:4': too many ':' parts"),
        ("walltime=0", "walltime '0' is 0 seconds"),
        ("walltime=0:00:00", "is 0 seconds"),
        ("walltime=1::2", "empty part"),
        ("walltime=1 :30", "unexpected ':30'"),
        ("walltime=1000000", "too long (more than 100 years)"),
        ("walltime=" + "1" * 5000, "too long (more than 100 years)"),
    ],
)
def test_malformed(text, hint):
    with pytest.raises(RequestError) as info:
        parse_request(text, LABELS)
    message = str(info.value)
    assert message.startswith("in -l \""), message
    assert hint in message, message


@pytest.mark.parametrize(
    "text, hint",
    [
        ("{x ==}/cpu=1", "in the {...} of group 1 (column 1): unexpected end of expression"),
        ("core=1+{x=1; DROP TABLE jobs}/cpu=1", "in the {...} of group 2 (column 8): unexpected ';'"),
        ("{}/cpu=1", "empty expression"),
        ("{ SELECT 1 }/cpu=1", "sub-queries are not allowed"),
    ],
)
def test_bad_expression_in_braces(text, hint):
    with pytest.raises(ExpressionError) as info:
        parse_request(text, LABELS)
    assert info.value.exit_code == 5
    assert str(info.value).startswith("in -l \"") and hint in str(info.value), str(info.value)


def test_long_or_control_text_is_shown_on_one_line():
    with pytest.raises(RequestError) as info:
        parse_request("gpux=1\n" + "x" * 500, LABELS)
    message = str(info.value)
    assert "\n" not in message and "\\n" in message and len(message) < 400


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "text, seconds",
    [("2", 7200), ("1:30", 5400), ("1:30:15", 5415), ("0:0:59", 59), ("0:120", 7200), (" 3:00:00 ", 10800),
     ("00001", 3600), ("0:0:86400", 86400)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", ":", "1:", ":30", "-1", "1:-5", "1.5", "1h", "1:2:3:4", "0x10", "١", "1 :2"])
def test_parse_duration_refuses(text):
    with pytest.raises(RequestError, match=r"expected hours, hours:minutes or hours:minutes:seconds"):
        parse_duration(text)


def test_parse_duration_limits():
    with pytest.raises(RequestError, match="0 seconds"):
        parse_duration("0:0")
    assert parse_duration("0", allow_zero=True) == 0
    assert parse_duration(f"0:0:{MAX_DURATION}") == MAX_DURATION
    with pytest.raises(RequestError, match="more than 100 years"):
        parse_duration(f"0:0:{MAX_DURATION + 1}")
    with pytest.raises(RequestError, match="invalid checkpoint"):
        parse_duration("x", what="checkpoint")


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00:00"), (59, "0:00:59"), (3600, "1:00:00"), (5415, "1:30:15"), (360000, "100:00:00"),
                      (-90, "-0:01:30")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(min_value=1, max_value=MAX_DURATION))
def test_duration_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


# ----------------------------------------------------------------------------- several -l


def test_parse_requests_defaults():
    default = "/resource_id=1"
    assert parse_requests([], LABELS, "network_address", default) == [req(group(("resource_id", 1)))]
    assert parse_requests(["walltime=2", "nodes=2,walltime=1"], LABELS, "network_address", default) == [
        req(group(("resource_id", 1)), walltime=7200),
        req(group(("network_address", 2)), walltime=3600),
    ]
    assert parse_requests(["", "core=2"], LABELS, "network_address", "core=4") == [
        req(group(("core", 4))), req(group(("core", 2)))]
    # a default walltime in OARSUB_DEFAULT_RESOURCES applies only when the -l gives none
    assert parse_requests(["", "walltime=1"], LABELS, "network_address", "core=1,walltime=3") == [
        req(group(("core", 1)), walltime=3 * 3600), req(group(("core", 1)), walltime=3600)]


def test_parse_requests_errors():
    # the default is parsed only when needed
    assert parse_requests(["core=1"], LABELS, "network_address", "bad=") == [req(group(("core", 1)))]
    hint = "OARSUB_DEFAULT_RESOURCES is not a valid request: .*unknown resource label 'gpu'"
    with pytest.raises(ConfigError, match=hint):
        parse_requests([], LABELS, "network_address", "gpu=1")
    with pytest.raises(ConfigError, match="gives no resources"):
        parse_requests(["walltime=1"], LABELS, "network_address", "walltime=2")
    with pytest.raises(RequestError, match="unknown resource label 'gpux'"):
        parse_requests(["core=1", "gpux=1"], LABELS, "network_address", "/resource_id=1")


# ----------------------------------------------------------------------------- canonical text, storage


def test_request_to_text():
    request = req(group(("network_address", 2), ("core", 1), constraint="cluster='a'"), group(("resource_id", 3)),
                  walltime=5400)
    assert request_to_text(request) == "{cluster='a'}/network_address=2/core=1+/resource_id=3,walltime=1:30:00"
    assert request_to_text(req(group(("core", "ALL")))) == "/core=ALL"
    assert request_to_text(req(walltime=60)) == "walltime=0:01:00"
    assert request_to_text(req()) == ""


def test_storage_rows_and_back():
    request = req(group(("network_address", 2), ("core", 1), constraint="cluster='a'"), group(("cpu", "HALF_BEST")),
                  walltime=3600)
    rows = storage_rows(request)
    assert rows == [
        ("cluster='a'", [("network_address", 2, 0), ("core", 1, 1)]),
        (None, [("cpu", COUNT_CODES["HALF_BEST"], 0)]),
    ]
    assert from_storage(3600, rows) == request
    # rows in any order, blank constraint, walltime 0 (not set)
    shuffled = [(" ", [("core", 1, 1), ("network_address", 2, 0)])]
    assert from_storage(0, shuffled) == req(group(("network_address", 2), ("core", 1)))


@pytest.mark.parametrize(
    "rows, hint",
    [
        ([(None, [])], "no level"),
        ([(None, [("cpu", 1, 0), ("core", 1, 0)])], "same order"),
        ([(None, [("cpu", 1, 0), ("cpu", 1, 1)])], "appears twice"),
        ([(None, [("cpu", 0, 0)])], "neither positive nor a code"),
        ([(None, [("cpu", -7, 0)])], "neither positive nor a code"),
        ([(None, [("cpu", -1, 0), ("core", 1, 1)])], "several levels"),
    ],
)
def test_from_storage_refuses_impossible_rows(rows, hint):
    with pytest.raises(DatabaseError, match=hint):
        from_storage(60, rows)


# ----------------------------------------------------------------------------- properties

CONSTRAINTS = [
    "cluster='a'",
    "gpu_model IN ('A100','H100')",
    "host LIKE 'n+1/%'",
    "x = 'a,b+c/d}{' OR y = \"}\"",
    "name = 'it''s'",
    "mem >= 64000 AND switch != 'sw3'",
    "NOT (deploy = 'YES')",
]

counts = st.one_of(st.integers(min_value=1, max_value=MAX_COUNT), st.sampled_from(sorted(COUNT_CODES)))


@st.composite
def groups(draw):
    labels = draw(st.lists(st.sampled_from(WIDE_LABELS), min_size=1, max_size=4, unique=True))
    if len(labels) == 1:
        levels = (Level(labels[0], draw(counts)),)
    else:
        levels = tuple(Level(label, draw(st.integers(min_value=1, max_value=MAX_COUNT))) for label in labels)
    return ResourceGroup(levels=levels, constraint=draw(st.none() | st.sampled_from(CONSTRAINTS)))


requests = st.builds(
    MoldableRequest,
    groups=st.lists(groups(), max_size=3).map(tuple),
    walltime=st.none() | st.integers(min_value=1, max_value=MAX_DURATION),
)


@given(requests)
def test_text_round_trip(request):
    assert parse_request(request_to_text(request), WIDE_LABELS) == request


@given(requests, st.data())
def test_whitespace_around_separators_is_ignored(request, data):
    def ws():
        return data.draw(st.sampled_from(["", " ", "\t", "  \n"]))

    def level(lvl):
        return f"{ws()}/{ws()}{lvl.label}{ws()}={ws()}{lvl.count}"

    def grp(g):
        head = f"{ws()}{{{ws()}{g.constraint}{ws()}}}" if g.constraint is not None else ""
        slash = "/" if data.draw(st.booleans()) else ""  # the leading '/' is optional
        first = f"{ws()}{slash}{ws()}{g.levels[0].label}{ws()}={ws()}{g.levels[0].count}"
        return head + first + "".join(level(lvl) for lvl in g.levels[1:]) + ws()

    text = "+".join(grp(g) for g in request.groups)
    if request.walltime is not None:
        text += f"{ws()},{ws()}walltime{ws()}={ws()}{format_duration(request.walltime)}{ws()}"
    assert parse_request(text, WIDE_LABELS) == request


@given(requests)
def test_storage_round_trip(request):
    rows = storage_rows(request)
    assert [len(levels) for _, levels in rows] == [len(g.levels) for g in request.groups]
    assert all([o for _, _, o in levels] == list(range(len(levels))) for _, levels in rows)
    assert from_storage(request.walltime, rows) == request


GRAMMAR_CHARS = "nodes=cpu/core+{}',\"walltime:0123 ALLBEST_x-"


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet=GRAMMAR_CHARS, max_size=40)))
def test_random_text_raises_only_request_or_expression_errors(text):
    try:
        result = parse_request(text, LABELS)
    except (RequestError, ExpressionError) as exc:
        assert str(exc).startswith("in -l \"") and "\n" not in str(exc)
    else:
        assert isinstance(result, MoldableRequest)
        assert parse_request(request_to_text(result), LABELS) == result


@given(st.text(alphabet="0123456789:- x", max_size=30))
def test_random_duration_raises_only_request_error(text):
    try:
        seconds = parse_duration(text)
    except RequestError:
        return
    assert 0 < seconds <= MAX_DURATION
