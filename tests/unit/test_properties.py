"""Tests of the property expression language (oar_appliance.lang.properties).

The SQL side is checked against a real in-memory SQLite database (with
``PRAGMA case_sensitive_like = ON``, as the project's connections run it); the PostgreSQL
output is checked for shape here, and against a real server by the postgres-marked tests.
"""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance.errors import ExpressionError
from oar_appliance.lang import properties as P
from oar_appliance.lang.properties import (
    And,
    Between,
    Column,
    Compare,
    In,
    IsNull,
    Like,
    Literal,
    Not,
    Or,
    columns_of,
    compile_predicate,
    evaluate,
    parse,
    to_sql,
    validate,
)

# ----------------------------------------------------------------------------- fixtures

RESOURCE_COLUMNS = {
    "resource_id": "int",
    "network_address": "str",
    "host": "str",
    "cluster": "str",
    "gpu_model": "str",
    "gpu": "str",
    "deploy": "str",
    "switch": "str",
    "mem": "int",
    "cpu": "int",
    "core": "int",
    "speed": "float",
}

_ROW_FIELDS = ("resource_id", "cluster", "host", "gpu_model", "mem", "switch", "deploy", "gpu", "cpu", "core", "speed")
ROWS = [
    dict(zip(_ROW_FIELDS, values))
    for values in [
        (1, "azur", "node-1", "A100", 64000, "sw1", "YES", "nvidia", 1, 1, 2.5),
        (2, "azur", "node-10", "H100", 128000, "sw3", "NO", "nvidia", 1, 2, 3.0),
        (3, "helios", "node-2", None, 32000, "sw2", "NO", None, 2, 3, None),
        (4, "helios", "Node-11", "V100", None, None, None, "amd", 2, 4, 1.5),
        (5, "sol", "node_5", None, 256000, "sw3", "YES", None, None, 5, 2.0),
    ]
]
for _row in ROWS:
    _row["network_address"] = f"{_row['host']}.{_row['cluster']}"
ALL = {1, 2, 3, 4, 5}

_SQL_TYPES = {"int": "INTEGER", "float": "REAL", "str": "TEXT"}


