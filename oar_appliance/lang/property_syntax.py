"""Reading a property expression: the tree, the lexer, the grammar and :func:`parse`.

The language itself is documented in :mod:`oar_appliance.lang.properties`, the public
facade; :mod:`oar_appliance.lang.property_compile` turns the tree into SQL or a Python
predicate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence, Union

from lark import Lark, Token, Transformer
from lark.lexer import Lexer
from lark.exceptions import UnexpectedInput, UnexpectedToken

from oar_appliance.errors import ExpressionError

#: longest expression accepted, in characters
MAX_LENGTH = 10_000
#: deepest nesting accepted: parentheses, and NOT/AND/OR levels of the tree
MAX_DEPTH = 100

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


# ----------------------------------------------------------------------------- walking the tree


def _walk(expr: Expr) -> Iterator[Any]:
    """Every node of ``expr``, parents first, left to right (iterative: the tree may be deep)."""
    stack: list[Any] = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (And, Or)):
            stack.extend(reversed(node.items))
        elif isinstance(node, Not):
            stack.append(node.item)


def _operands(expr: Expr) -> Iterator[Operand]:
    for node in _walk(expr):
        if isinstance(node, Compare):
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
        elif not isinstance(node, (And, Or, Not)):
            raise TypeError(f"not an expression node: {node!r}")


def columns_of(expr: Expr) -> frozenset[str]:
    """The column names an expression uses."""
    return frozenset(op.name for op in _operands(expr) if isinstance(op, Column))
