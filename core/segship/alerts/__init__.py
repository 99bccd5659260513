"""Alerts: an export's conditions judged after every run and by the scheduler, sent when they start
and once when they clear (``docs/alerts.md``).

Two entry points, one per judge: :func:`alerts_after_run`, which the engine calls once a run is
recorded (so ``segship export``, ``segship schedule`` and Dagster assets all judge runs the same
way), and :func:`stale_alerts`, which ``segship schedule`` calls between runs. Both return the
alerts to send with :func:`deliver`; neither raises: alerting never fails a run.

- ``conditions.py``: whether each condition holds (the judging);
- ``tracking.py``: which findings open or resolve an alert (state remembers what is open);
- ``delivery.py``: the channels that hear of an alert, and the sending.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import structlog

from segship.alerts.conditions import after_run, staleness
from segship.alerts.delivery import deliver
from segship.alerts.tracking import track
from segship.config import Config
from segship.engine.report import RunReport
from segship.engine.state import StateStore
from segship.log import redact_text
from segship.notifiers.contract import Alert

__all__ = ["alerts_after_run", "deliver", "stale_alerts"]

log = structlog.get_logger("segship.alerts")


def alerts_after_run(config: Config, state: StateStore, report: RunReport) -> list[Alert]:
    """The alerts a recorded run opens and resolves (none for a dry run, or a run never recorded).

    Called under the export's run lock, so no other run of the export judges at the same time.
    """
    if report.dry_run or report.run_id is None:
        return []
    try:
        export = config.exports[report.export]
        # kinds of reason no reject had before this run (state knows still-refused rows this run didn't map)
        new_reasons = sorted({kind["reason"] for kind in state.rejects_by_kind(report.export, examples=0)
                              if kind["since_run"] == report.run_id}) if report.new_rejects else []
        findings = after_run(report, export.alerts, state.last_success(report.export, before=report.run_id),
                             new_reasons)
        return track(state, report.export, findings, run_id=report.run_id,
                     cleared_by=f"run {report.run_id} {report.outcome}")
    except Exception as exc:  # noqa: BLE001 - a run is not failed by its alerts
        log.warning("alerts.not_judged", export=report.export, error=redact_text(f"{type(exc).__name__}: {exc}"))
        return []


def stale_alerts(config: Config, state: StateStore, exports: Iterable[str], watching_since: datetime,
                 now: datetime) -> list[Alert]:
    """The ``stale`` alerts of scheduled exports at ``now`` (see ``conditions.staleness``)."""
    alerts: list[Alert] = []
    for name in exports:
        export = config.exports[name]
        try:
            finding = staleness(name, export.schedule, export.alerts.stale_after, state.last_success(name),
                                watching_since, now)
            alerts += track(state, name, [finding], run_id=None, cleared_by="the export is no longer stale")
        except Exception as exc:  # noqa: BLE001 - the scheduler goes on
            log.warning("alerts.not_judged", export=name, error=redact_text(f"{type(exc).__name__}: {exc}"))
    return alerts
