r"""Property expressions: the small, safe SQL-WHERE-like language of ``-p``, ``{...}`` and ``--sql``.

Users select resources (``oarsub -p``, the ``{...}`` part of ``oarsub -l``, ``oarnodes --sql``,
``oarnodesetting --sql``) and jobs (``oarstat``, ``oardel``, ``oarhold``, ``oarresume`` with
``--sql``) with expressions written like an SQL ``WHERE`` clause::

    cluster='azur'
    gpu_model IN ('A100', 'H100') AND mem >= 64000
    host LIKE 'node-1%' AND NOT (deploy = 'YES')
    gpu IS NOT NULL OR switch <> 'sw3'
    cpu BETWEEN 1 AND 4

OAR 3 pasted these strings into its SQL queries, so a user could read any table or stall the
scheduler. Here an expression is *parsed* (by an LALR parser built with lark) into a small
tree, checked against the known columns, and then either compiled to SQL where every value
is a bound parameter (:func:`to_sql`) or evaluated in Python by the scheduler
(:func:`compile_predicate`); both give the same answer.

What is accepted
================

* **Names** of columns (resource properties, or job fields for the job commands):
  ``[A-Za-z_][A-Za-z0-9_]*``, case-sensitive, that are not keywords. A name may be
  backquoted as MySQL users write it (```cpu```); a backquoted name may be a keyword
  (```in```) but must still be made of letters, digits and ``_``. A name that is not a
  column of the table is refused (``unknown property 'foo'; known properties: ...``).
* **Numbers**: integers (``42``, ``-3``; 64-bit signed range) and decimals (``2.5``,
  ``-.5``, ``1.``). No exponent (``1e5``), hexadecimal or other forms.
* **Strings** in single quotes (``'azur'``, a quote is doubled: ``'it''s'``) or in double
  quotes (``"azur"``, MySQL heritage of OAR: double quotes make a *string*, not a name;
  ``""`` inside is a double quote). Backslash is an ordinary character in strings (as in
  standard SQL); it only has a meaning inside LIKE patterns. A string may not contain
  the NUL character.
* ``TRUE`` and ``FALSE`` (the numbers 1 and 0).
* **Predicates**, where an operand is a name or a value:

  - ``a = b``, ``a == b``, ``a != b``, ``a <> b``, ``a < b``, ``a <= b``, ``a > b``,
    ``a >= b`` (``1=1`` is allowed);
  - ``a [NOT] IN (value, ...)`` (values only, at least one);
  - ``a [NOT] LIKE 'pattern'``: ``%`` matches any run of characters, ``_`` exactly one,
    a backslash makes the next character literal (``'50\%'``). LIKE is case-sensitive;
  - ``a IS NULL``, ``a IS NOT NULL``;
  - ``a [NOT] BETWEEN value AND value`` (bounds included, same as ``a >= lo AND a <= hi``).

* ``NOT``, ``AND``, ``OR`` with the SQL precedence (``NOT`` binds tighter than ``AND``,
  which binds tighter than ``OR``) and parentheses. Keywords are case-insensitive.

Values are converted to the type of the column they are compared with: ``cpu = '3'`` is
``cpu = 3`` for a numeric ``cpu``; ``cluster = 3`` is ``cluster = '3'`` for a text
``cluster`` (a number keeps its spelling: ``version = 1.10`` compares with ``'1.10'``).
A text that is not a number compared with a numeric column is refused
(``property 'cpu' is numeric: cannot compare it with 'abc'``), and so is a comparison
between a numeric and a text column. Comparing two values follows the same rule: two texts
compare as texts, otherwise both must be numbers. A numeric column may be used with LIKE
(its decimal text is matched); a ``float`` column may not.

Comparisons follow SQL: a comparison with a missing value (NULL) is *unknown*, ``NOT``
unknown is unknown, and a row is selected only when the whole expression is true (use
``IS NULL`` to select missing values; ``x = NULL`` is refused with that hint). Texts
compare by Unicode code point (``'B' < 'a'``).

What is refused
===============

Everything else, with an :class:`~oar_appliance.errors.ExpressionError` whose message names
the offending token and its column (the 1-based character position in the expression):
``;`` and anything after it (``unexpected ';' at column 4``), comments (``--``, ``/* */``,
``#``), sub-queries (``SELECT``), function calls (``pg_sleep(10)``, ``lower(x)``),
arithmetic (``+ - * / %`` outside a number's sign), ``||``, placeholders (``?``, ``$1``,
``:x``), ``NULL`` as a value, ``ESCAPE``, other SQL keywords and operators, an empty
expression, an expression longer than 10,000 characters, and nesting deeper than 100
levels (parentheses, or NOT/AND/OR).

The tree
========

:func:`parse` returns an immutable tree of small frozen dataclasses:

* operands: :class:`Column` ``(name)`` and :class:`Literal` ``(value)`` (``int``, ``float``
  or ``str``);
* predicates: :class:`Compare` ``(op, left, right)`` with ``op`` one of ``= != < <= > >=``,
  :class:`In` ``(operand, values, negated)``, :class:`Like` ``(operand, pattern, negated)``,
  :class:`IsNull` ``(operand, negated)``, :class:`Between` ``(operand, low, high, negated)``;
* logic: :class:`And` ``(items)``, :class:`Or` ``(items)`` (tuples of two or more, flattened),
  :class:`Not` ``(item)``.

Positions (``at``) and number spellings are kept for messages and conversions but take no
part in equality.

SQL output
==========

:func:`to_sql` returns ``(sql, params)`` for ``sqlite`` (``?`` placeholders) or
``postgresql`` (``%s`` placeholders, psycopg 3). Column names are double-quoted; *no* value
of the expression ever appears in the SQL text. Dialect notes:

* SQLite: LIKE is case-sensitive only if the connection runs
  ``PRAGMA case_sensitive_like = ON`` (the project's connections do). Text comparisons
  carry ``COLLATE BINARY`` (code point order whatever the column's declared collation).
* PostgreSQL: every parameter except the LIKE pattern is cast (``CAST(%s AS BIGINT)``,
  ``DOUBLE PRECISION`` or ``TEXT``) so that two parameters compare and psycopg's choice of
  types never matters; text comparisons carry ``COLLATE "C"`` (code point order in a UTF-8
  database, whatever the database's locale). ``ESCAPE '\'`` needs
  ``standard_conforming_strings = on`` (the default since PostgreSQL 9.1).
* Both: comparing an integer with a decimal goes through double precision in PostgreSQL
  and is exact in SQLite and Python; results may differ only for integers beyond 2**53.

API
===

``parse(text) -> Expr``, ``columns_of(expr) -> frozenset[str]``,
``validate(expr, columns, what="property")``, ``to_sql(expr, columns, dialect) -> (sql,
params)``, ``compile_predicate(expr, columns) -> row -> bool`` and
``evaluate(expr, columns, row) -> bool``. ``columns`` maps each column name to its kind:
``"int"``, ``"float"`` or ``"str"``. All functions are pure.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

from lark import Lark, Token, Transformer
from lark.lexer import Lexer
from lark.exceptions import UnexpectedInput, UnexpectedToken

from oar_appliance.errors import ExpressionError

__all__ = [
    "MAX_LENGTH",
    "MAX_DEPTH",
    "KINDS",
    "Column",
    "Literal",
    "Compare",
    "In",
    "Like",
    "IsNull",
    "Between",
    "And",
    "Or",
    "Not",
    "Expr",
    "Operand",
    "parse",
    "columns_of",
    "validate",
    "to_sql",
    "compile_predicate",
    "evaluate",
]

#: longest expression accepted, in characters
MAX_LENGTH = 10_000
#: deepest nesting accepted: parentheses, and NOT/AND/OR levels of the tree
MAX_DEPTH = 100
#: the column kinds understood by validate, to_sql and compile_predicate
KINDS = ("int", "float", "str")

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1


# ----------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Column:
    """A column name (a resource property or a job field)."""

    name: str
    at: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Literal:
    """A value: ``int``, ``float`` or ``str`` (TRUE/FALSE are 1/0).

    ``spelling`` is how a number was written (``1.10``), used when it is compared with a
    text column.
    """

    value: int | float | str
    spelling: str | None = field(default=None, compare=False, repr=False)
    at: int | None = field(default=None, compare=False, repr=False)


Operand = Union[Column, Literal]


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``; ``op`` is one of ``= != < <= > >=``."""

    op: str
    left: Operand
    right: Operand