def sqlite_db(columns: dict[str, str], rows: list[dict]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA case_sensitive_like = ON")
    defs = ", ".join(f'"{name}" {_SQL_TYPES[kind]}' for name, kind in columns.items())
    db.execute(f"CREATE TABLE resources ({defs})")
    names = list(columns)
    marks = ", ".join("?" for _ in names)
    quoted = ", ".join(f'"{n}"' for n in names)
    db.executemany(
        f"INSERT INTO resources ({quoted}) VALUES ({marks})",
        [[row.get(n) for n in names] for row in rows],
    )
    return db


def sqlite_selection(db: sqlite3.Connection, expr, columns) -> set[int]:
    sql, params = to_sql(expr, columns, "sqlite")
    return {rid for (rid,) in db.execute(f"SELECT resource_id FROM resources WHERE {sql}", params)}


def python_selection(expr, columns, rows) -> set[int]:
    pred = compile_predicate(expr, columns)
    return {row["resource_id"] for row in rows if pred(row)}


def full_check(text: str, columns=RESOURCE_COLUMNS):
    """Everything a command does with an expression (the errors must all be ExpressionError)."""
    expr = parse(text)
    validate(expr, columns)
    to_sql(expr, columns, "sqlite")
    to_sql(expr, columns, "postgresql")
    compile_predicate(expr, columns)
    return expr


# ----------------------------------------------------------------------------- accepted

ACCEPTED = [
    # (expression, columns it uses, selected resource ids)
    ("cluster='azur'", {"cluster"}, {1, 2}),
    ('cluster="azur"', {"cluster"}, {1, 2}),
    ("CLUSTER = 'azur'".replace("CLUSTER", "`cluster`"), {"cluster"}, {1, 2}),
    ("gpu_model IN ('A100','H100')", {"gpu_model"}, {1, 2}),
    ("gpu_model not in ('A100')", {"gpu_model"}, {2, 4}),
    ("mem >= 64000 AND switch != 'sw3'", {"mem", "switch"}, {1}),
    ("host LIKE 'node-1%'", {"host"}, {1, 2}),
    ("host NOT LIKE 'node-1%'", {"host"}, {3, 4, 5}),
    ("host like 'node\\_%'", {"host"}, {5}),
    ("host LIKE 'node_5'", {"host"}, {5}),
    ("host LIKE 'NODE%'", {"host"}, set()),
    ("host LIKE 'N%'", {"host"}, {4}),
    ("NOT (deploy = 'YES')", {"deploy"}, {2, 3}),
    ("gpu IS NOT NULL", {"gpu"}, {1, 2, 4}),
    ("gpu is null", {"gpu"}, {3, 5}),
    ("cpu = 1 AND core < 3", {"cpu", "core"}, {1, 2}),
    ("cpu BETWEEN 1 AND 1", {"cpu"}, {1, 2}),
    ("cpu NOT BETWEEN 1 AND 1", {"cpu"}, {3, 4}),
    ("core between '2' and 4", {"core"}, {2, 3, 4}),
    ("switch NOT IN ('sw3')", {"switch"}, {1, 3}),
    ("mem > '100000'", {"mem"}, {2, 5}),
    ("1=1", set(), ALL),
    ("1 = 0", set(), set()),
    ("'a' < 'b'", set(), ALL),
    ("'B' < 'a'", set(), ALL),  # code point order
    ("'3' = 3", set(), ALL),
    ("TRUE = 1 and false = 0", set(), ALL),
    ("cpu = TRUE", {"cpu"}, {1, 2}),
    ("cluster = 'azur' OR cluster = 'sol' AND cpu = 1", {"cluster", "cpu"}, {1, 2}),
    ("(cluster = 'azur' OR cluster = 'sol') AND cpu = 1", {"cluster", "cpu"}, {1, 2}),
    ("NOT cluster = 'azur' AND cpu = 2", {"cluster", "cpu"}, {3, 4}),
    ("not (cpu = 1 or cpu = 2)", {"cpu"}, set()),  # cpu NULL: unknown, not selected
    ("NOT NOT cpu = 2", {"cpu"}, {3, 4}),
    ("cpu <> 1", {"cpu"}, {3, 4}),
    ("cpu == 2", {"cpu"}, {3, 4}),
    ("core >= -1", {"core"}, ALL),
    ("core > - 2.5", {"core"}, ALL),
    ("speed > 2", {"speed"}, {1, 2}),
    ("speed = '3'", {"speed"}, {2}),
    ("speed < core", {"speed", "core"}, {4, 5}),
    ("switch LIKE '%3'", {"switch"}, {2, 5}),
    ("core IN (1, '2', 3.0)", {"core"}, {1, 2, 3}),
    ("cluster IS NOT NULL AND NOT cpu IS NULL", {"cluster", "cpu"}, {1, 2, 3, 4}),
    ("mem LIKE '%000'", {"mem"}, {1, 2, 3, 5}),
    ("mem LIKE '__000'", {"mem"}, {1, 3}),
    ("host < 'node-2'", {"host"}, {1, 2, 4}),
    ("cluster = 3", {"cluster"}, set()),
    ("cpu = 1 OR cpu IS NULL", {"cpu"}, {1, 2, 5}),
    ("cpu = 1 OR 1 = 1", {"cpu"}, ALL),
    ("network_address = 'node-2.helios'", {"network_address"}, {3}),
    ("host = network_address", {"host", "network_address"}, set()),
    ("resource_id in (1,3,5) and (switch = 'sw3' or gpu is null)", {"resource_id", "switch", "gpu"}, {3, 5}),
    ("\n cpu\t=\r\n2 ", {"cpu"}, {3, 4}),
    ("((((cpu = 2))))", {"cpu"}, {3, 4}),
    ("'it''s' = \"it's\" AND cluster <> \"say \"\"hi\"\"\"", {"cluster"}, ALL),
]


@pytest.mark.parametrize("text, names, selected", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted_expressions(text, names, selected):
    expr = parse(text)
    assert columns_of(expr) == frozenset(names)
    validate(expr, RESOURCE_COLUMNS)
    assert python_selection(expr, RESOURCE_COLUMNS, ROWS) == selected
    db = sqlite_db(RESOURCE_COLUMNS, ROWS)
    assert sqlite_selection(db, expr, RESOURCE_COLUMNS) == selected


def test_tree_shape_and_equality_ignores_positions():
    expr = parse("cpu = 1 AND (host LIKE 'a%' OR NOT gpu IS NULL) AND mem NOT IN (1, 2) and core between -1 and 2.5")
    assert expr == And(
        (
            Compare("=", Column("cpu"), Literal(1)),
            Or((Like(Column("host"), "a%"), Not(IsNull(Column("gpu"))))),
            In(Column("mem"), (Literal(1), Literal(2)), negated=True),
            Between(Column("core"), Literal(-1), Literal(2.5)),
        )
    )
    assert parse("  cpu=1 ") == parse("cpu = 1") == Compare("=", Column("cpu"), Literal(1))
    assert parse("cpu <> 1") == parse("cpu != 1")
    assert parse("a=1 OR b=1 OR c=1") == Or(tuple(Compare("=", Column(n), Literal(1)) for n in "abc"))
    with pytest.raises(AttributeError):
        expr.items = ()  # frozen


def test_keywords_are_case_insensitive_and_names_case_sensitive():
    assert parse("cpu = 1 aNd core iS nOt NuLl") == parse("cpu = 1 AND core IS NOT NULL")
    with pytest.raises(ExpressionError, match=r"unknown property 'CPU' \(did you mean 'cpu'\?\)"):
        validate(parse("CPU = 1"), RESOURCE_COLUMNS)


def test_backquoted_names_may_be_keywords():
    expr = parse("`in` = 1 AND `select` = 'x'")
    assert columns_of(expr) == {"in", "select"}
    sql, params = to_sql(expr, {"in": "int", "select": "str"}, "sqlite")
    assert '"in"' in sql and '"select"' in sql and params == [1, "x"]


def test_validate_unknown_names_lists_known_ones():
    with pytest.raises(ExpressionError) as err:
        validate(parse("cpu = 1 AND foo = 2"), {"cpu": "int", "b": "str", "a": "int"})
    assert str(err.value) == "unknown property 'foo'; known properties: a, b, cpu"
    with pytest.raises(ExpressionError) as err:
        validate(parse("project = 'p1' AND bogus IS NULL"), {"project": "str", "job_user": "str"}, "job field")
    assert str(err.value) == "unknown job field 'bogus'; known job fields: job_user, project"
    # to_sql and compile_predicate validate too
    with pytest.raises(ExpressionError, match="unknown property 'nope'"):
        to_sql(parse("nope = 1"), RESOURCE_COLUMNS, "postgresql")
    with pytest.raises(ExpressionError, match="unknown job field 'nope'"):
        compile_predicate(parse("nope IS NULL"), {"project": "str"}, what="job field")


def test_three_valued_logic():
    cols = {"a": "int", "b": "str"}
    null_row = {"a": None, "b": None}
    for text, expected in [
        ("a = 1", False),
        ("NOT a = 1", False),
        ("a = 1 OR 1 = 1", True),
        ("a = 1 AND 1 = 0", False),
        ("NOT (a = 1 AND 1 = 0)", True),
        ("NOT (a = 1 OR 1 = 0)", False),
        ("a IN (1, 2)", False),
        ("a NOT IN (1, 2)", False),
        ("b LIKE '%'", False),
        ("b NOT LIKE '%'", False),
        ("a BETWEEN 0 AND 9", False),
        ("a NOT BETWEEN 0 AND 9", False),
        ("a IS NULL", True),
        ("NOT a IS NOT NULL", True),
        ("b = b", False),
    ]:
        expr = parse(text)
        assert evaluate(expr, cols, null_row) is expected, text
        db = sqlite_db({"resource_id": "int", **cols}, [{"resource_id": 1, **null_row}])
        assert sqlite_selection(db, expr, {"resource_id": "int", **cols}) == ({1} if expected else set()), text


def test_coercions_bind_the_column_type():
    cols = {"cpu": "int", "host": "str", "speed": "float"}
    assert to_sql(parse("cpu = '3'"), cols, "sqlite") == ('"cpu" = ?', [3])
    assert to_sql(parse("cpu = '-3.50'"), cols, "sqlite") == ('"cpu" = ?', [-3.5])
    assert to_sql(parse("host = 3"), cols, "sqlite")[1] == ["3"]
    assert to_sql(parse("host = 1.10"), cols, "sqlite")[1] == ["1.10"]  # spelling kept
    assert to_sql(parse("host = -.5"), cols, "sqlite")[1] == ["-.5"]
    assert to_sql(parse("host IN (TRUE, 2)"), cols, "sqlite")[1] == ["1", "2"]
    assert to_sql(parse("speed = 3"), cols, "sqlite")[1] == [3.0]
    assert to_sql(parse("cpu = TRUE"), cols, "sqlite")[1] == [1]
    assert to_sql(parse("'3' = 3"), cols, "sqlite")[1] == [3, 3]
    assert to_sql(parse("'3' = 2.5"), cols, "sqlite")[1] == [3.0, 2.5]
    for text, message in [
        ("cpu = 'abc'", "property 'cpu' is numeric: cannot compare it with 'abc' at column 7"),
        ("cpu IN (1, 'x')", "property 'cpu' is numeric"),
        ("cpu BETWEEN '' AND 3", "property 'cpu' is numeric"),
        ("'abc' < 3", "cannot compare the number 3 with the text 'abc'"),
        ("cpu = host", "cannot compare numeric property 'cpu' with text property 'host'"),
        ("speed LIKE '1%'", "LIKE cannot be used on the decimal property 'speed'"),
        ("cpu = '99999999999999999999'", "integer out of range"),
    ]:
        expr = parse(text)
        for check in (
            lambda: validate(expr, cols),
            lambda: to_sql(expr, cols, "sqlite"),
            lambda: to_sql(expr, cols, "postgresql"),
            lambda: compile_predicate(expr, cols),
        ):
            with pytest.raises(ExpressionError) as err:
                check()
            assert message in str(err.value)


def test_sql_shape_sqlite_and_postgresql():
    cols = {"cpu": "int", "host": "str", "speed": "float"}
    sql, params = to_sql(parse("host LIKE 'n%' AND cpu LIKE '1%'"), cols, "sqlite")
    assert sql == "(\"host\" LIKE ? ESCAPE '\\' AND CAST(\"cpu\" AS TEXT) LIKE ? ESCAPE '\\')"
    assert params == ["n%", "1%"]
    sql, params = to_sql(parse("host LIKE 'n%' AND cpu NOT LIKE '1%'"), cols, "postgresql")
    assert "\"host\" COLLATE \"C\" LIKE %s ESCAPE '\\'" in sql
    assert "CAST(\"cpu\" AS TEXT) COLLATE \"C\" NOT LIKE %s ESCAPE '\\'" in sql
    # two parameters compare in PostgreSQL: both are typed
    assert to_sql(parse("1 = 1"), cols, "postgresql") == ("CAST(%s AS BIGINT) = CAST(%s AS BIGINT)", [1, 1])
    assert to_sql(parse("1 < 1.5"), cols, "postgresql") == (
        "CAST(%s AS DOUBLE PRECISION) < CAST(%s AS DOUBLE PRECISION)",
        [1.0, 1.5],
    )
    assert to_sql(parse("'a' <> 'b'"), cols, "postgresql") == (
        'CAST(%s AS TEXT) COLLATE "C" <> CAST(%s AS TEXT)',
        ["a", "b"],
    )
    assert to_sql(parse("'a' IS NULL"), cols, "postgresql") == ("CAST(%s AS TEXT) IS NULL", ["a"])
    assert to_sql(parse("'a' LIKE 'a'"), cols, "postgresql")[0] == (
        "CAST(%s AS TEXT) COLLATE \"C\" LIKE %s ESCAPE '\\'"
    )
    assert to_sql(parse("cpu = 1"), cols, "sqlite") == ('"cpu" = ?', [1])
    assert to_sql(parse("NOT cpu = 1"), cols, "sqlite") == ('(NOT ("cpu" = ?))', [1])
    assert to_sql(parse("host = 'x'"), cols, "sqlite") == ('"host" COLLATE BINARY = ?', ["x"])
    # every placeholder has its parameter, and psycopg sees no other '%'
    sql, params = to_sql(parse("host LIKE '%%' OR cpu IN (1,2,3) OR speed BETWEEN 1 AND 2"), cols, "postgresql")
    assert sql.count("%s") == len(params) == 6
    assert "%" not in sql.replace("%s", "")
    assert "?" not in sql
    with pytest.raises(ValueError):
        to_sql(parse("cpu = 1"), cols, "mysql")


def test_collation_and_case_are_respected_by_sqlite():
    """COLLATE BINARY makes text comparison code point order even on a NOCASE column."""
    db = sqlite3.connect(":memory:")
    db.execute("PRAGMA case_sensitive_like = ON")
    db.execute("CREATE TABLE resources (resource_id INTEGER, host TEXT COLLATE NOCASE)")
    db.executemany("INSERT INTO resources VALUES (?, ?)", [(1, "abc"), (2, "ABC"), (3, "b")])
    cols = {"resource_id": "int", "host": "str"}
    for text in ["host = 'abc'", "host < 'b'", "host IN ('ABC')", "host LIKE 'a%'", "host BETWEEN 'a' AND 'b'"]:
        expr = parse(text)
        rows = [{"resource_id": 1, "host": "abc"}, {"resource_id": 2, "host": "ABC"}, {"resource_id": 3, "host": "b"}]
        assert sqlite_selection(db, expr, cols) == python_selection(expr, cols, rows), text


def test_depth_and_length_limits():
    ok = "(" * 100 + "cpu = 1" + ")" * 100
    assert parse(ok) == Compare("=", Column("cpu"), Literal(1))
    with pytest.raises(ExpressionError, match="nested too deeply at column 101"):
        parse("(" * 101 + "cpu = 1" + ")" * 101)
    assert isinstance(parse("NOT " * 100 + "cpu = 1"), Not)
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("NOT " * 101 + "cpu = 1")
    with pytest.raises(ExpressionError, match="nested too deeply"):
        parse("NOT " * 2400 + "cpu = 1")
    padded = "cpu = 1" + " " * (P.MAX_LENGTH - 7)
    assert len(padded) == 10_000 and parse(padded)
    with pytest.raises(ExpressionError, match="too long: 10001 characters, at most 10000"):
        parse(padded + " ")
    long_and = " AND ".join(["cpu = 1"] * 800)
    expr = parse(long_and)
    assert isinstance(expr, And) and len(expr.items) == 800
    assert evaluate(expr, RESOURCE_COLUMNS, {"cpu": 1})


def test_like_matcher_is_not_exponential():
    expr = parse("host LIKE '" + "%a" * 40 + "%b'")
    pred = compile_predicate(expr, RESOURCE_COLUMNS)
    start = time.perf_counter()
    assert not pred({"host": "a" * 5000})
    assert pred({"host": "a" * 5000 + "b"})
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "pattern, value, expected",
    [
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("a%", "a", True),
        ("%a", "ba", True),
        ("%a%b%", "xaybz", True),
        ("%a%b%", "xbya", False),
        ("a_c", "abc", True),
        ("a_c", "ac", False),
        ("a\\%", "a%", True),
        ("a\\%", "ab", False),
        ("a\\_", "a_", True),
        ("a\\_", "ab", False),
        ("a\\\\", "a\\", True),
        ("\\a", "a", True),
        ("%", "", True),
        ("", "", True),
        ("_", "é", True),
        ("a%a", "a", False),
        ("%aa%aa", "aaa", False),
        ("%aa%aa", "aaaa", True),
        ("x%\n", "x\n", True),
        ("%", "line\nline", True),
    ],
)
def test_like_semantics_match_sqlite(pattern, value, expected):
    expr = Like(Column("host"), pattern)
    cols = {"resource_id": "int", "host": "str"}
    assert evaluate(expr, cols, {"host": value}) is expected
    db = sqlite_db(cols, [{"resource_id": 1, "host": value}])
    assert sqlite_selection(db, expr, cols) == ({1} if expected else set())


# ----------------------------------------------------------------------------- refused

REFUSED = [
    # (input, substrings the message must contain)
    ("1=1; DROP TABLE jobs", ["unexpected ';' at column 4"]),
    ("cpu = 1;", ["unexpected ';' at column 8"]),
    ("(SELECT job_id FROM jobs)", ["sub-queries are not allowed", "column 2"]),
    ("cpu IN (SELECT 1)", ["sub-queries are not allowed", "'SELECT' at column 9"]),
    ("cpu = 1 UNION select * from challenges", ["unexpected 'UNION' at column 9"]),
    ("pg_sleep(10)", ["function calls are not allowed: pg_sleep at column 1"]),
    ("sleep(1) = 0", ["function calls are not allowed: sleep"]),
    ("cpu = 1 OR pg_sleep (10) IS NULL", ["function calls are not allowed: pg_sleep at column 12"]),
    ("lower(cluster) = 'azur'", ["function calls are not allowed: lower"]),
    ("`version`() = 1", ["function calls are not allowed: version"]),
    ("EXISTS (SELECT 1)", ["function calls are not allowed: EXISTS"]),
    ("cpu = 1 -- AND deploy = 'NO'", ["comments are not allowed", "'--' at column 9"]),
    ("cpu = 1 /* x */", ["comments are not allowed", "'/*' at column 9"]),
    ("cpu = 1 # x", ["comments are not allowed", "column 9"]),
    ("cluster = 'a' || 'zur'", ["'||'", "not allowed", "column 15"]),
    ("cpu + 1 = 2", ["arithmetic is not allowed: '+' at column 5"]),
    ("cpu = 1-1", ["arithmetic is not allowed: '-' at column 8"]),
    ("cpu * 2 = 2", ["arithmetic is not allowed: '*'"]),
    ("cpu / 2 = 2", ["arithmetic is not allowed: '/'"]),
    ("cpu % 2 = 0", ["arithmetic is not allowed: '%'"]),
    ("cpu = -core", ["arithmetic is not allowed: '-' at column 7"]),
    ("", ["empty expression"]),
    (" \t\n ", ["empty expression"]),
    ("cpu = 1" + " " * 10_000, ["too long"]),
    ("(" * 101 + "cpu = 1" + ")" * 101, ["nested too deeply"]),
    ("cluster = 'azur", ["unterminated string starting at column 11"]),
    ('cluster = "azur', ["unterminated string starting at column 11"]),
    ("`cpu = 1", ["unterminated quoted name starting at column 1"]),
    ("`c-pu` = 1", ["invalid quoted name"]),
    ("cpu = NULL", ["unexpected 'NULL' at column 7", "IS NULL"]),
    ("cpu IN (1, NULL)", ["unexpected 'NULL' at column 12"]),
    ("cpu =", ["unexpected end of expression at column 6"]),
    ("cpu", ["unexpected end of expression at column 4", "comparison operator"]),
    ("cpu = 1 AND", ["unexpected end of expression"]),
    ("(cpu = 1", ["unexpected end of expression", "expected ')'"]),
    ("cpu = 1)", ["unexpected ')' at column 8"]),
    ("cpu IN ()", ["unexpected ')' at column 9"]),
    ("cpu = (1)", ["unexpected '(' at column 7"]),
    ("cpu = 1e5", ["malformed number '1e5' at column 7"]),
    ("cpu = 0x1F", ["malformed number '0x1F'"]),
    ("cpu = 1.2.3", ["malformed number"]),
    ("cpu = 99999999999999999999", ["integer out of range", "column 7"]),
    ("cpu = 9223372036854775808", ["integer out of range"]),
    ("cpu = ?", ["unexpected character '?' at column 7"]),
    ("cpu = $1", ["unexpected character '$' at column 7"]),
    ("cpu = :x", ["unexpected character ':'"]),
    ("cpu ~ 'a'", ["unexpected character '~' at column 5"]),
    ("cpu <=> 1", ["unexpected '>' at column 7"]),
    ("host LIKE 'a' ESCAPE '!'", ["unexpected 'ESCAPE' at column 15"]),
    ("host LIKE 'a\\'", ["LIKE pattern ends with the escape character"]),
    ("host LIKE cluster", ["unexpected 'cluster' at column 11", "expected a string"]),
    ("host ILIKE 'a%'", ["unexpected 'ILIKE'"]),
    ("cpu IS 1", ["unexpected '1' at column 8", "NULL"]),
    ("cpu = 1 LIMIT 1", ["unexpected 'LIMIT' at column 9"]),
    ("CASE WHEN cpu = 1 THEN 1 END = 1", ["unexpected 'WHEN' at column 6"]),
    ("cluster = 'a\x00b'", ["NUL character"]),
    ("cluster = '\ud800'", ["invalid character"]),
    ("cpu = １", ["unexpected character '１'"]),
    ("nodé = 1", ["unexpected character 'é'"]),
    ("TRUE", ["unexpected end of expression"]),
    ("foo = 1", ["unknown property 'foo'; known properties: ", "cluster, core, cpu"]),
    ("cpu = 'abc'", ["property 'cpu' is numeric", "'abc'"]),
    ("cpu = cluster", ["cannot compare numeric property 'cpu' with text property 'cluster'"]),
]


@pytest.mark.parametrize("text, fragments", REFUSED, ids=[repr(r[0][:40]) for r in REFUSED])
def test_refused_expressions(text, fragments):
    with pytest.raises(ExpressionError) as err:
        full_check(text)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, (message, fragment)
    assert err.value.exit_code == 5


def test_non_text_input_is_refused():
    with pytest.raises(ExpressionError):
        parse(None)  # type: ignore[arg-type]
    with pytest.raises(ExpressionError):
        parse(b"cpu = 1")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- differential

DIFF_COLUMNS = {
    "resource_id": "int",
    "cpu": "int",
    "core": "int",
    "network_address": "str",
    "switch": "str",
    "mem": "int",
}
INT_COLS = ["resource_id", "cpu", "core", "mem"]
STR_COLS = ["network_address", "switch"]
STR_ALPHABET = "aAbB_%-1é' \\\""

small_int = st.integers(-2, 6)
small_str = st.text(alphabet=STR_ALPHABET, max_size=3)


def kw(word: str) -> st.SearchStrategy[str]:
    return st.sampled_from([word.upper(), word.lower(), word.capitalize()])


def quote(value: str) -> st.SearchStrategy[str]:
    return st.sampled_from(["'" + value.replace("'", "''") + "'", '"' + value.replace('"', '""') + '"'])


@st.composite
def int_literal(draw) -> str:
    n = draw(small_int)
    form = draw(st.sampled_from(["plain", "string", "decimal", "bool", "spaced"]))
    if form == "string":
        return draw(quote(str(n)))
    if form == "decimal":
        return f"{n}.5" if n >= 0 else f"-{-n - 1}.5"
    if form == "bool" and n in (0, 1):
        return draw(kw("true" if n else "false"))
    if form == "spaced" and n < 0:
        return f"- {-n}"
    return str(n)


@st.composite
def str_literal(draw) -> str:
    if draw(st.integers(0, 9)) == 0:
        return str(draw(small_int))  # a number compared with a text column
    return draw(quote(draw(small_str)))


@st.composite
def quoted_str(draw) -> str:
    return draw(quote(draw(small_str)))


@st.composite
def name(draw, col: str) -> str:
    return f"`{col}`" if draw(st.integers(0, 5)) == 0 else col


@st.composite
def like_pattern(draw, digits: bool) -> str:
    pieces = draw(
        st.lists(
            st.sampled_from(
                ["%", "_", "\\%", "\\_", "\\\\", "\\a"]
                + (list("0123-") if digits else ["a", "A", "b", "-", "1", "é", "'", " "])
            ),
            max_size=5,
        )
    )
    return draw(quote("".join(pieces)))


@st.composite
def predicate(draw) -> str:
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "colcol", "litlit", "in", "like", "null", "between"]))
    numeric = draw(st.booleans())
    col = draw(st.sampled_from(INT_COLS if numeric else STR_COLS))
    operand = draw(name(col))
    literal = int_literal() if numeric else str_literal()
    # without a column, texts and numbers do not mix (refused): only texts, or only numbers
    pure = int_literal() if numeric else quoted_str()
    op = draw(st.sampled_from(["=", "==", "!=", "<>", "<", "<=", ">", ">="]))
    neg = draw(kw("not")) + " " if draw(st.booleans()) else ""
    if kind == "cmp":
        left, right = operand, draw(literal)
        if draw(st.booleans()):
            left, right = right, left
        return f"{left} {op} {right}"
    if kind == "colcol":
        other = draw(st.sampled_from(INT_COLS if numeric else STR_COLS))
        return f"{operand} {op} {draw(name(other))}"
    if kind == "litlit":
        return f"{draw(pure)} {op} {draw(pure)}"
    if draw(st.integers(0, 4)) == 0:
        operand, literal = draw(pure), pure
    if kind == "in":
        values = draw(st.lists(literal, min_size=1, max_size=4))
        return f"{operand} {neg}{draw(kw('in'))} ({', '.join(values)})"
    if kind == "like":
        return f"{operand} {neg}{draw(kw('like'))} {draw(like_pattern(numeric))}"
    if kind == "null":
        return f"{operand} {draw(kw('is'))} {neg}{draw(kw('null'))}"
    return f"{operand} {neg}{draw(kw('between'))} {draw(literal)} {draw(kw('and'))} {draw(literal)}"


def combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def join(word: str):
        return st.builds(
            lambda items, kws, bare: f" {kws} ".join(items if bare else [f"({i})" for i in items]),
            st.lists(children, min_size=2, max_size=3),
            kw(word),
            st.booleans(),
        )

    negate = st.builds(lambda k, c: f"{k} ({c})", kw("not"), children)
    return st.one_of(join("and"), join("or"), negate)


expressions = st.recursive(predicate(), combine, max_leaves=8)


@st.composite
def resource_rows(draw) -> list[dict]:
    count = draw(st.integers(0, 10))
    rows = []
    maybe_null = st.integers(0, 4).map(lambda n: n == 0)
    for rid in range(1, count + 1):
        row = {"resource_id": rid}
        for col in INT_COLS[1:]:
            row[col] = None if draw(maybe_null) else draw(small_int)
        for col in STR_COLS:
            row[col] = None if draw(maybe_null) else draw(small_str)
        rows.append(row)
    return rows


SAFE_SQL = {
    dialect: re.compile(
        r"(?:\s+|\"[A-Za-z_][A-Za-z0-9_]*\"|"
        + placeholder
        + r"|[(),]|<>|<=|>=|[=<>]|\b(?:AND|OR|NOT|IN|LIKE|IS|NULL|BETWEEN|CAST|AS|TEXT|BIGINT|"
        r"DOUBLE PRECISION|COLLATE|BINARY|ESCAPE)\b|'\\'"
        + (r'|"C"' if dialect == "postgresql" else "")
        + ")+"
    )
    for dialect, placeholder in (("sqlite", r"\?"), ("postgresql", r"%s"))
}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions, resource_rows())
def test_sqlite_and_python_select_the_same_rows(text, rows):
    expr = parse(text)
    validate(expr, DIFF_COLUMNS)
    db = sqlite_db(DIFF_COLUMNS, rows)
    assert sqlite_selection(db, expr, DIFF_COLUMNS) == python_selection(expr, DIFF_COLUMNS, rows), text
    for dialect in ("sqlite", "postgresql"):
        sql, params = to_sql(expr, DIFF_COLUMNS, dialect)
        assert SAFE_SQL[dialect].fullmatch(sql), sql
        assert sql.count("?" if dialect == "sqlite" else "%s") == len(params)


