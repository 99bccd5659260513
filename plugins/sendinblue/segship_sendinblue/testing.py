"""The ``sendinblue_sandbox`` pytest fixture: a Brevo sandbox on 127.0.0.1 in a background thread.

Use it from any conftest with ``from segship_sendinblue.testing import sendinblue_sandbox``.
Imports are processed almost at once (``process_delay`` 0.01 s) and there is no rate limit,
so tests stay fast; a test that needs other settings serves its own ``BrevoSandbox``
with ``running_sandbox``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from segship.sandbox import BackgroundSandbox

from segship_sendinblue.sandbox import DEFAULT_ORGANIZATION_ID, BrevoSandbox

SANDBOX_API_KEY = "xkeysib-sandbox-0123456789abcdef"


class SandboxHandle(BackgroundSandbox):
    """A running Brevo sandbox: ``url`` is the base_url to use (…/v3); readers return copies."""

    sandbox: BrevoSandbox

    def list_contacts(self, list_id: int, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, dict[str, Any]]:
        """email -> attributes of the contacts in a list (of the default account, or ``account``)."""
        return self.call(lambda: {email: dict(attributes) for email, attributes
                                  in self.sandbox.list_contacts(list_id, account).items()})

    def blacklisting(self, email: str, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, bool]:
        """The contact's ``emailBlacklisted`` and ``smsBlacklisted``."""
        return self.call(lambda: self.sandbox.blacklisting(email, account))


async def call(url: str, method: str = "GET", body: object = None, *, key: str | None = SANDBOX_API_KEY,
               raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """One request to a sandbox as a Brevo client makes it: (status, headers, decoded JSON body)."""
    headers = {"api-key": key} if key else {}
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data, headers=headers) as answer:
        return answer.status, dict(answer.headers), orjson.loads(await answer.read() or b"null")


def running_sandbox(sandbox: BrevoSandbox) -> SandboxHandle:
    """Serve ``sandbox`` on a free port of 127.0.0.1: ``with running_sandbox(s) as handle: ...``."""
    return SandboxHandle(sandbox)


@pytest.fixture
def sendinblue_sandbox() -> Iterator[SandboxHandle]:
    """A fresh Brevo sandbox accepting only ``SANDBOX_API_KEY``, lists 1 to 10."""
    with running_sandbox(BrevoSandbox(api_key=SANDBOX_API_KEY, process_delay=0.01)) as handle:
        yield handle
