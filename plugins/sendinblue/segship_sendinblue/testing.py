"""The ``sendinblue_sandbox`` pytest fixture: a Brevo sandbox on 127.0.0.1 in a background thread.

Use it from any conftest with ``from segship_sendinblue.testing import sendinblue_sandbox``.
Imports are processed almost at once (``process_delay`` 0.01 s) and there is no rate limit,
so tests stay fast; a test that needs other settings serves its own ``BrevoSandbox``
with ``running_sandbox``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from segship.sandbox import BackgroundSandbox

from segship_sendinblue.sandbox import BrevoSandbox

SANDBOX_API_KEY = "xkeysib-sandbox-0123456789abcdef"


class SandboxHandle:
    """A running sandbox: its base URL (…/v3), the sandbox object and thread-safe readers."""

    def __init__(self, runner: BackgroundSandbox, api_key: str | None) -> None:
        self._runner = runner
        self.sandbox: BrevoSandbox = runner.sandbox  # type: ignore[assignment]
        self.url = runner.url
        self.api_key = api_key

    def list_contacts(self, list_id: int) -> dict[str, dict[str, Any]]:
        """email -> attributes of the contacts in a list (a copy)."""
        return self._runner.call(lambda: {email: dict(attributes) for email, attributes
                                          in self.sandbox.list_contacts(list_id).items()})

    def stats(self) -> dict[str, Any]:
        return self._runner.call(lambda: {**self.sandbox.stats, **self.sandbox.extra_stats()})

    def set_faults(self, **knobs: Any) -> None:
        """Turn fault knobs through ``/_sandbox/faults``, as a test in another process would (a seed reseeds)."""
        request = urllib.request.Request(self.url.removesuffix(self.sandbox.api_prefix) + "/_sandbox/faults",
                                         data=orjson.dumps(knobs), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def reset(self) -> None:
        self._runner.call(self.sandbox.reset)


@contextmanager
def running_sandbox(sandbox: BrevoSandbox) -> Iterator[SandboxHandle]:
    """Serve ``sandbox`` on a free port of 127.0.0.1 for the duration of the block."""
    runner = BackgroundSandbox(sandbox)
    with runner:
        yield SandboxHandle(runner, sandbox.api_key)


@pytest.fixture
def sendinblue_sandbox() -> Iterator[SandboxHandle]:
    """A fresh Brevo sandbox accepting only ``SANDBOX_API_KEY``, lists 1 to 10."""
    with running_sandbox(BrevoSandbox(api_key=SANDBOX_API_KEY, process_delay=0.01)) as handle:
        yield handle