@dataclass(frozen=True, slots=True)
class In:
    """``operand [NOT] IN (values...)``."""

    operand: Operand
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Like:
    """``operand [NOT] LIKE pattern`` (pattern is the decoded string, backslash escapes)."""

    operand: Operand
    pattern: str
    negated: bool = False


@dataclass(frozen=True, slots=True)
class IsNull:
    """``operand IS [NOT] NULL``."""

    operand: Operand
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Between:
    """``operand [NOT] BETWEEN low AND high`` (bounds included)."""

    operand: Operand
    low: Literal
    high: Literal
    negated: bool = False


@dataclass(frozen=True, slots=True)
class And:
    """Conjunction of two or more expressions."""

    items: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Disjunction of two or more expressions."""

    items: tuple["Expr", ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Negation."""

    item: "Expr"


Expr = Union[Compare, In, Like, IsNull, Between, And, Or, Not]
_PREDICATES = (Compare, In, Like, IsNull, Between)


# ----------------------------------------------------------------------------- lexer


def _show(text: str, limit: int = 40) -> str:
    """A token as shown in messages: quoted, escaped, shortened."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


_KEYWORDS = {
    "AND": "_AND",
    "OR": "_OR",
    "NOT": "_NOT",
    "IN": "_IN",
    "LIKE": "_LIKE",
    "IS": "_IS",
    "NULL": "_NULL",
    "BETWEEN": "_BETWEEN",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
}
#: words that cannot name a column unquoted (lowercase), e.g. refused as property names
KEYWORDS = frozenset(word.lower() for word in _KEYWORDS)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]+")
_SPACES = re.compile(r"[ \t\r\n]*")
_WHITESPACE = " \t\r\n"
_DIGITS = "0123456789"
_CMP = {"<=": "<=", ">=": ">=", "<>": "!=", "!=": "!=", "==": "=", "=": "=", "<": "<", ">": ">"}
_SIMPLE = {"(": "_LPAR", ")": "_RPAR", ",": "_COMMA"}
#: token types after which a '-' is an operator, not a sign
_OPERAND_TYPES = frozenset({"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "_NULL", "_RPAR"})


def _token(type_: str, value: str, start: int, end: int) -> Token:
    return Token(type_, value, start, 1, start + 1, 1, end + 1, end)


def _number_value(spelling: str, col: int) -> int | float:
    """The value of a number as written (sign included); refuses what SQL engines cannot bind."""
    negative = spelling.startswith("-")
    digits = spelling[1:] if negative else spelling
    if "." in digits:
        value = float(spelling)
        if not math.isfinite(value):
            raise ExpressionError(f"number out of range: {_show(spelling)} at column {col}")
        return value
    if len(digits.lstrip("0")) > 19:
        raise ExpressionError(f"integer out of range: {_show(spelling)} at column {col}")
    value = int(spelling)
    if not _INT_MIN <= value <= _INT_MAX:
        raise ExpressionError(f"integer out of range: {_show(spelling)} at column {col}")
    return value


def _lex(text: str) -> Iterator[Token]:
    """Tokens of ``text``, lazily (so the first problem is the one reported).

    Refused constructs that can be told from the characters alone raise here with a
    precise message; the rest reach the parser as tokens it does not expect.
    """
    n = len(text)
    i = 0
    depth = 0
    previous = ""
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        col = i + 1
        two = text[i : i + 2]

        if c == "'" or c == '"':
            parts = []
            j = i + 1
            while True:
                k = text.find(c, j)
                if k < 0:
                    raise ExpressionError(f"unterminated string starting at column {col}")
                parts.append(text[j:k])
                if text.startswith(c, k + 1):
                    parts.append(c)
                    j = k + 2
                    continue
                break
            value = "".join(parts)
            if "\x00" in value:
                raise ExpressionError(f"NUL character in the string at column {col}")
            tok = _token("STRING", value, i, k + 1)
            i = k + 1
        elif c == "`":
            k = text.find("`", i + 1)
            if k < 0:
                raise ExpressionError(f"unterminated quoted name starting at column {col}")
            name = text[i + 1 : k]
            if not _IDENT.fullmatch(name):
                raise ExpressionError(
                    f"invalid quoted name {_show(text[i : k + 1])} at column {col}: "
                    "names are made of letters, digits and '_'"
                )
            _refuse_call(text, k + 1, name, col)
            tok = _token("NAME", name, i, k + 1)
            i = k + 1
        elif (m := _IDENT.match(text, i)) is not None:
            word = m.group()
            upper = word.upper()
            if upper == "SELECT":
                raise ExpressionError(f"sub-queries are not allowed: {_show(word)} at column {col}")
            type_ = _KEYWORDS.get(upper)
            if type_ is None:
                _refuse_call(text, m.end(), word, col)
                type_ = "NAME"
            tok = _token(type_, word, i, m.end())
            i = m.end()
        elif two in ("--", "/*") or c == "#":
            raise ExpressionError(f"comments are not allowed: {_show(two if c != '#' else c)} at column {col}")
        elif c in _DIGITS or c == "." or (c == "-" and previous not in _OPERAND_TYPES):
            start = i
            j = i
            if c == "-":
                j = _SPACES.match(text, i + 1).end()
            m = _NUMBER.match(text, j)
            if m is None:
                if c == "-":
                    raise ExpressionError(f"arithmetic is not allowed: '-' at column {col}")
                raise ExpressionError(f"unexpected {_show(c)} at column {col}")
            end = m.end()
            tail = _NUMBER_TAIL.match(text, end)
            if tail is not None:
                raise ExpressionError(f"malformed number {_show(text[j : tail.end()])} at column {j + 1}")
            spelling = ("-" if c == "-" else "") + m.group()
            _number_value(spelling, col)  # range check, here so the position is right
            tok = _token("NUMBER", spelling, start, end)
            i = end
        elif two == "||":
            raise ExpressionError(f"string concatenation '||' is not allowed at column {col}")
        elif c in "+-*/%":
            raise ExpressionError(f"arithmetic is not allowed: {_show(c)} at column {col}")
        elif c == ";":
            raise ExpressionError(f"unexpected ';' at column {col}: only one expression is allowed")
        elif two in _CMP or c in _CMP:
            spelled = two if two in _CMP else c
            tok = _token("CMP", _CMP[spelled], i, i + len(spelled))
            i += len(spelled)
        elif c in _SIMPLE:
            if c == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExpressionError(
                        f"expression nested too deeply at column {col}: at most {MAX_DEPTH} levels"
                    )
            elif c == ")":
                depth -= 1
            tok = _token(_SIMPLE[c], c, i, i + 1)
            i += 1
        else:
            raise ExpressionError(f"unexpected character {_show(c)} at column {col}")
        previous = tok.type
        yield tok


def _refuse_call(text: str, end: int, name: str, col: int) -> None:
    """A name followed by '(' is a function call: refuse it by name."""
    j = _SPACES.match(text, end).end()
    if text.startswith("(", j):
        raise ExpressionError(f"function calls are not allowed: {name} at column {col}")


class _LarkLexer(Lexer):
    """Adapter making :func:`_lex` lark's lexer (lark's interface 0 for custom lexers)."""

    def __init__(self, lexer_conf: Any) -> None:
        pass

    def lex(self, text: str) -> Iterator[Token]:  # type: ignore[override]
        return _lex(text)


# ----------------------------------------------------------------------------- grammar

_GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr                                  -> not_
         | _LPAR or_expr _RPAR
         | predicate
?predicate: operand CMP operand                           -> compare
          | operand _IN _LPAR values _RPAR                -> in_
          | operand _NOT _IN _LPAR values _RPAR           -> not_in
          | operand _LIKE STRING                          -> like
          | operand _NOT _LIKE STRING                     -> not_like
          | operand _IS _NULL                             -> is_null
          | operand _IS _NOT _NULL                        -> is_not_null
          | operand _BETWEEN literal _AND literal         -> between
          | operand _NOT _BETWEEN literal _AND literal    -> not_between
values: literal (_COMMA literal)*
?operand: NAME                                            -> column
        | literal
literal: NUMBER | STRING | TRUE | FALSE
%declare NAME NUMBER STRING CMP TRUE FALSE _AND _OR _NOT _IN _LIKE _IS _NULL _BETWEEN _LPAR _RPAR _COMMA
"""


