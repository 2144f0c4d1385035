"""Turning a property expression tree into SQL (:func:`to_sql`) or a Python predicate
(:func:`compile_predicate`), after checking its names and types (:func:`validate`).

The language and the SQL dialect notes are documented in
:mod:`oar_appliance.lang.properties`, the public facade; the tree comes from
:mod:`oar_appliance.lang.property_syntax`.
"""

from __future__ import annotations

import operator
import re
from typing import Any, Callable, Mapping, Sequence, Union

from oar_appliance.errors import ExpressionError
from oar_appliance.lang.property_syntax import (
    _NUMBER,
    And,
    Between,
    Column,
    Compare,
    Expr,
    In,
    IsNull,
    Like,
    Literal,
    Not,
    Operand,
    Or,
    _check_pattern,
    _number_value,
    _show,
    _walk,
)

#: the column kinds understood by validate, to_sql and compile_predicate
KINDS = ("int", "float", "str")

# ----------------------------------------------------------------------------- names and types


def _plural(what: str) -> str:
    if what.endswith("y"):
        return what[:-1] + "ies"
    return what if what.endswith("s") else what + "s"


def _kind(col: Column, columns: Mapping[str, str], what: str) -> str:
    kind = columns.get(col.name)
    if kind is None:
        hint = ""
        folded = [name for name in columns if name.lower() == col.name.lower()]
        if len(folded) == 1:
            hint = f" (did you mean '{folded[0]}'?)"
        known = ", ".join(sorted(columns)) or "none"
        raise ExpressionError(f"unknown {what} '{col.name}'{hint}; known {_plural(what)}: {known}")
    if kind not in KINDS:
        raise ValueError(f"column {col.name!r} has kind {kind!r}, not one of {KINDS}")
    return kind


def _at(lit: Literal) -> str:
    return f" at column {lit.at}" if lit.at else ""


_NUMERIC_TEXT = re.compile(r"-?(?:" + _NUMBER.pattern + ")")


def _as_number(lit: Literal, refusal: str) -> int | float:
    """A value as a number; a text that is not one is refused with ``refusal`` + the text."""
    value = lit.value
    if not isinstance(value, str):
        return value
    if _NUMERIC_TEXT.fullmatch(value):
        return _number_value(value, lit.at or 0)
    raise ExpressionError(f"{refusal} {_show(value)}{_at(lit)}")


def _as_text(lit: Literal) -> str:
    value = lit.value
    if isinstance(value, str):
        return value
    return lit.spelling if lit.spelling is not None else str(value)


def _unify(
    operands: Sequence[Operand], columns: Mapping[str, str], what: str
) -> tuple[str, list[Column | int | float | str]]:
    """The domain ("num" or "str") of a predicate and its operands converted to it.

    Columns stay :class:`Column`; values become ``int``/``float`` (num) or ``str``.
    """
    cols = [(op, _kind(op, columns, what)) for op in operands if isinstance(op, Column)]
    lits = [op for op in operands if isinstance(op, Literal)]
    if cols:
        text_cols = [c.name for c, k in cols if k == "str"]
        num_cols = [c.name for c, k in cols if k != "str"]
        if text_cols and num_cols:
            raise ExpressionError(
                f"cannot compare numeric {what} '{num_cols[0]}' with text {what} '{text_cols[0]}'"
            )
        if text_cols:
            return "str", [op if isinstance(op, Column) else _as_text(op) for op in operands]
        to_float = any(k == "float" for _, k in cols)
        against = f"{what} '{num_cols[0]}' is numeric: cannot compare it with"
        out: list[Column | int | float | str] = []
        for op in operands:
            if isinstance(op, Column):
                out.append(op)
            else:
                number = _as_number(op, against)
                out.append(float(number) if to_float else number)
        return "num", out
    if all(isinstance(lit.value, str) for lit in lits):
        return "str", [lit.value for lit in lits]  # type: ignore[misc]
    first_number = next(lit for lit in lits if not isinstance(lit.value, str))
    against = f"cannot compare the number {_as_text(first_number)} with the text"
    numbers = [_as_number(lit, against) for lit in lits]
    if any(isinstance(v, float) for v in numbers):
        numbers = [float(v) for v in numbers]
    return "num", numbers  # type: ignore[return-value]


