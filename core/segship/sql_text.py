"""SQL text every database segship speaks to takes: a quoted identifier, a string literal, and a
segment's query as a subquery. The engine's DuckDB statements, the sources' and the warehouse
planner's (:mod:`segship.engine.planners`) all quote with these."""

from __future__ import annotations

import re

#: What may end a query and can't end a subquery: trailing semicolons, with the whitespace around them.
_QUERY_END = re.compile(r"[\s;]+\Z")


def quote(identifier: str) -> str:
    """A quoted SQL identifier (standard double quotes)."""
    return '"' + identifier.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def segment_subquery(sql: str) -> str:
    """A segment's query as a parenthesised subquery: on lines of its own, so that a trailing ``--``
    comment ends before the parenthesis, and without the semicolons a query may end with."""
    return f"(\n{_QUERY_END.sub('', sql)}\n)"