def _flatten(cls: type, items: Sequence[Expr]) -> tuple[Expr, ...]:
    out: list[Expr] = []
    for item in items:
        if isinstance(item, cls):
            out.extend(item.items)  # type: ignore[attr-defined]
        else:
            out.append(item)
    return tuple(out)


class _Builder(Transformer):
    """Builds the tree while the LALR parser reduces (no recursion, whatever the depth)."""

    def or_expr(self, items: list) -> Or:
        return Or(_flatten(Or, items))

    def and_expr(self, items: list) -> And:
        return And(_flatten(And, items))

    def not_(self, items: list) -> Not:
        return Not(items[0])

    def compare(self, items: list) -> Compare:
        left, op, right = items
        return Compare(str(op), left, right)

    def in_(self, items: list) -> In:
        return In(items[0], tuple(items[1]))

    def not_in(self, items: list) -> In:
        return In(items[0], tuple(items[1]), negated=True)

    def like(self, items: list) -> Like:
        return self._like(items, False)

    def not_like(self, items: list) -> Like:
        return self._like(items, True)

    @staticmethod
    def _like(items: list, negated: bool) -> Like:
        operand, pattern = items
        _check_pattern(str(pattern), pattern.column)
        return Like(operand, str(pattern), negated)

    def is_null(self, items: list) -> IsNull:
        return IsNull(items[0])

    def is_not_null(self, items: list) -> IsNull:
        return IsNull(items[0], negated=True)

    def between(self, items: list) -> Between:
        return Between(items[0], items[1], items[2])

    def not_between(self, items: list) -> Between:
        return Between(items[0], items[1], items[2], negated=True)

    def values(self, items: list) -> list:
        return items

    def column(self, items: list) -> Column:
        tok = items[0]
        return Column(str(tok), at=tok.column)

    def literal(self, items: list) -> Literal:
        tok = items[0]
        if tok.type == "NUMBER":
            return Literal(_number_value(str(tok), tok.column), spelling=str(tok), at=tok.column)
        if tok.type == "STRING":
            return Literal(str(tok), at=tok.column)
        return Literal(1 if tok.type == "TRUE" else 0, at=tok.column)