def _like_operand(node: Like, columns: Mapping[str, str], what: str) -> Column | str:
    """The checked subject of a LIKE (a non-decimal column, or a value as text); checks the pattern."""
    op = node.operand
    if isinstance(op, Column):
        if _kind(op, columns, what) == "float":
            raise ExpressionError(
                f"LIKE cannot be used on the decimal {what} '{op.name}': compare it with numbers"
            )
    _check_pattern(node.pattern, None)
    return op if isinstance(op, Column) else _as_text(op)


def validate(expr: Expr, columns: Mapping[str, str], what: str = "property") -> None:
    """Check that every name is a column and every comparison is well typed.

    ``columns`` maps names to kinds (``"int"``, ``"float"``, ``"str"``); ``what`` names
    them in messages (``"property"`` for resources, ``"job field"`` for jobs). Raises
    :class:`ExpressionError`; a kind that is not one of :data:`KINDS` is a programming
    error (:class:`ValueError`).
    """
    for node in _walk(expr):
        if isinstance(node, Compare):
            _unify((node.left, node.right), columns, what)
        elif isinstance(node, In):
            _unify((node.operand, *node.values), columns, what)
        elif isinstance(node, Between):
            _unify((node.operand, node.low, node.high), columns, what)
        elif isinstance(node, Like):
            _like_operand(node, columns, what)
        elif isinstance(node, IsNull):
            if isinstance(node.operand, Column):
                _kind(node.operand, columns, what)
        elif not isinstance(node, (And, Or, Not)):
            raise TypeError(f"not an expression node: {node!r}")


# ----------------------------------------------------------------------------- SQL

