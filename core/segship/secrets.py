"""Secret references (``${env:VAR}``, ``${file:PATH}``) and their redaction.

Secrets never appear in the config text: a secret setting holds a reference that is
resolved only when a run needs it. Every resolved secret is remembered by the
process-wide :data:`redactor`, which logs, errors and reports pass through. Where a command
resolves nothing (``plan``, ``export --dry-run``), a destination gets an
:class:`UnresolvedSecret` in place of each reference: never a value it could mistake for one.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from segship.errors import SegshipError

REFERENCE = re.compile(r"\$\{(env|file):([^}]*)\}")
MASK = "***"
#: The most a ``${file:PATH}`` secret may hold (1 MiB): a key, a token, a URL or a PEM chain fits
#: many times over, and a mistaken path (a log, a dump) fails at once instead of filling memory.
SECRET_FILE_MAX_BYTES = 1024 * 1024
#: Opening a secret file: should a FIFO be swapped in after the check, don't wait for its writer
#: (O_NONBLOCK); never adopt a terminal. Flags the OS lacks (Windows) are 0.
SECRET_FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
#: what a ``${file:…}`` path may name instead of a regular file, for its error
NOT_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


#: How an :class:`UnresolvedSecret` reads as text; a request header holding it is refused.
UNRESOLVED = "<not resolved: "


class UnresolvedSecret:
    """A setting given by reference (``${env:…}``/``${file:…}``) that this command did not resolve:
    what a destination gets for it from ``plan`` and ``export --dry-run``, which resolve no secret
    and send nothing.

    It is not a string: ``"Bearer " + secret`` and ``secret.strip()`` raise ``TypeError`` or
    ``AttributeError``, orjson refuses to encode it, ``int()`` and ``float()`` refuse it. As text
    (``str()``, an f-string) it reads ``<not resolved: api_key>`` (the setting's name, never the
    reference), and an :class:`segship.http.HttpClient` whose headers hold that text refuses to
    send a request; the redactor ignores it.
    """

    __slots__ = ("setting",)

    def __init__(self, setting: str) -> None:
        self.setting = setting  # the setting's dotted path in its settings (``api_key``, ``smtp.password``)

    def __str__(self) -> str:
        return f"{UNRESOLVED}{self.setting}>"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __repr__(self) -> str:
        return f"UnresolvedSecret({self.setting!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnresolvedSecret) and other.setting == self.setting

    def __hash__(self) -> int:
        return hash((UnresolvedSecret, self.setting))


def holds_unresolved(text: str) -> bool:
    """Whether ``text`` was made with an :class:`UnresolvedSecret` (``f"Bearer {secret}"``)."""
    return UNRESOLVED in text


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
        # longest first: a secret that contains another is masked whole; kept sorted as added, since
        # every log line and reason is redacted
        self._longest_first: list[str] = []

    def add(self, value: str) -> None:
        if isinstance(value, UnresolvedSecret) or holds_unresolved(value):
            return  # no secret in it; masking it would hide the very words that say so
        for form in (value, value.strip()):  # a client may send the key trimmed
            if len(form) >= 4 and form not in self._values:  # shorter values would mask ordinary words
                self._values.add(form)
                self._longest_first = sorted(self._values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._longest_first:
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
            resolved = _read_secret_file(path, where)
            if not resolved:
                raise SecretResolutionError(f"{where}: secret file {path} is empty")
        if secret:
            redactor.add(resolved)
        return resolved

    return REFERENCE.sub(substitute, value)


def _read_secret_file(path: Path, where: str) -> str:
    """The text of a ``${file:…}`` secret, stripped: a regular file of at most SECRET_FILE_MAX_BYTES.

    A FIFO, a device or a directory is refused before a byte is read: reading one could block
    forever (a FIFO without a writer) or never end (``/dev/zero``). The path is checked, then the
    opened descriptor again, since the path may have been swapped between the two.
    """
    try:
        _check_secret_file(path, os.stat(path), where)
        with open(os.open(path, SECRET_FILE_FLAGS), "rb") as file:
            _check_secret_file(path, os.fstat(file.fileno()), where)
            content = file.read(SECRET_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise SecretResolutionError(f"{where}: can't read secret file {path}: {exc.strerror}") from None
    if len(content) > SECRET_FILE_MAX_BYTES:  # it grew since the check
        raise SecretResolutionError(f"{where}: secret file {path} is larger than {SECRET_FILE_MAX_BYTES:,} bytes")
    try:
        return content.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise SecretResolutionError(f"{where}: secret file {path} is not UTF-8 text") from None


def _check_secret_file(path: Path, status: os.stat_result, where: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in NOT_FILES if test(status.st_mode)), "a special file")
        raise SecretResolutionError(f"{where}: secret file {path} is {kind}, not a regular file; write the secret "
                                    "into a file")
    if status.st_size > SECRET_FILE_MAX_BYTES:
        raise SecretResolutionError(f"{where}: secret file {path} is larger than {SECRET_FILE_MAX_BYTES:,} bytes "
                                    f"({status.st_size:,}); a secret file holds one key, token or URL")