def _check_pattern(pattern: str, col: int | None) -> None:
    """Refuse a LIKE pattern ending with a lone backslash (PostgreSQL errors on it at run time)."""
    i = 0
    n = len(pattern)
    while i < n:
        if pattern[i] == "\\":
            if i + 1 >= n:
                where = f" (pattern at column {col})" if col else ""
                raise ExpressionError(
                    f"LIKE pattern ends with the escape character '\\'{where}: write '\\\\' for a backslash"
                )
            i += 2
        else:
            i += 1


_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer=_LarkLexer,
    transformer=_Builder(),
    maybe_placeholders=False,
)

_EXPECTED_ORDER = [
    ("NAME", "a name"),
    ("NUMBER", "a number"),
    ("STRING", "a string"),
    ("TRUE", "TRUE"),
    ("FALSE", "FALSE"),
    ("CMP", "a comparison operator"),
    ("_IN", "IN"),
    ("_LIKE", "LIKE"),
    ("_IS", "IS"),
    ("_BETWEEN", "BETWEEN"),
    ("_NOT", "NOT"),
    ("_NULL", "NULL"),
    ("_AND", "AND"),
    ("_OR", "OR"),
    ("_LPAR", "'('"),
    ("_RPAR", "')'"),
    ("_COMMA", "','"),
    ("$END", "the end"),
]