_DIALECTS = {"sqlite": "?", "postgresql": "%s"}
_COLLATE = {"sqlite": " COLLATE BINARY", "postgresql": ' COLLATE "C"'}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
#: longest AND/OR chain of predicates written flat; longer ones are grouped in halves
_FLAT_CHAIN = 16


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Sql:
    """Writes one expression as SQL; ``params`` collects its bound values in order.

    SQLite's parser has a stack of 100 entries ("parser stack overflow") and refuses
    expression trees deeper than 1000 ("Expression tree is too large"): written naively,
    30 levels of AND/OR, 45 NOTs or a chain of 1000 ORs are too much, while the language
    accepts 100 levels and 10,000 characters. So NOT is pushed down to the predicates
    (exact in three-valued logic: NOT NOT x is x, De Morgan's laws hold), an AND inside an
    OR is not parenthesized, the deepest item of a chain comes first (only its opening
    parentheses wait on the parser stack) and long chains are split in halves.
    """

    def __init__(self, columns: Mapping[str, str], dialect: str, what: str) -> None:
        if dialect not in _DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}: one of {sorted(_DIALECTS)}")
        self.columns = columns
        self.dialect = dialect
        self.what = what
        self.mark = _DIALECTS[dialect]
        self.params: list[Any] = []

    def value(self, value: int | float | str) -> str:
        self.params.append(value)
        if self.dialect == "sqlite":
            return self.mark
        if isinstance(value, str):
            sql_type = "TEXT"
        elif isinstance(value, float):
            sql_type = "DOUBLE PRECISION"
        else:
            sql_type = "BIGINT"
        return f"CAST({self.mark} AS {sql_type})"

    def operand(self, op: Column | int | float | str) -> str:
        if isinstance(op, Column):
            return _quote(op.name)
        return self.value(op)

    def typed(self, operands: Sequence[Operand]) -> tuple[str, list[str]]:
        domain, typed = _unify(operands, self.columns, self.what)
        sql = [self.operand(op) for op in typed]
        if domain == "str":
            sql[0] += _COLLATE[self.dialect]
        return domain, sql

    def build(self, node: Expr) -> str:
        self.weights = _weights(node)
        return self.expr(node, False, None)

    def expr(self, node: Expr, negate: bool, parent: type | None) -> str:
        """SQL of ``node`` (of ``NOT node`` if ``negate``) as an item of an AND or OR
        ``parent`` (None: the whole condition)."""
        while isinstance(node, Not):
            node, negate = node.item, not negate
        if isinstance(node, (And, Or)):
            kind = _negated_kind(node) if negate else type(node)
            sql = self.junction(node, negate, kind)
            if parent is None or (kind is Or and parent is And):
                return "(" + sql + ")"
            return sql
        sql = self.predicate(node)
        return f"(NOT ({sql}))" if negate else sql

    def junction(self, node: And | Or, negate: bool, kind: type) -> str:
        """The items of an AND or OR (``kind``, after negation), joined."""
        items: list[tuple[Expr, bool]] = []
        pending = [(item, negate) for item in reversed(node.items)]
        while pending:
            item, neg = pending.pop()
            while isinstance(item, Not):
                item, neg = item.item, not neg
            if isinstance(item, (And, Or)) and (_negated_kind(item) if neg else type(item)) is kind:
                pending.extend((sub, neg) for sub in reversed(item.items))  # same kind: flatten
            else:
                items.append((item, neg))
        items.sort(key=lambda pair: self.weights.get(id(pair[0]), 0), reverse=True)
        parts = [(self.weights.get(id(item), 0), self.expr(item, neg, kind)) for item, neg in items]
        return _join(parts, " AND " if kind is And else " OR ")

    def predicate(self, node: Expr) -> str:
        if isinstance(node, Compare):
            _, (left, right) = self.typed((node.left, node.right))
            return f"{left} {_SQL_OPS[node.op]} {right}"
        if isinstance(node, In):
            _, (first, *rest) = self.typed((node.operand, *node.values))
            neg = "NOT " if node.negated else ""
            return f"{first} {neg}IN ({', '.join(rest)})"
        if isinstance(node, Between):
            _, (first, low, high) = self.typed((node.operand, node.low, node.high))
            neg = "NOT " if node.negated else ""
            return f"{first} {neg}BETWEEN {low} AND {high}"
        if isinstance(node, Like):
            op = _like_operand(node, self.columns, self.what)
            if isinstance(op, Column):
                left = _quote(op.name)
                if self.columns[op.name] != "str":
                    left = f"CAST({left} AS TEXT)"
            else:
                left = self.value(op)
            if self.dialect == "postgresql":
                left += _COLLATE["postgresql"]
            self.params.append(node.pattern)
            neg = "NOT " if node.negated else ""
            return f"{left} {neg}LIKE {self.mark} ESCAPE '\\'"
        if isinstance(node, IsNull):
            op = node.operand
            if isinstance(op, Column):
                _kind(op, self.columns, self.what)
                left = _quote(op.name)
            else:
                left = self.value(op.value)
            return f"{left} IS {'NOT ' if node.negated else ''}NULL"
        raise TypeError(f"not an expression node: {node!r}")


def _negated_kind(node: And | Or) -> type:
    return Or if isinstance(node, And) else And


def _weights(expr: Expr) -> dict[int, int]:
    """AND/OR nesting depth of every AND/OR node of ``expr`` (by ``id``; NOT is not counted)."""
    weights: dict[int, int] = {}

    def weigh(node: Expr) -> int:
        while isinstance(node, Not):
            node = node.item
        if not isinstance(node, (And, Or)):
            return 0
        weight = weights[id(node)] = 1 + max(weigh(item) for item in node.items)
        return weight

    weigh(expr)
    return weights


