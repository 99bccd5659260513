"""Alerts end to end: the real CLI runs exports against the sandboxes, and the alerts land in a real
Slack-style webhook receiver, a signed webhook and an SMTP server, one per condition, once when it
starts and once when it clears, on both state backends."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from .conftest import profile

DOWN_PAGE = "<html><body><h1>404 Not Found</h1><hr>nginx</body></html>"  # the proxy's page, the sandbox gone
SLACK_PATH = "/services/T0SEGSHIP/B0ALERTS/slack-webhook-token"
WEBHOOK_SECRET = "alert-webhook-signing-secret"


def notifications(smtp_port: int) -> str:
    return f"""
notifications:
  on-call:
    type: slack
    url: ${{env:SLACK_WEBHOOK_URL}}
    exports: [vip-braze]
  hook:
    type: webhook
    url: ${{env:ALERT_WEBHOOK_URL}}
    secret: ${{env:ALERT_WEBHOOK_SECRET}}
  ops-mail:
    type: email
    smtp: {{host: 127.0.0.1, port: {smtp_port}}}
    from: segship@example.com
    to: [data-oncall@example.com]
    events: [failed]
"""


@pytest.fixture
def alerting(project, webhook_receiver, smtp_server):
    """The project with the three channels of the design pointed at the receivers."""
    with (project.root / "segship.yaml").open("a") as config:
        config.write(notifications(smtp_server.port))
    project.env.update(SLACK_WEBHOOK_URL=webhook_receiver.url + SLACK_PATH,
                       ALERT_WEBHOOK_URL=webhook_receiver.url + "/alerts", ALERT_WEBHOOK_SECRET=WEBHOOK_SECRET)
    project.write([profile(index) for index in range(1, 21)])
    return project


def export(project, name: str = "vip-braze"):
    return project.cli("export", name)


def hooks(receiver) -> list[dict]:
    """The signed webhook's alerts, each checked against its signature."""
    bodies = []
    for delivery in receiver.deliveries("/alerts"):
        signature = hmac.new(WEBHOOK_SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["X-Segship-Signature"] == f"sha256={signature}"
        bodies.append(delivery.json())
    return bodies


def test_a_failure_alerts_once_while_it_lasts_and_once_when_it_clears(alerting, braze_sandbox, webhook_receiver,
                                                                       smtp_server):
    braze_sandbox.answer_instead("/users/track", DOWN_PAGE, status=404, content_type="text/html")
    first = export(alerting)
    assert first.returncode == 1, first.stderr
    [slack] = webhook_receiver.deliveries(SLACK_PATH)
    text = slack.json()["text"]
    assert text.startswith(":rotating_light: vip-braze: run failed: run 1 of vip-braze failed: ")
    assert "404 Not Found" in text  # what answered instead of Braze
    [opened] = hooks(webhook_receiver)
    assert opened == {"event": "failed", "status": "open", "export": "vip-braze", "run_id": 1,
                      "message": opened["message"], "figures": {"outcome": "failed"}}
    [mail] = smtp_server.messages()
    assert mail["Subject"] == "[segship] ALERT: vip-braze: run failed"
    assert '"event": "alert.open"' in first.stderr

    second = export(alerting)  # down still: the alert is open, nothing is sent
    assert second.returncode == 1
    assert len(webhook_receiver.deliveries()) == 2 and len(smtp_server.messages()) == 1
    assert "alert.open" not in second.stderr

    braze_sandbox.set_faults(canned_answers=[])  # back
    third = export(alerting)
    assert third.returncode == 0, third.stderr
    assert len(project_members := alerting.braze_members()) == 20, project_members
    resolved_slack = webhook_receiver.deliveries(SLACK_PATH)[1].json()
    assert resolved_slack["text"].startswith(":white_check_mark: vip-braze: run failed (resolved): vip-braze: run "
                                             "failed, open since ")
    assert resolved_slack["text"].endswith("by run 1, is resolved: run 3 succeeded")
    [_, resolved] = hooks(webhook_receiver)
    assert (resolved["event"], resolved["status"], resolved["run_id"]) == ("failed", "resolved", 3)
    assert resolved["figures"]["opened_by_run"] == 1
    assert [message["Subject"] for message in smtp_server.messages()] == [
        "[segship] ALERT: vip-braze: run failed", "[segship] RESOLVED: vip-braze: run failed (resolved)"]

    fourth = export(alerting)  # all well, and known to be: nothing to say
    assert fourth.returncode == 0
    assert len(webhook_receiver.deliveries()) == 4 and len(smtp_server.messages()) == 2

    sent = "".join(delivery.body.decode() for delivery in webhook_receiver.deliveries())
    sent += "".join(message.as_string() for message in smtp_server.messages())
    for secret in (braze_sandbox.api_key, SLACK_PATH, WEBHOOK_SECRET):
        assert secret not in sent
    assert "user1@example.com" not in sent


def test_refused_rows_and_a_drop_alert_when_they_start_and_clear(alerting, braze_sandbox, webhook_receiver):
    rows = [profile(index) for index in range(1, 101)]
    alerting.write(rows)
    refused = [row["customer_id"] for row in rows[:10]]
    braze_sandbox.set_faults(refuse_external_ids=refused)
    first = export(alerting)
    assert first.returncode == 3, first.stderr
    [rejects] = hooks(webhook_receiver)
    assert (rejects["event"], rejects["status"], rejects["run_id"]) == ("rejects", "open", 1)
    assert rejects["figures"]["rejected"] == 10 and rejects["figures"]["rows_sent"] == 100
    assert rejects["figures"]["rejected_fraction"] == 0.1 and rejects["figures"]["new_reasons"]
    assert "10 of the 100 rows it sent were refused (10.0%, above 5.0%)" in rejects["message"]
    for key in refused:
        assert key not in json.dumps(rejects)

    braze_sandbox.set_faults(refuse_external_ids=[])
    second = export(alerting)  # the refused rows are retried and accepted
    assert second.returncode == 0, second.stderr
    assert [(alert["event"], alert["status"]) for alert in hooks(webhook_receiver)][1:] == [("rejects", "resolved")]

    alerting.write(rows[:70])  # 30% of the members leave: more than the 20% an export may lose unremarked
    third = export(alerting)
    assert third.returncode == 0, third.stderr
    drop = hooks(webhook_receiver)[2]
    assert (drop["event"], drop["status"], drop["run_id"]) == ("drop", "open", 3)
    assert drop["figures"] == {"members": 70, "members_before": 100, "dropped_fraction": 0.3,
                               "max_dropped_fraction": 0.2, "since_run": 2}

    fourth = export(alerting)  # 70 members, as the last successful run had: the drop is over
    assert fourth.returncode == 0
    assert [(alert["event"], alert["status"]) for alert in hooks(webhook_receiver)][3:] == [("drop", "resolved")]
    # the Slack channel hears of vip-braze alone; the email channel of failures alone
    assert [d.json()["text"].split(":")[2].strip() for d in webhook_receiver.deliveries(SLACK_PATH)] == [
        "vip-braze", "vip-braze", "vip-braze", "vip-braze"]


def test_a_channel_that_fails_never_fails_the_run(alerting, braze_sandbox, webhook_receiver):
    webhook_receiver.refuse(500, "internal error")
    braze_sandbox.answer_instead("/users/track", DOWN_PAGE, status=404, content_type="text/html")
    failed = export(alerting)
    assert failed.returncode == 1  # the run's own failure, not the channels'
    assert failed.stderr.count('"event": "alert.not_sent"') == 2  # slack and the webhook; the email went out
    braze_sandbox.set_faults(canned_answers=[])
    webhook_receiver.refuse(200, "ok")
    fine = export(alerting)
    assert fine.returncode == 0, fine.stderr  # a channel down earlier doesn't change the run's code either
    assert [(alert["event"], alert["status"]) for alert in hooks(webhook_receiver)][-1:] == [("failed", "resolved")]


def test_a_dry_run_judges_nothing(alerting, braze_sandbox, webhook_receiver):
    braze_sandbox.answer_instead("/users/track", DOWN_PAGE, status=404, content_type="text/html")
    dry = alerting.cli("export", "vip-braze", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert webhook_receiver.deliveries() == []
