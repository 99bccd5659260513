"""Config problems with the place they come from, and their three output formats."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from segship.errors import SegshipError


@dataclass(frozen=True, order=True)
class Location:
    """A place in a config file; line and column count from 1."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, order=True)
class ConfigIssue:
    location: Location
    message: str

    def as_text(self) -> str:
        return f"{self.location}: {self.message}"

    def as_github(self, level: str = "error") -> str:
        # GitHub workflow commands need %, \r and \n escaped in the message
        text = self.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        loc = self.location
        return f"::{level} file={loc.file},line={loc.line},col={loc.column}::{text}"

    def as_dict(self) -> dict[str, object]:
        loc = self.location
        return {"file": loc.file, "line": loc.line, "column": loc.column, "message": self.message}


class ConfigError(SegshipError):
    """The config is invalid; ``issues`` says where and why, sorted by place."""

    outcome = "invalid"

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(set(issues))
        super().__init__("\n".join(issue.as_text() for issue in self.issues))

    def render(self, fmt: str = "text") -> str:
        if fmt == "github":
            return "\n".join(issue.as_github() for issue in self.issues)
        if fmt == "json":
            return orjson.dumps({"valid": False, "errors": [i.as_dict() for i in self.issues]},
                                option=orjson.OPT_INDENT_2).decode()
        return "\n".join(issue.as_text() for issue in self.issues)


def display_path(path: Path) -> str:
    """A path as users wrote it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
