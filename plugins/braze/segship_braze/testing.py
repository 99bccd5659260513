"""The ``braze_sandbox`` pytest fixture: a Braze sandbox on 127.0.0.1 in a background thread.

Use it from any conftest with ``from segship_braze.testing import braze_sandbox``. It
has no rate limit, so tests stay fast; a test that needs other settings serves its own
``BrazeSandbox`` with ``running_sandbox``.
"""

from __future__ import annotations

import copy
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from segship.sandbox import BackgroundSandbox

from segship_braze.sandbox import BrazeSandbox

SANDBOX_API_KEY = "braze-sandbox-key-0123456789abcdef"


class SandboxHandle:
    """A running sandbox: its base URL (the rest_endpoint), the sandbox object and thread-safe readers."""

    def __init__(self, runner: BackgroundSandbox) -> None:
        self._runner = runner
        self.sandbox: BrazeSandbox = runner.sandbox  # type: ignore[assignment]
        self.url = runner.url
        self.api_key = self.sandbox.api_key

    def user(self, external_id: str) -> dict[str, Any] | None:
        """The user's attributes (a copy), or None if Braze has no such user."""
        return self._runner.call(lambda: copy.deepcopy(self.sandbox.users.get(external_id)))

    def users(self) -> dict[str, dict[str, Any]]:
        """Every user by identifier (a copy)."""
        return self._runner.call(lambda: copy.deepcopy(self.sandbox.users))

    def stats(self) -> dict[str, Any]:
        return self._runner.call(lambda: {**self.sandbox.stats, **self.sandbox.extra_stats()})

    def set_faults(self, **knobs: Any) -> None:
        """Turn fault knobs through ``/_sandbox/faults``, as a test in another process would (a seed reseeds)."""
        request = urllib.request.Request(self.url + "/_sandbox/faults", data=orjson.dumps(knobs), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def reset(self) -> None:
        self._runner.call(self.sandbox.reset)


@contextmanager
def running_sandbox(sandbox: BrazeSandbox) -> Iterator[SandboxHandle]:
    """Serve ``sandbox`` on a free port of 127.0.0.1 for the duration of the block."""
    runner = BackgroundSandbox(sandbox)
    with runner:
        yield SandboxHandle(runner)


@pytest.fixture
def braze_sandbox() -> Iterator[SandboxHandle]:
    """A fresh Braze sandbox accepting only ``SANDBOX_API_KEY``, without a rate limit."""
    with running_sandbox(BrazeSandbox(api_key=SANDBOX_API_KEY)) as handle:
        yield handle
