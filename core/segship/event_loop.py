"""The event loop segship's commands run on: uvloop where it is installed, asyncio's own elsewhere.

uvloop (libuv, in C) runs the loop and its sockets' transports; asyncio's own runs them in
Python, which was a second of CPU per million profiles sent to Braze (13,334 requests):
a first 1M-profile run used 8.9 µs of CPU a profile on asyncio's loop and 7.3 on uvloop,
and the Braze sandbox 10.8 CPU-s against 8.5 (``benchmarks/run_all.py``). It is a
dependency wherever it builds (not on Windows); without it, everything works the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)
