"""Open and resolve: a finding becomes an alert only when its condition starts or clears.

State remembers each export's open conditions (``StateStore.open_alert``/``resolve_alert``); an
alert opens when a condition that holds is not open yet, and resolves when one that is open
clears. While a condition persists, nothing is sent. Opening and resolving each say whether
they changed state, so when two processes judge the same export (two schedulers sharing
PostgreSQL state) only one of them sends each alert.
"""

from __future__ import annotations

from collections.abc import Iterable

from segship.alerts.conditions import Finding
from segship.engine.state import OpenAlert, StateStore, now
from segship.notifiers.contract import EVENT_HEADLINES, Alert


def track(state: StateStore, export: str, findings: Iterable[Finding], *, run_id: int | None,
          cleared_by: str) -> list[Alert]:
    """The alerts ``findings`` open and resolve, recorded in state. ``cleared_by`` says, in a resolved
    alert, what ended the condition (``run 15 (succeeded)``)."""
    findings = list(findings)
    if not findings:
        return []
    open_now = state.open_alerts(export)
    alerts: list[Alert] = []
    for finding in findings:
        event = finding.event
        if finding.holds and event not in open_now:
            if state.open_alert(export, OpenAlert(event, now(), run_id, finding.message, finding.figures)):
                alerts.append(Alert(event, "open", export, run_id, finding.message, finding.figures))
        elif not finding.holds and event in open_now:
            opened = state.resolve_alert(export, event)
            if opened is not None:
                alerts.append(_resolved(export, finding, opened, run_id, cleared_by))
    return alerts


def _resolved(export: str, finding: Finding, opened: OpenAlert, run_id: int | None, cleared_by: str) -> Alert:
    by_run = f" by run {opened.run_id}" if opened.run_id is not None else ""
    message = (f"{export}: {EVENT_HEADLINES[finding.event]}, open since {opened.opened_at}{by_run}, "
               f"is resolved: {cleared_by}")
    figures = {**finding.figures, "opened_at": opened.opened_at, "opened_by_run": opened.run_id}
    return Alert(finding.event, "resolved", export, run_id, message, figures)
