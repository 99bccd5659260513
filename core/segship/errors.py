"""The errors segship shows its users: one family, so the engine and the CLI handle them in one place.

A :class:`SegshipError` is shown as one line (redacted), without a traceback: its message says
what is wrong and what to do about it, and never holds a secret. Each part of segship defines its
own subclasses next to the code that raises them (``ConfigError`` in ``config/issues.py``,
``DestinationError`` in ``destination.py``, ``StateError`` in ``engine/state``, ...). Any other
exception escaping a run or a command is a bug, shown with its type (and a traceback with ``--debug``).
"""

from __future__ import annotations

from typing import ClassVar, Literal

#: What a run that an error ends is reported as (the run report's ``outcome``).
ErrorOutcome = Literal["failed", "aborted", "invalid"]


class SegshipError(Exception):
    """An error segship shows its users; ``outcome`` is how a run it ends is reported.

    ``failed`` (the default): something the config can't fix went wrong (a destination, a source,
    state); ``aborted``: a safeguard stopped the run before it sent anything; ``invalid``: the
    config, or a secret it references, is wrong, and the message starts with where (a file:line:col
    of the config, or the command-line option).
    """

    outcome: ClassVar[ErrorOutcome] = "failed"
