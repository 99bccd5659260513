"""Fixtures of the Dagster integration's tests: a config folder pointing at a real Braze sandbox."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from segship_braze.sandbox import SANDBOX_API_KEY, BrazeSandbox, RunningBrazeSandbox

SEGMENT_ID = "3c4a9e52-0000-4000-8000-000000000001"

CONFIG = """
version: 1
state: {path: .segship/state.db}
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: customer_id, sql: "SELECT * FROM crm WHERE lifetime_value > 100"}
  lapsed: {source: crm, key: customer_id, sql: "SELECT * FROM crm WHERE lifetime_value <= 100"}
connections:
  braze:
    type: braze
    display_name: Braze sandbox
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: "${env:BRAZE_URL}"}
exports:
  vip-braze:
    display_name: VIP customers to Braze
    connection: braze
    segments: [vip]
    settings: {segment_api_identifier: %s}
    mapping: {customer_id: customer_id, email: email, attributes: {first_name: first_name}}
    schedule: "15 * * * *"
    safeguards: {max_removed_fraction: 0.5}
  lapsed-braze:
    display_name: Lapsed customers to Braze
    connection: braze
    segments: [lapsed]
    settings: {segment_api_identifier: %s, membership_attribute: lapsed_segments}
    mapping: {customer_id: customer_id, email: email}
""" % (SEGMENT_ID, SEGMENT_ID)


def write_profiles(folder: Path, count: int, lifetime_value: int = 500) -> None:
    with (folder / "profiles.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "email", "first_name", "lifetime_value"])
        for index in range(1, count + 1):
            writer.writerow([f"C{index:05d}", f"user{index}@example.com", f"First{index}", lifetime_value])


@pytest.fixture
def braze_sandbox() -> Iterator[RunningBrazeSandbox]:
    """A fresh Braze sandbox accepting only its ``SANDBOX_API_KEY``."""
    with RunningBrazeSandbox(BrazeSandbox(api_key=SANDBOX_API_KEY)) as running:
        yield running


@pytest.fixture
def config_dir(tmp_path: Path, braze_sandbox, monkeypatch) -> Path:
    """A config folder with 5 VIP profiles; the sandbox's key and URL in the environment, as a runner has them."""
    (tmp_path / "segship.yaml").write_text(CONFIG)
    write_profiles(tmp_path, 5)
    monkeypatch.setenv("BRAZE_API_KEY", braze_sandbox.api_key)
    monkeypatch.setenv("BRAZE_URL", braze_sandbox.url)
    return tmp_path