def test_differential_harness_is_not_vacuous():
    """The differential harness sees both selected and rejected rows."""
    rows = [
        {"resource_id": 1, "cpu": 1, "core": None, "mem": 3, "network_address": "a", "switch": None},
        {"resource_id": 2, "cpu": 2, "core": 2, "mem": None, "network_address": None, "switch": "A"},
    ]
    expr = parse("cpu = 1 OR (switch LIKE 'A%' AND NOT mem IS NOT NULL)")
    db = sqlite_db(DIFF_COLUMNS, rows)
    assert sqlite_selection(db, expr, DIFF_COLUMNS) == python_selection(expr, DIFF_COLUMNS, rows) == {1, 2}
    expr = parse("core = 2 AND network_address = 'a'")
    assert sqlite_selection(db, expr, DIFF_COLUMNS) == python_selection(expr, DIFF_COLUMNS, rows) == set()


# ----------------------------------------------------------------------------- fuzz

SQL_FRAGMENTS = [
    ";", "--", "/*", "*/", "#", "SELECT", "select", "UNION", "FROM", "jobs", "WHERE", "'", '"', "`",
    "(", ")", ",", "pg_sleep(", "sleep(", "pg_sleep", "||", "+", "-", "*", "/", "%", "=", "==", "!=",
    "<>", "<", "<=", ">", ">=", "<=>", "!", "AND", "and", "OR", "NOT", "IN", "LIKE", "IS", "NULL",
    "BETWEEN", "TRUE", "FALSE", "cpu", "core", "cluster", "host", "speed", "`cpu`", "1", "-1", "0",
    "2.5", ".5", "1.", "1e5", "'azur'", '"azur"', "'it''s'", "'a\\'", "'%'", "'\\%'", "$1", "?",
    ":x", "\\", "\x00", "\n", "\t", " ", "DROP", "TABLE", "ESCAPE", "9223372036854775808", "é",
]

