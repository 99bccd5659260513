"""The ``notifications:`` section and an export's ``alerts:``: schema, validation and the typed config."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from segship.config import load_config
from segship.config.model import AlertThresholds
from segship.config.schema import composed_schema, core_schema
from segship.notifiers.contract import EVENTS
from segship.plugins import build_plugins
from segship.secrets import SecretResolutionError, redactor

BASE = """\
version: 1
sources: {crm: {type: duckdb, path: profiles.csv}}
segments: {vip: {source: crm, key: customer_id, sql: SELECT 1}}
connections:
  brevo:
    type: brevo
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}"}
exports:
  vip-brevo:
    display_name: VIP
    connection: brevo
    segments: [vip]
    settings: {list_id: 7}
    mapping: {email: email}
"""
CHANNELS = """\
notifications:
  on-call:
    type: slack
    url: ${env:SLACK_WEBHOOK_URL}
    exports: [vip-brevo]
    events: [failed, stale]
  hook:
    type: webhook
    url: ${env:HOOK_URL}
    secret: ${file:hook.secret}
  ops-mail:
    type: email
    smtp: {host: smtp.example.com, port: 587, username: "${env:SMTP_USER}", password: "${env:SMTP_PASSWORD}"}
    from: segship@example.com
    to: [data-oncall@example.com]
