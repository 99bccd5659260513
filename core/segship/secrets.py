"""Secret references (``${env:VAR}``, ``${file:PATH}``) and their redaction.

Secrets never appear in the config text: a secret setting holds a reference that is
resolved only when a run needs it. Every resolved secret is remembered by the
process-wide :data:`redactor`, which logs, errors and reports pass through.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from segship.errors import SegshipError

REFERENCE = re.compile(r"\$\{(env|file):([^}]*)\}")
MASK = "***"


class SecretResolutionError(SegshipError):
    """A reference can't be resolved; the message names the variable or file, never a value."""

    outcome = "invalid"  # usage: the config or the environment it names is wrong


def is_reference(value: object) -> bool:
    """True if ``value`` is exactly one ``${env:…}`` or ``${file:…}`` reference."""
    return isinstance(value, str) and REFERENCE.fullmatch(value.strip()) is not None


def has_reference(value: object) -> bool:
    return isinstance(value, str) and REFERENCE.search(value) is not None


class Redactor:
    """Replaces known secret values with ``***`` in any text."""

    def __init__(self) -> None:
        self._values: set[str] = set()

    def add(self, value: str) -> None:
        for form in (value, value.strip()):  # a client may send the key trimmed
            if len(form) >= 4:  # shorter values would mask ordinary words
                self._values.add(form)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, MASK)
        return text


redactor = Redactor()


def resolve(value: str, base_dir: Path, *, where: str, secret: bool = False) -> str:
    """Replace every reference in ``value``; ``where`` (file:line:col) goes into errors."""

    def substitute(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2).strip()
        if not name:
            raise SecretResolutionError(f"{where}: empty ${{{kind}:}} reference")
        if kind == "env":
            resolved = os.environ.get(name)
            if resolved is None:
                raise SecretResolutionError(f"{where}: environment variable {name} is not set")
            if not resolved.strip():
                raise SecretResolutionError(f"{where}: environment variable {name} is set but empty")
        else:
            path = Path(os.path.expanduser(name))
            path = path if path.is_absolute() else base_dir / path
            try:
                resolved = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretResolutionError(f"{where}: can't read secret file {path}: {exc.strerror}") from None
            if not resolved:
                raise SecretResolutionError(f"{where}: secret file {path} is empty")
        if secret:
            redactor.add(resolved)
        return resolved

    return REFERENCE.sub(substitute, value)
