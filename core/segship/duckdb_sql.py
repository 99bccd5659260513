"""Quoting for the SQL segship writes around user-given names and paths (DuckDB dialect)."""


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