def _join(parts: Sequence[tuple[int, str]], word: str) -> str:
    """Join the SQL of chain items (weight, sql), heaviest first, so that the result stays
    shallow: flat when short and made of predicates only, else as two halves (the left one
    bare, the right one parenthesized if it has several items)."""
    if len(parts) == 1:
        return parts[0][1]
    if len(parts) <= _FLAT_CHAIN and all(weight == 0 for weight, _ in parts):
        return word.join(sql for _, sql in parts)
    middle = (len(parts) + 1) // 2
    left, right = _join(parts[:middle], word), _join(parts[middle:], word)
    if len(parts) - middle > 1:
        right = "(" + right + ")"
    return left + word + right


def to_sql(
    expr: Expr, columns: Mapping[str, str], dialect: str, *, what: str = "property"
) -> tuple[str, list[Any]]:
    """Compile to an SQL condition and its parameters, for ``WHERE (...)``.

    ``dialect`` is ``"sqlite"`` (``?`` placeholders) or ``"postgresql"`` (``%s``, psycopg
    3). The expression is validated on the way (:class:`ExpressionError`); no value of the
    expression ever appears in the SQL text, only column names (double-quoted), keywords,
    operators and placeholders. The text contains no ``%`` besides the placeholders.
    """
    sql = _Sql(columns, dialect, what)
    validate(expr, columns, what)  # first, so that errors come in the order of the text
    text = sql.build(expr)
    return text, sql.params


# ----------------------------------------------------------------------------- Python

_PY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

#: a compiled node: row -> True / False / None (unknown)
_Fn = Callable[[Mapping[str, Any]], Union[bool, None]]


def _like_matcher(pattern: str) -> Callable[[str], bool]:
    """A LIKE matcher in linear-ish time (no backtracking regex on ``%``).

    The pattern is split on ``%`` into fixed-length segments (``_`` = any character): the
    first must match at the start, the last at the end, the others leftmost in between.
    """
    segments: list[list[str | None]] = [[]]
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            segments.append([])
        elif c == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(c)
        i += 1

    def rx(segment: list[str | None]) -> re.Pattern[str]:
        return re.compile("".join("." if ch is None else re.escape(ch) for ch in segment), re.DOTALL)

    if len(segments) == 1:
        whole = rx(segments[0])
        size = len(segments[0])
        return lambda s: len(s) == size and whole.fullmatch(s) is not None

    first, last = rx(segments[0]), rx(segments[-1])
    first_len, last_len = len(segments[0]), len(segments[-1])
    middle = [rx(seg) for seg in segments[1:-1] if seg]
    minimum = sum(len(seg) for seg in segments)

    def match(s: str) -> bool:
        if len(s) < minimum or first.match(s) is None:
            return False
        tail = len(s) - last_len
        if last.fullmatch(s, tail) is None:
            return False
        pos = first_len
        for seg in middle:
            found = seg.search(s, pos, tail)
            if found is None:
                return False
            pos = found.end()
        return True

    return match


def _const(value: bool | None) -> _Fn:
    return lambda row: value


