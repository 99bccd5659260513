"""Judging conditions from a run's report and from the clock (no state, no network)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from segship.alerts.conditions import Finding, after_run, staleness
from segship.config.model import AlertThresholds
from segship.engine.report import RunReport

DEFAULTS = AlertThresholds()


def report(outcome: str, *, members: int | None = 1000, upserted: int = 100, removed: int = 0, rejected: int = 0,
           reasons: dict[str, int] | None = None, message: str = "") -> RunReport:
    return RunReport("vip-braze", run_id=7, outcome=outcome, message=message, upserted=upserted, removed=removed,
                     rejected=rejected, rejects_by_reason=Counter(reasons or {}),
                     plan={"members": members, "acknowledged": 900, "remove": 0} if members is not None else {})


def success(members: int, reasons: dict[str, int] | None = None, run_id: int = 5) -> dict:
    """A last successful run, as ``StateStore.last_success`` gives it."""
    return {"id": run_id, "started_at": "2026-01-05T09:00:00+00:00", "outcome": "succeeded",
            "report": {"plan": {"members": members}, "rejects_by_reason": reasons or {}}}


def by_event(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.event: finding for finding in findings}


def test_a_failed_run_holds_failed_alone_with_its_message_secrets_and_emails_out() -> None:
    findings = after_run(report("failed", message="can't reach Braze: ann@example.com refused"), DEFAULTS, None)
    assert findings == [Finding("failed", True, "run 7 of vip-braze failed: can't reach Braze: a***@*** refused",
                                {"outcome": "failed"})]
    assert after_run(report("invalid", message=""), DEFAULTS, None)[0].message == \
        "run 7 of vip-braze failed: no reason given"


def test_a_safeguard_stop_holds_safeguard_with_the_plans_figures() -> None:
    [finding] = after_run(report("aborted", message="would remove 60% of members"), DEFAULTS, success(1000))
    assert (finding.event, finding.holds) == ("safeguard", True)
    assert finding.message == ("run 7 of vip-braze was stopped by a safeguard before sending anything: would remove "
                               "60% of members")
    assert finding.figures == {"members": 1000, "acknowledged": 900, "remove": 0}


def test_an_interrupted_run_tells_nothing() -> None:
    assert after_run(report("interrupted"), DEFAULTS, success(1000)) == []


@pytest.mark.parametrize("outcome", ["succeeded", "rejects"])
def test_a_run_that_delivered_clears_failed_safeguard_and_stale(outcome: str) -> None:
    findings = by_event(after_run(report(outcome), DEFAULTS, success(1000)))
    assert sorted(findings) == ["drop", "failed", "rejects", "safeguard", "stale"]
    assert not any(finding.holds for finding in findings.values())


def test_refusals_above_the_fraction_of_rows_sent_hold_rejects() -> None:
    reasons = {"invalid email '…'": 6}
    findings = by_event(after_run(report("rejects", upserted=94, rejected=6, reasons=reasons), DEFAULTS,
                                  success(1000, reasons)))
    assert findings["rejects"] == Finding(
        "rejects", True, "run 7 of vip-braze: 6 of the 100 rows it sent were refused (6.0%, above 5.0%)",
        {"rejected": 6, "rows_sent": 100, "rejected_fraction": 0.06, "max_rejected_fraction": 0.05,
         "new_reasons": []})
    below = by_event(after_run(report("rejects", upserted=95, rejected=5, reasons=reasons), DEFAULTS,
                               success(1000, reasons)))
    assert not below["rejects"].holds  # 5.0% is not above 5%


def test_a_new_refusal_reason_holds_rejects_however_few_rows() -> None:
    # state's rejects say which kinds of reason are new (a: refused before, still)
    findings = by_event(after_run(report("rejects", upserted=999, rejected=1, reasons={"a": 1, "b": 1, "c": 1, "d": 1}),
                                  DEFAULTS, success(1000, {"a": 3}), ["b", "c", "d"]))
    assert findings["rejects"].holds
    assert findings["rejects"].message == "run 7 of vip-braze: new refusal reasons: b; c; d"
    assert findings["rejects"].figures["new_reasons"] == ["b", "c", "d"]
    many = {f"reason {index}": 1 for index in range(5)}
    message = by_event(after_run(report("rejects", rejected=5, reasons=many), DEFAULTS, None,
                                 sorted(many)))["rejects"].message
    assert message.endswith("new refusal reasons: reason 0; reason 1; reason 2 and 2 more")


def test_members_dropped_by_more_than_the_fraction_since_the_last_success_hold_drop() -> None:
    findings = by_event(after_run(report("succeeded", members=790), DEFAULTS, success(1000, run_id=5)))
    assert findings["drop"] == Finding(
        "drop", True, "vip-braze has 790 members after run 7, 21.0% fewer than the 1,000 of run 5, its last "
                      "successful run (above 20.0%)",
        {"members": 790, "members_before": 1000, "dropped_fraction": 0.21, "max_dropped_fraction": 0.2,
         "since_run": 5})
    assert not by_event(after_run(report("succeeded", members=800), DEFAULTS, success(1000)))["drop"].holds
    assert not by_event(after_run(report("succeeded", members=5000), DEFAULTS, success(1000)))["drop"].holds
    assert not by_event(after_run(report("succeeded", members=10), DEFAULTS, None))["drop"].holds  # a first run


def test_thresholds_are_the_exports() -> None:
    strict = AlertThresholds(max_rejected_fraction=0.0, max_dropped_fraction=0.05)
    findings = by_event(after_run(report("rejects", members=940, upserted=999, rejected=1, reasons={"a": 1}), strict,
                                  success(1000, {"a": 1})))
    assert findings["rejects"].holds and findings["drop"].holds


NOW = datetime(2026, 1, 5, 16, 30, tzinfo=UTC)


def test_an_hourly_export_is_stale_six_hours_after_a_run_came_due_without_success() -> None:
    last = {"started_at": "2026-01-05T09:00:05+00:00"}  # the 09:00 run succeeded; 10:00 was due next
    assert not staleness("vip", "0 * * * *", timedelta(hours=6), last, NOW, NOW.replace(hour=16, minute=0)).holds
    finding = staleness("vip", "0 * * * *", timedelta(hours=6), last, NOW, NOW)
    assert finding == Finding("stale", True, "vip has had no successful run since 2026-01-05T09:00:05+00:00: a run "
                                             "came due at 2026-01-05T10:00:00+00:00, more than 6h ago",
                              {"last_success_at": "2026-01-05T09:00:05+00:00", "due_at": "2026-01-05T10:00:00+00:00",
                               "stale_after_seconds": 21600})


def test_a_daily_export_is_not_stale_between_its_runs() -> None:
    last = {"started_at": "2026-01-05T02:00:00+00:00"}
    assert not staleness("vip", "0 2 * * *", timedelta(hours=6), last, NOW, NOW).holds  # 14 h later: next due 02:00
    assert staleness("vip", "0 2 * * *", timedelta(hours=6), last, NOW, NOW + timedelta(hours=16)).holds


def test_without_any_success_staleness_counts_from_when_the_scheduler_started() -> None:
    started = NOW - timedelta(minutes=95)
    finding = staleness("vip", "*/15 * * * *", timedelta(minutes=90), None, started, NOW)
    assert not finding.holds  # due 15:00, 90 minutes ago exactly
    finding = staleness("vip", "*/15 * * * *", timedelta(minutes=90), None, started, NOW + timedelta(seconds=1))
    assert finding.holds and finding.message.startswith("vip has had no successful run yet: a run came due at "
                                                        "2026-01-05T15:00:00+00:00, more than 90m ago")
