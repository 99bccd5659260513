"""Sending alerts: the channels that hear of each, and a channel that fails never raising."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from segship.alerts import deliver
from segship.config import load_config
from segship.notifiers.contract import Alert
from segship.plugins import build_plugins

CONFIG = """\
version: 1
sources: {crm: {type: duckdb, path: profiles.csv}}
segments: {vip: {source: crm, key: customer_id, sql: SELECT 1}}
connections:
  braze:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: https://rest.iad-01.braze.com}
exports:
  vip-braze: &export
    display_name: VIP
    connection: braze
    segments: [vip]
    settings: {segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}
    mapping: {email: email, customer_id: customer_id}
  all-braze: *export
notifications:
  everything:
    type: webhook
    url: ${env:EVERYTHING_URL}
  vip-failures:
    type: slack
    url: ${env:VIP_FAILURES_URL}
    exports: [vip-braze]
    events: [failed]
  broken:
    type: webhook
    url: ${env:BROKEN_URL}
  unset:
    type: slack
    url: ${env:NEVER_SET_URL}
"""
VIP_FAILED = Alert("failed", "open", "vip-braze", 3, "run 3 of vip-braze failed: down", {})
ALL_DROPPED = Alert("drop", "open", "all-braze", 4, "all-braze dropped", {})


@pytest.fixture
def config(tmp_path: Path, webhook_receiver, monkeypatch: pytest.MonkeyPatch):
    for name in ("everything", "vip-failures", "broken"):
        monkeypatch.setenv(f"{name.replace('-', '_').upper()}_URL", f"{webhook_receiver.url}/{name}?token={name}-token")
    monkeypatch.delenv("NEVER_SET_URL", raising=False)
    (tmp_path / "segship.yaml").write_text(CONFIG)
    return load_config(tmp_path / "segship.yaml", build_plugins())


async def test_each_channel_gets_the_alerts_of_its_exports_and_events(config, webhook_receiver) -> None:
    await deliver(config, build_plugins(), [VIP_FAILED, ALL_DROPPED])
    assert [d.json()["export"] for d in webhook_receiver.deliveries("/everything")] == ["vip-braze", "all-braze"]
    [slack] = webhook_receiver.deliveries("/vip-failures")
    assert slack.json()["text"].endswith("run 3 of vip-braze failed: down")


async def test_a_failing_channel_is_logged_redacted_and_the_others_still_get_the_alert(config,
                                                                                      webhook_receiver) -> None:
    webhook_receiver.refuse(500, f"upstream refused {webhook_receiver.url}/broken?token=broken-token", "/broken")
    with structlog.testing.capture_logs() as logs:
        await deliver(config, build_plugins(), [VIP_FAILED])  # must not raise
    assert len(webhook_receiver.deliveries("/everything")) == 1
    failures = {entry["channel"]: entry["error"] for entry in logs if entry["event"] == "alert.not_sent"}
    assert failures == {
        "broken": "NotifierError: channel 'broken' answered HTTP 500: upstream refused ***",
        "unset": f"SecretResolutionError: {config.where('notifications', 'unset', 'url')}: environment variable "
                 "NEVER_SET_URL is not set",
    }
    assert {"event": "alert.open", "export": "vip-braze", "alert_event": "failed", "run_id": 3,
            "message": "run 3 of vip-braze failed: down", "log_level": "warning"} in logs


async def test_a_channels_resolved_secret_never_reaches_an_alert(config, webhook_receiver) -> None:
    config.notifications["everything"].resolved_settings()  # as a send does: the URL is a secret now
    leaky = Alert("failed", "open", "vip-braze", 3,
                  f"posting to {webhook_receiver.url}/everything?token=everything-token failed", {})
    await deliver(config, build_plugins(), [leaky])
    [delivery] = webhook_receiver.deliveries("/everything")
    assert delivery.json()["message"] == "posting to *** failed"