class _Py:
    def __init__(self, columns: Mapping[str, str], what: str) -> None:
        self.columns = columns
        self.what = what

    def build(self, node: Expr) -> _Fn:
        if isinstance(node, And):
            return self._junction([self.build(item) for item in node.items], decisive=False)
        if isinstance(node, Or):
            return self._junction([self.build(item) for item in node.items], decisive=True)
        if isinstance(node, Not):
            inner = self.build(node.item)

            def not_(row: Mapping[str, Any]) -> bool | None:
                r = inner(row)
                return None if r is None else not r

            return not_
        if isinstance(node, Compare):
            return self._compare(node)
        if isinstance(node, In):
            return self._in(node)
        if isinstance(node, Between):
            return self._between(node)
        if isinstance(node, Like):
            return self._like(node)
        if isinstance(node, IsNull):
            return self._is_null(node)
        raise TypeError(f"not an expression node: {node!r}")

    @staticmethod
    def _junction(fns: list[_Fn], decisive: bool) -> _Fn:
        """AND (``decisive=False``) or OR (``decisive=True``) under three-valued logic: the
        decisive value wins, else unknown if any item is unknown, else the other value."""

        def junction(row: Mapping[str, Any]) -> bool | None:
            unknown = False
            for fn in fns:
                r = fn(row)
                if r is decisive:
                    return decisive
                if r is None:
                    unknown = True
            return None if unknown else not decisive

        return junction

    def _compare(self, node: Compare) -> _Fn:
        _, (left, right) = _unify((node.left, node.right), self.columns, self.what)
        op = _PY_OPS[node.op]
        if isinstance(left, Column) and isinstance(right, Column):
            a, b = left.name, right.name

            def both(row: Mapping[str, Any]) -> bool | None:
                x, y = row[a], row[b]
                if x is None or y is None:
                    return None
                return op(x, y)

            return both
        if isinstance(left, Column):
            name, const = left.name, right

            def col_left(row: Mapping[str, Any]) -> bool | None:
                x = row[name]
                return None if x is None else op(x, const)

            return col_left
        if isinstance(right, Column):
            name, const = right.name, left

            def col_right(row: Mapping[str, Any]) -> bool | None:
                y = row[name]
                return None if y is None else op(const, y)

            return col_right
        return _const(bool(op(left, right)))

    def _in(self, node: In) -> _Fn:
        _, (first, *values) = _unify((node.operand, *node.values), self.columns, self.what)
        wanted = frozenset(values)
        negated = node.negated
        if not isinstance(first, Column):
            return _const((first in wanted) != negated)
        name = first.name

        def in_(row: Mapping[str, Any]) -> bool | None:
            x = row[name]
            if x is None:
                return None
            return (x in wanted) != negated

        return in_

    def _between(self, node: Between) -> _Fn:
        _, (first, low, high) = _unify((node.operand, node.low, node.high), self.columns, self.what)
        negated = node.negated
        if not isinstance(first, Column):
            return _const((low <= first <= high) != negated)  # type: ignore[operator]
        name = first.name

        def between(row: Mapping[str, Any]) -> bool | None:
            x = row[name]
            if x is None:
                return None
            return (low <= x <= high) != negated  # type: ignore[operator]

        return between

    def _like(self, node: Like) -> _Fn:
        op = _like_operand(node, self.columns, self.what)
        match = _like_matcher(node.pattern)
        negated = node.negated
        if not isinstance(op, Column):
            return _const(match(op) != negated)
        name = op.name
        if self.columns[name] == "str":

            def like(row: Mapping[str, Any]) -> bool | None:
                x = row[name]
                return None if x is None else match(x) != negated

            return like

        def like_number(row: Mapping[str, Any]) -> bool | None:
            x = row[name]
            return None if x is None else match(str(x)) != negated

        return like_number

    def _is_null(self, node: IsNull) -> _Fn:
        op = node.operand
        negated = node.negated
        if not isinstance(op, Column):
            return _const(negated)  # a value is never NULL
        _kind(op, self.columns, self.what)
        name = op.name

        def is_null(row: Mapping[str, Any]) -> bool:
            return (row[name] is None) != negated

        return is_null


def compile_predicate(
    expr: Expr, columns: Mapping[str, str], *, what: str = "property"
) -> Callable[[Mapping[str, Any]], bool]:
    """A Python predicate ``row -> bool`` with exactly the SQL ``WHERE`` semantics of
    :func:`to_sql`: a row (a mapping from column name to value, ``None`` for NULL) is
    selected only when the expression is true under three-valued logic.

    The expression is validated on the way (:class:`ExpressionError`).
    """
    fn = _Py(columns, what).build(expr)

    def predicate(row: Mapping[str, Any]) -> bool:
        return fn(row) is True

    return predicate


def evaluate(expr: Expr, columns: Mapping[str, str], row: Mapping[str, Any], *, what: str = "property") -> bool:
    """Whether ``row`` is selected by ``expr`` (see :func:`compile_predicate`)."""
    return compile_predicate(expr, columns, what=what)(row)