"""


def test_the_designs_channels_validate_and_build(tmp_path: Path) -> None:
    (tmp_path / "segship.yaml").write_text(BASE + "    alerts: {max_rejected_fraction: 0.1, stale_after: 90m}\n"
                                           + CHANNELS)
    config = load_config(tmp_path / "segship.yaml", build_plugins())
    assert config.exports["vip-brevo"].alerts == AlertThresholds(0.1, 0.2, timedelta(minutes=90))
    slack, hook, mail = (config.notifications[name] for name in ("on-call", "hook", "ops-mail"))
    assert (slack.type, slack.exports, slack.events) == ("slack", ("vip-brevo",), ("failed", "stale"))
    assert (hook.exports, hook.events) == (None, EVENTS)  # defaults: every export, every event
    assert slack.settings == {"url": "${env:SLACK_WEBHOOK_URL}"}
    assert mail.settings["to"] == ["data-oncall@example.com"] and mail.secret_paths == (("smtp", "password"),)
    assert slack.hears("vip-brevo", "failed") and not slack.hears("vip-brevo", "drop")
    assert not slack.hears("other", "failed") and hook.hears("other", "drop")


def test_alert_thresholds_have_the_designs_defaults(tmp_path: Path) -> None:
    (tmp_path / "segship.yaml").write_text(BASE)
    config = load_config(tmp_path / "segship.yaml", build_plugins())
    assert config.exports["vip-brevo"].alerts == AlertThresholds(0.05, 0.2, timedelta(hours=6))
    assert config.notifications == {}
    assert AlertThresholds.from_config({"stale_after": "2d"}).stale_after == timedelta(days=2)
    assert AlertThresholds.from_config({"stale_after": "45s"}).stale_after == timedelta(seconds=45)


def test_settings_resolve_at_send_time_and_secrets_are_registered_for_redaction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segship.yaml").write_text(BASE + CHANNELS)
    (tmp_path / "hook.secret").write_text("hook-signing-secret\n")
    config = load_config(tmp_path / "segship.yaml", build_plugins())  # validates without any secret set
    with pytest.raises(SecretResolutionError, match=r"segship.yaml:25:10: environment variable HOOK_URL is not set"):
        config.notifications["hook"].resolved_settings()
    monkeypatch.setenv("HOOK_URL", "https://hooks.example.com/T0/secret-path")
    monkeypatch.setenv("SMTP_USER", "mailer")
    monkeypatch.setenv("SMTP_PASSWORD", "smtp-password-value")
    assert config.notifications["hook"].resolved_settings() == {
        "url": "https://hooks.example.com/T0/secret-path", "secret": "hook-signing-secret"}
    assert config.notifications["ops-mail"].resolved_settings()["smtp"] == {
        "host": "smtp.example.com", "port": 587, "username": "mailer", "password": "smtp-password-value"}
    text = redactor.redact("https://hooks.example.com/T0/secret-path hook-signing-secret smtp-password-value mailer")
    assert text == "*** *** *** mailer"  # the username is no secret


@pytest.mark.parametrize(("entry", "message"), [
    ("  on-call: {type: slack, url: 'https://hooks.slack.com/services/T0/B0/XXX'}",
     "segship.yaml:18:31: notifications.on-call.url is a secret: write a reference such as ${env:ON_CALL_URL} or "
     "${file:path/to/secret}, never the secret itself"),
    ("  hook: {type: webhook, url: '${env:HOOK_URL}', secret: signing-secret}",
     "segship.yaml:18:57: notifications.hook.secret is a secret: write a reference such as ${env:HOOK_SECRET} or "
     "${file:path/to/secret}, never the secret itself"),
    ("  mail: {type: email, from: a@example.com, to: [b@example.com], smtp: {host: h, username: u, password: pw}}",
     "segship.yaml:18:104: notifications.mail.smtp.password is a secret: write a reference such as "
     "${env:MAIL_SMTP_PASSWORD} or ${file:path/to/secret}, never the secret itself"),
    ("  mail: {type: email, from: a@example.com, to: [b@example.com], smtp: {host: h, username: u, password: "
     "'${env:P}', starttls: false}}",
     "segship.yaml:18:126: notifications.mail.smtp.starttls: a login needs STARTTLS: without it the password would "
     "cross the network in clear (leave starttls out, or true)"),
    ("  mail: {type: email, from: a@example.com, to: [b@example.com], smtp: {host: h, password: '${env:P}'}}",
     "segship.yaml:18:81: notifications.mail.smtp.password needs 'username' beside it"),
    ("  on-call: {type: slack, url: '${env:U}', exports: [vip-brevo, vip-braze]}",
     "segship.yaml:18:64: notification 'on-call' names export 'vip-braze', which is not defined (exports: vip-brevo)"),
    ("  on-call: {type: slack, url: '${env:U}', events: [failed, flaky]}",
     "segship.yaml:18:60: notifications.on-call.events.1 must be one of 'failed', 'safeguard', 'rejects', 'drop', "
     "'stale'; got 'flaky'"),
    ("  on-call: {type: slack, url: '${env:U}', channel: '#ops'}",
     "segship.yaml:18:43: unknown key 'channel' in notifications.on-call; expected one of: events, exports, type, url"),
    ("  pager: {type: pagerduty, routing_key: '${env:K}'}",
     "segship.yaml:18:17: notifications.pager.type must be one of 'email', 'slack', 'webhook'; got 'pagerduty' "
     "(is the plugin installed? see `segship plugins`)"),
])
def test_a_wrong_channel_is_a_validate_error_that_never_quotes_a_secret(entry: str, message: str, segship,
                                                                        write_config) -> None:
    write_config({"segship.yaml": BASE + "notifications:\n" + entry + "\n"})
    result = segship("validate")
    assert result.exit_code == 2, result
    assert result.stderr.splitlines() == [message], result
    for secret in ("XXX", "signing-secret", "pw}"):
        assert secret not in result.stderr


@pytest.mark.parametrize(("alerts", "message"), [
    ("{stale_after: 6 hours}", "exports.vip-brevo.alerts.stale_after: '6 hours' does not match the expected pattern"),
    ("{max_dropped_fraction: 1.5}", "exports.vip-brevo.alerts.max_dropped_fraction must be <= 1; got 1.5"),
    ("{max_rejected: 0.1}", "unknown key 'max_rejected' in exports.vip-brevo.alerts (did you mean "
                            "'max_rejected_fraction'?)"),
])
def test_wrong_alert_thresholds_are_validate_errors(alerts: str, message: str, segship, write_config) -> None:
    write_config({"segship.yaml": BASE + f"    alerts: {alerts}\n"})
    result = segship("validate")
    assert result.exit_code == 2, result
    assert message in result.stderr, result


def test_each_notifier_is_composed_under_its_type_and_editors_accept_references() -> None:
    plugins = build_plugins()
    schema = composed_schema(plugins)
    jsonschema.Draft202012Validator.check_schema(schema)
    notification = schema["$defs"]["notification"]
    assert notification["properties"]["type"]["enum"] == ["email", "slack", "webhook"]
    assert core_schema()["$defs"]["notification"]["properties"]["events"]["items"]["enum"] == list(EVENTS)
    validator = jsonschema.Draft202012Validator(schema)
    document = {"version": 1, "notifications": {"on-call": {"type": "slack", "url": "${env:SLACK_WEBHOOK_URL}"}}}
    assert not list(validator.iter_errors(document))
    document["notifications"]["on-call"]["to"] = ["a@example.com"]  # an email channel's key, not slack's
    assert [error.message for error in validator.iter_errors(document)]


def test_channels_in_files_of_their_own_merge_by_name(segship, write_config) -> None:
    write_config({"configs/main.yaml": BASE, "configs/alerts/on-call.yaml": CHANNELS,
                  "configs/alerts/more.yaml": "notifications:\n  hook: {type: webhook, url: '${env:OTHER_URL}'}\n"})
    result = segship("validate", "-c", "configs")
    assert result.exit_code == 2, result
    assert result.stderr.splitlines() == [
        "configs/alerts/on-call.yaml:7:3: notification 'hook' is defined twice: first at "
        "configs/alerts/more.yaml:2:3"]
    write_config({"configs/alerts/more.yaml": "notifications:\n  pager: {type: webhook, url: '${env:OTHER_URL}'}\n"})
    result = segship("validate", "-c", "configs")
    assert result.exit_code == 0, result
