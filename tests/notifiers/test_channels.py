"""The built-in channels against real receivers on 127.0.0.1: what each sends, and how each fails."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from segship.notifiers.contract import Alert, NotifierError
from segship.notifiers.email import EmailNotifier
from segship.notifiers.slack import SlackNotifier, slack_message
from segship.notifiers.webhook import WebhookNotifier

from ..alert_receivers import WebhookReceiver

FAILED = Alert("failed", "open", "vip-braze", 12,
               "run 12 of vip-braze failed: Braze answered HTTP 503 <twice> & gave up", {"outcome": "failed"})
RESOLVED = Alert("rejects", "resolved", "vip-braze", 15,
                 "vip-braze: rows refused, open since 2026-01-05T09:00:00+00:00 by run 12, is resolved: run 15 succeeded",
                 {"rejected": 0, "rows_sent": 1200, "rejected_fraction": 0.0, "new_reasons": [],
                  "opened_at": "2026-01-05T09:00:00+00:00", "opened_by_run": 12})


# -- slack ----------------------------------------------------------------------------------------------

def test_the_slack_message_is_readable_block_kit_with_a_text_fallback() -> None:
    message = slack_message(FAILED)
    assert message["text"] == (":rotating_light: vip-braze: run failed: run 12 of vip-braze failed: Braze answered "
                               "HTTP 503 &lt;twice&gt; &amp; gave up")
    header, section, fields, context = message["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "emoji": True,
                                                  "text": ":rotating_light: vip-braze: run failed"}}
    assert section["text"] == {"type": "mrkdwn", "text": "run 12 of vip-braze failed: Braze answered HTTP 503 "
                                                         "&lt;twice&gt; &amp; gave up"}
    assert fields == {"type": "section", "fields": [{"type": "mrkdwn", "text": "*outcome*\nfailed"}]}
    assert context["elements"][0]["text"] == "segship · export vip-braze · event failed (open) · run 12"


def test_a_resolved_slack_message_says_so_and_shows_its_figures() -> None:
    message = slack_message(RESOLVED)
    assert message["blocks"][0]["text"]["text"] == ":white_check_mark: vip-braze: rows refused (resolved)"
    assert [field["text"] for field in message["blocks"][2]["fields"]] == [
        "*rejected*\n0", "*rows_sent*\n1,200", "*rejected_fraction*\n0", "*new_reasons*\nnone",
        "*opened_at*\n2026-01-05T09:00:00+00:00", "*opened_by_run*\n12"]


def test_block_kit_limits_are_kept() -> None:
    long = Alert("stale", "open", "x" * 200, None, "m" * 5000, {f"f{index}": index for index in range(15)})
    header, section, fields, context = slack_message(long)["blocks"]
    assert len(header["text"]["text"]) == 150 and header["text"]["text"].endswith("…")
    assert len(section["text"]["text"]) == 3000
    assert len(fields["fields"]) == 10
    assert "run" not in context["elements"][0]["text"].split("·")[-1]  # the scheduler's: no run


async def test_slack_posts_the_message_to_the_incoming_webhook(webhook_receiver) -> None:
    await SlackNotifier("on-call", {"url": webhook_receiver.url + "/services/T0/B0/token"}).send(FAILED)
    [delivery] = webhook_receiver.deliveries()
    assert delivery.path == "/services/T0/B0/token"
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.json() == slack_message(FAILED)


async def test_a_refusal_is_a_notifier_error_with_slacks_word_and_without_the_url(webhook_receiver) -> None:
    webhook_receiver.refuse(404, "no_service")
    with pytest.raises(NotifierError) as raised:
        await SlackNotifier("on-call", {"url": webhook_receiver.url + "/services/T0/B0/token"}).send(FAILED)
    assert str(raised.value) == "channel 'on-call' answered HTTP 404: no_service"


async def test_a_redirect_is_not_followed(webhook_receiver) -> None:
    webhook_receiver.refuse(302, "")
    with pytest.raises(NotifierError, match="answered HTTP 302"):
        await SlackNotifier("on-call", {"url": webhook_receiver.url + "/hook"}).send(FAILED)
    assert len(webhook_receiver.deliveries()) == 1


async def test_an_unreachable_channel_is_a_notifier_error() -> None:
    with WebhookReceiver() as gone:
        url = gone.url + "/hook"
    with pytest.raises(NotifierError, match=r"channel 'on-call' could not be reached: ClientConnectorError"):
        await SlackNotifier("on-call", {"url": url}).send(FAILED)


# -- webhook ------------------------------------------------------------------------------------------------

async def test_the_webhook_body_is_exactly_the_designs_six_keys_signed_with_the_secret(webhook_receiver) -> None:
    await WebhookNotifier("hook", {"url": webhook_receiver.url + "/alerts", "secret": "signing-secret"}).send(RESOLVED)
    [delivery] = webhook_receiver.deliveries("/alerts")
    assert delivery.json() == {"event": "rejects", "status": "resolved", "export": "vip-braze", "run_id": 15,
                               "message": RESOLVED.message, "figures": RESOLVED.figures}
    expected = hmac.new(b"signing-secret", delivery.body, hashlib.sha256).hexdigest()
    assert delivery.headers["X-Segship-Signature"] == f"sha256={expected}"


async def test_an_unsigned_webhook_has_no_signature_and_a_null_run_id_for_the_schedulers_alert(
        webhook_receiver) -> None:
    stale = Alert("stale", "open", "vip-braze", None, "no successful run", {"stale_after_seconds": 21600})
    await WebhookNotifier("hook", {"url": webhook_receiver.url + "/alerts"}).send(stale)
    [delivery] = webhook_receiver.deliveries()
    assert "X-Segship-Signature" not in delivery.headers
    assert delivery.json()["run_id"] is None


# -- email ----------------------------------------------------------------------------------------------------

def _email_settings(port: int, **smtp: object) -> dict[str, object]:
    return {"smtp": {"host": "127.0.0.1", "port": port, **smtp}, "from": "segship@example.com",
            "to": ["data-oncall@example.com", "lead@example.com"]}


async def test_email_through_a_relay_is_plain_smtp_without_a_login(smtp_server) -> None:
    await EmailNotifier("ops-mail", _email_settings(smtp_server.port)).send(FAILED)
    [message] = smtp_server.messages()
    assert message["Subject"] == "[segship] ALERT: vip-braze: run failed"
    assert (message["From"], message["To"]) == ("segship@example.com", "data-oncall@example.com, lead@example.com")
    assert message["X-Envelope-To"] == "data-oncall@example.com, lead@example.com"
    assert (message["X-Over-TLS"], message["X-Authenticated-As"]) == ("False", "")
    assert message.get_content().splitlines() == [
        FAILED.message, "", "outcome: failed", "", "export: vip-braze", "event: failed (open)", "run: 12"]


async def test_email_with_a_login_upgrades_with_starttls_first(smtp_tls_server, certificate_authority,
                                                               tmp_path: Path, monkeypatch) -> None:
    certificate_authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    settings = _email_settings(smtp_tls_server.port, username="mailer", password="smtp-password-value")
    await EmailNotifier("ops-mail", settings).send(RESOLVED)
    [message] = smtp_tls_server.messages()
    assert message["Subject"] == "[segship] RESOLVED: vip-braze: rows refused (resolved)"
    assert (message["X-Over-TLS"], message["X-Authenticated-As"]) == ("True", "mailer")


async def test_a_wrong_password_is_a_notifier_error_that_never_quotes_it(smtp_tls_server, certificate_authority,
                                                                         tmp_path: Path, monkeypatch) -> None:
    certificate_authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    settings = _email_settings(smtp_tls_server.port, username="mailer", password="not-the-password")
    with pytest.raises(NotifierError) as raised:
        await EmailNotifier("ops-mail", settings).send(FAILED)
    assert str(raised.value).startswith(f"channel 'ops-mail': SMTP 127.0.0.1:{smtp_tls_server.port}: "
                                        "SMTPAuthenticationError: (535")
    assert "not-the-password" not in str(raised.value)
    assert smtp_tls_server.messages() == []


async def test_a_server_certificate_the_system_does_not_trust_is_refused(smtp_tls_server, monkeypatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    settings = _email_settings(smtp_tls_server.port, username="mailer", password="smtp-password-value")
    with pytest.raises(NotifierError, match="CERTIFICATE_VERIFY_FAILED"):
        await EmailNotifier("ops-mail", settings).send(FAILED)
    assert smtp_tls_server.messages() == []
