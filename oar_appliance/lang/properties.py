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
* Both: ``NOT`` is pushed down to the predicates (``NOT (a AND b)`` is written
  ``(NOT (a)) OR (NOT (b))``, the same in three-valued logic) and the items of an AND or
  OR may be reordered and regrouped, so that SQLite's parser (a stack of 100 entries,
  expression trees at most 1000 deep) accepts every expression the language accepts.

API
===

``parse(text) -> Expr``, ``columns_of(expr) -> frozenset[str]``,
``validate(expr, columns, what="property")``, ``to_sql(expr, columns, dialect) -> (sql,
params)``, ``compile_predicate(expr, columns) -> row -> bool`` and
``evaluate(expr, columns, row) -> bool``. ``columns`` maps each column name to its kind:
``"int"``, ``"float"`` or ``"str"``. All functions are pure.

This module is the public face of the language; the code lives in
:mod:`oar_appliance.lang.property_syntax` (the tree, the lexer, the grammar, :func:`parse`)
and :mod:`oar_appliance.lang.property_compile` (:func:`validate`, :func:`to_sql`,
:func:`compile_predicate`).
"""

from __future__ import annotations

from oar_appliance.lang.property_compile import KINDS, compile_predicate, evaluate, to_sql, validate
from oar_appliance.lang.property_syntax import (
    KEYWORDS,
    MAX_DEPTH,
    MAX_LENGTH,
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
    columns_of,
    parse,
)

__all__ = [
    "MAX_LENGTH",
    "MAX_DEPTH",
    "KINDS",
    "KEYWORDS",
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
