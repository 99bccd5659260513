"""The event loop the commands run on."""

from __future__ import annotations

import asyncio
import sys

from segship import event_loop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_commands_run_on_uvloop_where_it_is_installed():
    assert event_loop.run(loop_module()).startswith("uvloop")


def test_without_uvloop_they_run_on_asyncios_own_loop(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # an import of it fails, as where it is not installed
    assert event_loop.run(loop_module()).startswith("asyncio")
