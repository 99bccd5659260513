"""segship's pytest plugin (the ``pytest11`` entry point ``segship``): fixtures a plugin's tests get
without importing anything.

- ``fake_server``: a running :class:`~segship.testing.fake_server.FakeServer` answering 404 until
  the test scripts answers or sets its ``handler``;
- ``export_harness``: makes an :class:`~segship.testing.harness.ExportHarness` in the test's
  folder: ``export_harness(MyDestination, connection=…, settings=…, mapping=…, key="id")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from segship.testing.fake_server import FakeServer
from segship.testing.harness import ExportHarness


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A programmable HTTP server on 127.0.0.1 (a free port), stopped after the test."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def export_harness(tmp_path: Path) -> Callable[..., ExportHarness]:
    """Makes an export harness in the test's ``tmp_path`` (the arguments of ``ExportHarness`` but the folder)."""

    def make(destination: Any, **options: Any) -> ExportHarness:
        return ExportHarness(tmp_path, destination, **options)

    return make
