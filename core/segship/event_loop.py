"""The event loop segship's exports run on: uvloop where it is installed, asyncio's own elsewhere.

uvloop (libuv, in C) runs the loop and its sockets' transports; asyncio's own runs them in
Python, which was a second of CPU per million profiles sent to Braze (13,334 requests):
a first, unthrottled 1M-profile run used 8.9 µs of CPU a profile on asyncio's loop and
7.3 on uvloop (``benchmarks/run_all.py``). It is a dependency wherever it builds (not on
Windows); without it, everything works the same.

The sandboxes (``segship sandbox``) stay on asyncio's loop: the Braze one on uvloop needed
less CPU, but in 2 of 5 rate-limited runs answered 6 and 38 requests with 429 (it counted
3,001 arrivals within 3 s of requests sent 3.15 s apart), which it never did on asyncio's.
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