VALID_FRAGMENTS = [
    "cpu", "core", "cluster", "host", "speed", "`mem`", "=", "<>", "<", ">=", "1", "-2", "2.5", "'azur'",
    '"a%"', "'3'", "TRUE", "AND", "OR", "NOT", "IN", "LIKE", "IS", "NULL", "BETWEEN", "(", ")", ",",
]

@st.composite
def mutated_expression(draw) -> str:
    """A valid expression with a fragment inserted, a slice removed, or a slice replaced."""
    text = draw(expressions)
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 6)))
    fragment = draw(st.sampled_from(SQL_FRAGMENTS + VALID_FRAGMENTS))
    action = draw(st.sampled_from(["insert", "delete", "replace"]))
    if action == "insert":
        return text[:start] + fragment + text[start:]
    if action == "delete":
        return text[:start] + text[end:]
    return text[:start] + fragment + text[end:]


fuzz_text = st.one_of(
    expressions,
    mutated_expression(),
    mutated_expression(),
    st.lists(st.sampled_from(VALID_FRAGMENTS), min_size=1, max_size=12).map(" ".join),
    st.text(max_size=200),
    st.text(alphabet="abc'\"`;-/*#()=<>!|,. 0123456789%_\\\n", max_size=80),
    st.lists(st.sampled_from(SQL_FRAGMENTS), max_size=25).map(" ".join),
    st.lists(st.sampled_from(SQL_FRAGMENTS), max_size=25).map("".join),
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_text)
def test_fuzz_only_expression_errors(text):
    try:
        expr = full_check(text)
    except ExpressionError as err:
        assert str(err)  # a message, never empty
        return
    # accepted: the SQL holds no value of the expression, and the predicate runs
    for dialect in ("sqlite", "postgresql"):
        sql, params = to_sql(expr, RESOURCE_COLUMNS, dialect)
        assert SAFE_SQL[dialect].fullmatch(sql), sql
    pred = compile_predicate(expr, RESOURCE_COLUMNS)
    for row in ROWS:
        assert pred(row) in (True, False)


