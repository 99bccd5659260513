"""The ``braze_sandbox`` pytest fixture: a Braze sandbox on 127.0.0.1 in a background thread.

Use it from any conftest with ``from segship_braze.testing import braze_sandbox``. It
has no rate limit, so tests stay fast; a test that needs other settings serves its own
``BrazeSandbox`` with ``running_sandbox``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from segship.sandbox import BackgroundSandbox

from segship_braze.sandbox import DEFAULT_WORKSPACE, BrazeSandbox

SANDBOX_API_KEY = "braze-sandbox-key-0123456789abcdef"


class SandboxHandle(BackgroundSandbox):
    """A running Braze sandbox: ``url`` is the rest_endpoint to use; readers return copies."""

    sandbox: BrazeSandbox

    def user(self, external_id: str, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any] | None:
        """The user's attributes (in the default workspace, or ``workspace``), or None if Braze has no such user."""
        return self.call(lambda: copy.deepcopy(self.sandbox.workspaces[workspace].get(external_id)))

    def users(self, workspace: str = DEFAULT_WORKSPACE) -> dict[str, dict[str, Any]]:
        """Every user by identifier (of the default workspace, or ``workspace``)."""
        return self.call(lambda: copy.deepcopy(self.sandbox.workspaces[workspace]))


async def call(url: str, body: Any = None, *, method: str = "POST", path: str = "/users/track",
               key: str | None = SANDBOX_API_KEY) -> tuple[int, dict[str, str], Any]:
    """One request to a sandbox as a Braze client makes it: (status, headers, decoded JSON body)."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    data = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
    async with aiohttp.ClientSession() as session, session.request(method, url + path, data=data,
                                                                    headers=headers) as answer:
        return answer.status, dict(answer.headers), orjson.loads(await answer.read())


def running_sandbox(sandbox: BrazeSandbox) -> SandboxHandle:
    """Serve ``sandbox`` on a free port of 127.0.0.1: ``with running_sandbox(s) as handle: ...``."""
    return SandboxHandle(sandbox)


@pytest.fixture
def braze_sandbox() -> Iterator[SandboxHandle]:
    """A fresh Braze sandbox accepting only ``SANDBOX_API_KEY``, without a rate limit."""
    with running_sandbox(BrazeSandbox(api_key=SANDBOX_API_KEY)) as handle:
        yield handle
