"""Sending alerts: the channels that hear of each, and a channel that fails never raising."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog.testing

from segship.alerts import deliver
from segship.config.model import NotificationConfig
from segship.notifiers.contract import EVENTS, Alert
from segship.plugins import build_plugins

VIP_FAILED = Alert("failed", "open", "vip-braze", 3, "run 3 of vip-braze failed: down", {})
ALL_DROPPED = Alert("drop", "open", "all-braze", 4, "all-braze dropped", {})
UNSET_AT = "segship.yaml:30:10"


def channel(name: str, type_: str, url: str, *, exports: tuple[str, ...] | None = None,
            events: tuple[str, ...] = EVENTS) -> NotificationConfig:
    """A channel as the config builds it, its URL a reference to ``url`` in the environment."""
    return NotificationConfig(name, type_, exports, events, {"url": url}, Path.cwd(), (("url",),),
                              {("url",): UNSET_AT})


@pytest.fixture
def channels(webhook_receiver, monkeypatch: pytest.MonkeyPatch) -> list[NotificationConfig]:
    for name in ("everything", "vip_failures", "broken"):
        monkeypatch.setenv(f"{name.upper()}_URL", f"{webhook_receiver.url}/{name}?token={name}-token")
    monkeypatch.delenv("NEVER_SET_URL", raising=False)
    return [channel("everything", "webhook", "${env:EVERYTHING_URL}"),
            channel("vip-failures", "slack", "${env:VIP_FAILURES_URL}", exports=("vip-braze",), events=("failed",)),
            channel("broken", "webhook", "${env:BROKEN_URL}"),
            channel("unset", "slack", "${env:NEVER_SET_URL}")]


async def test_each_channel_gets_the_alerts_of_its_exports_and_events(channels, webhook_receiver) -> None:
    await deliver(channels, build_plugins(), [VIP_FAILED, ALL_DROPPED])
    assert [d.json()["export"] for d in webhook_receiver.deliveries("/everything")] == ["vip-braze", "all-braze"]
    [slack] = webhook_receiver.deliveries("/vip_failures")
    assert slack.json()["text"].endswith("run 3 of vip-braze failed: down")


async def test_a_failing_channel_is_logged_redacted_and_the_others_still_get_the_alert(channels,
                                                                                      webhook_receiver) -> None:
    webhook_receiver.refuse(500, f"upstream refused {webhook_receiver.url}/broken?token=broken-token", "/broken")
    with structlog.testing.capture_logs() as logs:
        await deliver(channels, build_plugins(), [VIP_FAILED])  # must not raise
    assert len(webhook_receiver.deliveries("/everything")) == 1
    failures = {entry["channel"]: entry["error"] for entry in logs if entry["event"] == "alert.not_sent"}
    assert failures == {
        "broken": "NotifierError: channel 'broken' answered HTTP 500: upstream refused ***",
        "unset": f"SecretResolutionError: {UNSET_AT}: environment variable NEVER_SET_URL is not set",
    }
    assert {"event": "alert.open", "export": "vip-braze", "alert_event": "failed", "run_id": 3,
            "log_level": "warning"} in logs  # the message is the run's own, logged by the run


async def test_a_channel_of_a_notifier_not_installed_is_logged(webhook_receiver) -> None:
    with structlog.testing.capture_logs() as logs:
        await deliver([channel("pager", "pagerduty", "${env:PAGER_URL}")], build_plugins(), [VIP_FAILED])
    [failure] = [entry for entry in logs if entry["event"] == "alert.not_sent"]
    assert failure["error"] == "NotifierError: the notifier 'pagerduty' is not installed (see `segship plugins`)"


async def test_a_channels_resolved_secret_never_reaches_an_alert(channels, webhook_receiver) -> None:
    channels[0].resolved_settings()  # as a send does: the URL is a secret now
    leaky = Alert("failed", "open", "vip-braze", 3,
                  f"posting to {webhook_receiver.url}/everything?token=everything-token failed", {})
    await deliver(channels[:1], build_plugins(), [leaky])
    [delivery] = webhook_receiver.deliveries("/everything")
    assert delivery.json()["message"] == "posting to *** failed"