# ----------------------------------------------------------------------------- injection

hostile_value = st.text(alphabet="';\"-/*x )(=OR1", min_size=1, max_size=30).filter(
    lambda s: any(c in s for c in "';\"") and len(s.strip()) > 1
)


@settings(max_examples=300, deadline=None)
@given(hostile_value, st.sampled_from(["=", "IN", "LIKE", "BETWEEN", "lit"]), st.sampled_from(["'", '"']))
def test_no_literal_reaches_the_sql_text(value, form, q):
    lit = q + value.replace(q, q + q) + q
    text = {
        "=": f"network_address = {lit}",
        "IN": f"switch IN ('a', {lit})",
        "LIKE": f"network_address LIKE {lit}",
        "BETWEEN": f"switch BETWEEN {lit} AND {lit}",
        "lit": f"{lit} = {lit}",
    }[form]
    try:
        expr = parse(text)
    except ExpressionError as err:
        assert form == "LIKE" and "escape character" in str(err)  # pattern ending in '\'
        return
    for dialect in ("sqlite", "postgresql"):
        sql, params = to_sql(expr, DIFF_COLUMNS, dialect)
        # (not "value not in sql": a value such as '" =' is also a piece of harmless SQL
        # text; SAFE_SQL below says the text holds nothing but identifiers, placeholders,
        # keywords and operators)
        assert lit not in sql
        assert ";" not in sql and "--" not in sql
        assert value in params
        assert SAFE_SQL[dialect].fullmatch(sql), sql
    # and the value round-trips through SQLite untouched
    db = sqlite_db(DIFF_COLUMNS, [{"resource_id": 1, "network_address": value, "switch": value}])
    expected = python_selection(expr, DIFF_COLUMNS, [{"resource_id": 1, "network_address": value, "switch": value}])
    assert sqlite_selection(db, expr, DIFF_COLUMNS) == expected
    if form in ("=", "IN", "BETWEEN", "lit"):
        assert expected == {1}


def test_module_documents_the_language():
    doc = P.__doc__
    for word in ("LIKE", "IN", "IS NULL", "BETWEEN", "refused", "SELECT", "comments", "PostgreSQL", "COLLATE"):
        assert word in doc