def _expected(names: set[str]) -> str:
    shown = [label for name, label in _EXPECTED_ORDER if name in names]
    if not shown:
        return ""
    if len(shown) == 1:
        return f"; expected {shown[0]}"
    return f"; expected {', '.join(shown[:-1])} or {shown[-1]}"


def _syntax_error(text: str, err: UnexpectedInput) -> ExpressionError:
    if isinstance(err, UnexpectedToken):
        tok = err.token
        try:
            accepted = err.accepts or err.expected
        except Exception:  # pragma: no cover - the hint is a nicety, never a failure
            accepted = err.expected
        expected = _expected(set(accepted))
        if tok.type == "$END":
            return ExpressionError(
                f"unexpected end of expression at column {len(text.rstrip()) + 1}{expected}"
            )
        start = tok.start_pos if tok.start_pos is not None else 0
        end = tok.end_pos if tok.end_pos is not None else start + len(tok)
        message = f"unexpected {_show(text[start:end])} at column {start + 1}{expected}"
        if tok.type == "_NULL":
            message += " (compare with NULL using IS NULL or IS NOT NULL)"
        return ExpressionError(message)
    column = getattr(err, "column", "?")
    return ExpressionError(f"malformed expression at column {column}")


def _depth(expr: Expr) -> int:
    """Levels of NOT/AND/OR above the deepest predicate (iterative: the tree may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(expr, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (And, Or)):
            stack.extend((item, d + 1) for item in node.items)
        elif isinstance(node, Not):
            stack.append((node.item, d + 1))
        elif d > deepest:
            deepest = d
    return deepest


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse(text: str) -> Expr:
    """Parse a property expression into its tree; :class:`ExpressionError` if refused.

    Only the syntax is checked here; :func:`validate` checks names and types.
    """
    if not isinstance(text, str):
        raise ExpressionError("an expression must be a text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"expression is too long: {len(text)} characters, at most {MAX_LENGTH}"
        )
    if not text.strip(_WHITESPACE):
        raise ExpressionError("empty expression")
    surrogate = _SURROGATE.search(text)
    if surrogate is not None:
        raise ExpressionError(
            f"invalid character {_show(surrogate.group())} at column {surrogate.start() + 1}"
        )
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    if _depth(tree) > MAX_DEPTH:
        raise ExpressionError(f"expression nested too deeply: at most {MAX_DEPTH} levels of NOT/AND/OR")
    return tree


# ----------------------------------------------------------------------------- names and types


def _operands(expr: Expr) -> Iterator[Operand]:
    stack: list[Any] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.items))
        elif isinstance(node, Not):
            stack.append(node.item)
        elif isinstance(node, Compare):
            yield node.left
            yield node.right
        elif isinstance(node, In):
            yield node.operand
            yield from node.values
        elif isinstance(node, Between):
            yield node.operand
            yield node.low
            yield node.high
        elif isinstance(node, (Like, IsNull)):
            yield node.operand
        else:
            raise TypeError(f"not an expression node: {node!r}")


def columns_of(expr: Expr) -> frozenset[str]:
    """The column names an expression uses."""
    return frozenset(op.name for op in _operands(expr) if isinstance(op, Column))


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


_NUMERIC_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


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


def _like_operand(op: Operand, columns: Mapping[str, str], what: str) -> Column | str:
    if isinstance(op, Column):
        if _kind(op, columns, what) == "float":
            raise ExpressionError(
                f"LIKE cannot be used on the decimal {what} '{op.name}': compare it with numbers"
            )
        return op
    return _as_text(op)


def _walk(expr: Expr) -> Iterator[Any]:
    stack: list[Any] = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.items))
        elif isinstance(node, Not):
            stack.append(node.item)


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
            _like_operand(node.operand, columns, what)
            _check_pattern(node.pattern, None)
        elif isinstance(node, IsNull):
            if isinstance(node.operand, Column):
                _kind(node.operand, columns, what)
        elif not isinstance(node, (And, Or, Not)):
            raise TypeError(f"not an expression node: {node!r}")


# ----------------------------------------------------------------------------- SQL

_DIALECTS = {"sqlite": "?", "postgresql": "%s"}
_COLLATE = {"sqlite": " COLLATE BINARY", "postgresql": ' COLLATE "C"'}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Sql:
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
        if isinstance(node, And):
            return "(" + " AND ".join(self.build(item) for item in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.build(item) for item in node.items) + ")"
        if isinstance(node, Not):
            inner = self.build(node.item)
            if isinstance(node.item, _PREDICATES):
                inner = "(" + inner + ")"
            return "(NOT " + inner + ")"
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
            op = _like_operand(node.operand, self.columns, self.what)
            _check_pattern(node.pattern, None)
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
            return self._and([self.build(item) for item in node.items])
        if isinstance(node, Or):
            return self._or([self.build(item) for item in node.items])
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
    def _and(fns: list[_Fn]) -> _Fn:
        def and_(row: Mapping[str, Any]) -> bool | None:
            unknown = False
            for fn in fns:
                r = fn(row)
                if r is False:
                    return False
                if r is None:
                    unknown = True
            return None if unknown else True

        return and_

    @staticmethod
    def _or(fns: list[_Fn]) -> _Fn:
        def or_(row: Mapping[str, Any]) -> bool | None:
            unknown = False
            for fn in fns:
                r = fn(row)
                if r is True:
                    return True
                if r is None:
                    unknown = True
            return None if unknown else False

        return or_

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
        op = _like_operand(node.operand, self.columns, self.what)
        _check_pattern(node.pattern, None)
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
