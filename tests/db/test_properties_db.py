"""Property expressions on the real databases: SQL and the Python predicate agree.

``resources.select(db, expression=...)`` compiles an expression with ``to_sql`` and runs it
on the live ``resources`` table (SQLite, and a throwaway PostgreSQL 15 cluster); the
scheduler evaluates the same expression in Python with ``compile_predicate``. Both must
select exactly the same resources, whatever the data: NULLs, quotes, ``%``, ``_``,
backslashes, mixed case and non-ASCII text, negative and large numbers, decimals.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oar_appliance import resources
from oar_appliance.db import resource_table
from oar_appliance.errors import ExpressionError
from oar_appliance.lang import properties as property_language
# the expressions of the SQLite-only differential test (columns resource_id, cpu, core, mem,
# network_address, switch) and its building blocks
from tests.unit.test_properties import combine, expressions as unit_expressions, kw, quote

# ----------------------------------------------------------------------------- the data

TEXTS = [
    "", " ", "a", "A", "b", "B", "ab", "aB", "Ab", "a b", "node-1", "Node-1", "node_1", "node%1",
    "50%", "%", "_", "x_y", "it's", "''", 'say "hi"', '"', "back\\slash", "\\", "\\%", "\\_",
    "a\\b", "é", "É", "e", "ü", "straße", "日本", "😀", "1", "10", "2", "-1", "1.10", "tab\there",
    "line\nbreak",
]
INTS = [-3, -1, 0, 1, 2, 3, 5, 6, 10, 2147483647, -2147483648]
FLOATS = [-1.5, 0.0, 0.5, 1.0, 2.5, 3.0, 10.0, 0.1]

STR_COLS = ["network_address", "host", "switch", "label", "type"]
INT_COLS = ["resource_id", "cpu", "core", "cpuset", "mem"]
FLOAT_COLS = ["weight"]
ROW_COUNT = 60


def generated_rows(seed: int = 20240611) -> list[dict]:
    """``ROW_COUNT`` resources drawn with a fixed seed; about one value in five is NULL."""
    rng = random.Random(seed)

    def maybe(pool):
        return None if rng.random() < 0.2 else rng.choice(pool)

    rows = []
    for _ in range(ROW_COUNT):
        rows.append({
            "network_address": rng.choice([t for t in TEXTS if t]),
            "type": rng.choice(["default", "Default", "gpu", "it's", "é"]),
            "host": maybe(TEXTS),
            "switch": maybe(TEXTS),
            "label": maybe(TEXTS),
            "cpu": maybe(INTS),
            "core": maybe(INTS),
            "cpuset": maybe(INTS[:8]),
            "mem": maybe(INTS),
            "weight": maybe(FLOATS),
        })
    return rows


@pytest.fixture
def populated(db):
    """The database with the generated resources: ``(db, column kinds, rows read back)``."""
    resources.add_property(db, "label", "str")
    # a decimal property (oarproperty makes only int and str ones, the language knows floats)
    db.execute_sql('ALTER TABLE "resources" ADD COLUMN "weight" DOUBLE PRECISION')
    resources.add_resources(db, generated_rows(), now=1000)
    columns = resource_table.columns(db)
    assert columns["label"] == "str" and columns["weight"] == "float"
    rows = resources.select(db)
    assert len(rows) == ROW_COUNT
    return db, columns, rows


def check_same_selection(populated, text: str) -> set[int]:
    """Ids selected by the database and by the Python predicate; they must be equal."""
    db, columns, rows = populated
    in_db = {row["resource_id"] for row in resources.select(db, expression=text)}
    predicate = property_language.compile_predicate(property_language.parse(text), columns)
    in_python = {row["resource_id"] for row in rows if predicate(row)}
    assert in_db == in_python, (text, sorted(in_db ^ in_python))
    return in_db


# ----------------------------------------------------------------------------- expressions

def number_spellings(value: int | float) -> list[str]:
    text = repr(value) if isinstance(value, float) else str(value)
    return [text, f"'{text}'"] + (["TRUE" if value else "FALSE"] if value in (0, 1) else [])


int_literal = st.sampled_from(INTS + FLOATS + [4]).flatmap(lambda v: st.sampled_from(number_spellings(v)))
str_literal = st.one_of(
    st.sampled_from(TEXTS).flatmap(quote),
    st.text(alphabet="aAbBé_%'\"\\ 1", max_size=3).flatmap(quote),
    st.sampled_from(["1", "10", "-1", "1.10", "2"]),  # numbers compared with text keep their spelling
)
LIKE_PIECES = ["%", "%", "_", "\\%", "\\_", "\\\\", "\\a", "a", "A", "b", "é", "É", "'", '"', " ",
               "-", "1", "0", "日", "😀", "\n", "node"]


def escaped(value: str) -> str:
    """A LIKE pattern matching exactly ``value``."""
    return "".join("\\" + c if c in "%_\\" else c for c in value)


like_pattern = st.one_of(
    st.lists(st.sampled_from(LIKE_PIECES), max_size=5).map("".join),
    st.sampled_from(TEXTS).map(escaped),
    st.sampled_from(TEXTS).map(lambda t: "%" + escaped(t[-1:]) + "%"),
).flatmap(quote)


@st.composite
def db_predicate(draw) -> str:
    domain = draw(st.sampled_from(["str", "str", "int", "float"]))
    cols = {"str": STR_COLS, "int": INT_COLS, "float": FLOAT_COLS}[domain]
    numeric_cols = INT_COLS + FLOAT_COLS
    col = draw(st.sampled_from(cols))
    literal = str_literal if domain == "str" else int_literal
    op = draw(st.sampled_from(["=", "==", "!=", "<>", "<", "<=", ">", ">="]))
    neg = draw(kw("not")) + " " if draw(st.booleans()) else ""
    kind = draw(st.sampled_from(["cmp", "cmp", "colcol", "in", "like", "null", "between"]))
    if kind == "like" and domain == "float":
        kind = "cmp"  # LIKE is refused on decimal columns
    if kind == "cmp":
        left, right = col, draw(literal)
        if draw(st.booleans()):
            left, right = right, left
        return f"{left} {op} {right}"
    if kind == "colcol":
        other = draw(st.sampled_from(STR_COLS if domain == "str" else numeric_cols))
        return f"{col} {op} {other}"
    if kind == "in":
        values = draw(st.lists(literal, min_size=1, max_size=4))
        return f"{col} {neg}{draw(kw('in'))} ({', '.join(values)})"
    if kind == "like":
        return f"{col} {neg}{draw(kw('like'))} {draw(like_pattern)}"
    if kind == "null":
        return f"{col} {draw(kw('is'))} {neg}{draw(kw('null'))}"
    return f"{col} {neg}{draw(kw('between'))} {draw(literal)} {draw(kw('and'))} {draw(literal)}"


db_expressions = st.recursive(db_predicate(), combine, max_leaves=6)


# ----------------------------------------------------------------------------- the tests

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(db_expressions, db_expressions, unit_expressions))  # mostly the richer data
def test_database_and_python_select_the_same_resources(populated, text):
    check_same_selection(populated, text)


#: expressions over the awkward values of the data, each selecting some resources but not all
FIXED = [
    "host = 'it''s' OR switch = \"say \"\"hi\"\"\" OR label = 'back\\slash'",
    "host LIKE '%\\%%' OR label LIKE '%\\_%' OR switch LIKE '%\\\\%'",
    "host LIKE 'N%' OR host LIKE 'n%'",
    "host < 'a' AND host >= 'B'",
    "label > 'z' OR label = 'É'",
    "host IN ('日本', '😀', 'straße') OR label LIKE '_'",
    "host = 1 OR label < 10 OR switch BETWEEN -1 AND 1.10",
    "cpu = '3' OR mem >= 2147483647 OR core < -2",
    "weight > 1 AND NOT weight IN (2.5, 3)",
    "weight = cpu OR weight < core",
    "cpu LIKE '-%' OR mem LIKE '2%7'",
    "NOT (host IS NULL OR cpu > 2)",
    "host IS NOT NULL AND NOT (host = switch)",
    "label NOT LIKE '%a%' AND label NOT IN ('b', 'B')",
    "cpu NOT BETWEEN 0 AND 5",
    "type = 'Default' OR type LIKE 'd%'",
    "switch LIKE 'line_break' OR network_address LIKE 'tab%here'",
]


@pytest.mark.parametrize("text", FIXED)
def test_fixed_expressions_select_the_same_resources(populated, text):
    selected = check_same_selection(populated, text)
    # the data is rich enough for every fixed expression to split the resources
    assert 0 < len(selected) < ROW_COUNT, (text, len(selected))


#: the language accepts 100 levels of nesting and 10,000 characters: so must both databases
#: (SQLite's parser has a 100-entry stack and refuses expression trees deeper than 1000)
DEEP_AND_LONG = {
    "100 NOT": "NOT " * 100 + "cpu = 1",
    "100 NOT (": "NOT (" * 99 + "host = 'a'" + ")" * 99,
    "100 parentheses": "(" * 100 + "cpu = 1" + ")" * 100,
    "AND/OR alternating, deepest last": (
        "".join("(cpu = 1 OR " if i % 2 else "(mem > 2 AND " for i in range(99)) + "host IS NULL" + ")" * 99
    ),
    "AND/OR alternating, deepest first": (
        "(" * 99 + "host IS NULL" + "".join(") AND mem > 2" if i % 2 else ") OR cpu = 1" for i in range(99))
    ),
    "NOT/AND/OR alternating": (
        "".join("NOT (cpu = 1 OR " if i % 2 else "NOT (mem > 2 AND " for i in range(50)) + "host IS NULL" + ")" * 50
    ),
    "1400 OR": "''=''OR" * 1400 + "''=''",
    "1200 AND": "''=''AND" * 1200 + "(mem > 0)",
    "40 levels of 9 items": (
        "".join("(" + "cpu = 1 OR " * 7 + "host = 'a' AND (" for _ in range(40)) + "mem = 3" + "))" * 40
    ),
}


@pytest.mark.parametrize("text", DEEP_AND_LONG.values(), ids=DEEP_AND_LONG.keys())
def test_deep_and_long_expressions_run_on_both_databases(populated, text):
    assert len(text) <= property_language.MAX_LENGTH
    check_same_selection(populated, text)


INJECTIONS = [
    "1=1; DROP TABLE jobs",
    "host = 'a'; DROP TABLE jobs; --",
    "host = 'x' OR 1=1 --",
    "host = 'x' /* */ OR 1=1",
    "cpu = 1 UNION SELECT job_id FROM jobs",
    "host IN (SELECT job_user FROM jobs)",
    "pg_sleep(1) IS NULL",
    "host = 'a' || (DROP TABLE jobs)",
    "`host\"; DROP TABLE jobs; --` = 1",
    "\"resources\".\"host\" = 'a'",
    "host = $1",
    "cpu = 1 + 1",
    "host = 'a' ESCAPE '!'",
    "jobs = 1",
    "host = 'unterminated",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_refused(populated, text):
    db, _, _ = populated
    with pytest.raises(ExpressionError):
        resources.select(db, expression=text)
    assert "jobs" in db.get_tables()
    assert len(resources.select(db)) == ROW_COUNT  # the connection is still usable


@pytest.mark.parametrize("value", ["'; DROP TABLE jobs; --", "x' OR '1'='1", "\\'; SELECT 1; --"])
def test_hostile_values_are_only_values(populated, value):
    db, _, _ = populated
    quoted = "'" + value.replace("'", "''") + "'"
    assert resources.select(db, expression=f"host = {quoted} OR label LIKE {quoted}") == []
    assert "jobs" in db.get_tables()
