"""The event loop segship's exports run on: uvloop where it is installed, asyncio's own elsewhere.

uvloop (libuv, in C) runs the loop and its sockets' transports; asyncio's own runs them in
Python, at a cost in CPU for every request an export sends (``benchmarks/run_all.py``). It is a
dependency wherever it builds (not on Windows); without it, everything works the same.

The sandboxes (``segship sandbox``) stay on asyncio's loop: the Braze one on uvloop needed
less CPU, but some rate-limited runs had it answer paced requests with 429 (it counted more
than the limit within 3 s of requests paced over 3.15 s), which it never did on asyncio's.
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
