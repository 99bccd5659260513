"""Fixtures: the webhook sandbox in a background thread, and a config folder driving the real CLI at it."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from segship.sandbox import BackgroundSandbox

from segship_webhook.sandbox import WebhookSandbox

SECRET = "whsec-0123456789abcdef-fedcba9876543210"
EXPORT = "vip-to-service"
COLUMNS = ["customer_id", "email", "tier", "lifetime_value"]

CONFIG = """
version: 1
sources:
  crm: {{type: duckdb, path: profiles.csv}}
segments:
  vip: {{source: crm, key: customer_id, sql: SELECT * FROM crm}}
connections:
  service:
    type: webhook
    display_name: Our members service
    data_privacy_consent: true
    settings:
      url: {url}
      secret: {secret}
      batch_size: {batch_size}
exports:
  vip-to-service:
    display_name: VIP customers to our service
    connection: service
    segments: [vip]
    settings: {settings}
    mapping:
      identity: customer_id
      fields: {{email: email, tier: tier, lifetime_value: lifetime_value}}
    safeguards: {{max_removed_fraction: null}}
"""


class SandboxHandle(BackgroundSandbox):
    """A running webhook sandbox: ``url`` is the connection's url; readers return copies."""

    sandbox: WebhookSandbox

    def members(self, export: str = EXPORT, collection: str = "/members") -> dict[str, dict[str, Any]]:
        return self.call(lambda: copy.deepcopy(self.sandbox.members(export, collection)))

    def batches(self) -> list[dict[str, Any]]:
        """The batches accepted so far, as sent (path, export, members)."""
        return self.call(lambda: copy.deepcopy(list(self.sandbox.batches)))

    def refuse(self, *identities: str) -> None:
        """Refuse exactly these identities from now on."""
        self.call(lambda: setattr(self.sandbox, "refuse_identities", set(identities)))


@pytest.fixture
def webhook_sandbox() -> Iterator[SandboxHandle]:
    """A fresh webhook sandbox checking signatures with ``SECRET``, without a rate limit."""
    with SandboxHandle(WebhookSandbox(secret=SECRET)) as handle:
        yield handle


class Project:
    """A config folder in tmp pointing at the sandbox, a CSV source, and the real CLI."""

    def __init__(self, root: Path, sandbox: SandboxHandle) -> None:
        self.root = root
        self.sandbox = sandbox
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("SEGSHIP_")}
        self.env.update({"WEBHOOK_SECRET": SECRET, "NO_COLOR": "1", "COLUMNS": "200"})
        self.configure()

    def configure(self, *, url: str | None = None, secret: str = "${env:WEBHOOK_SECRET}", batch_size: int = 500,
                  settings: dict[str, str] | None = None) -> None:
        (self.root / "segship.yaml").write_text(CONFIG.format(
            url=url or self.sandbox.url, secret=json.dumps(secret), batch_size=batch_size,
            settings=json.dumps(settings or {})))

    def write(self, rows: list[dict[str, Any]]) -> None:
        with (self.root / "profiles.csv").open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "segship", *args], cwd=self.root, env=env or self.env,
                              capture_output=True, text=True, timeout=120)


def profile(index: int, **changes: Any) -> dict[str, Any]:
    row = {"customer_id": f"C{index:03d}", "email": f"user{index}@example.com", "tier": "gold",
           "lifetime_value": 1000 + index}
    row.update(changes)
    return row


@pytest.fixture
def project(tmp_path: Path, webhook_sandbox: SandboxHandle) -> Project:
    return Project(tmp_path, webhook_sandbox)
