"""Judging an export's conditions: after a run, from its report; and staleness, from the clock.

Each judgement is a :class:`Finding` per event it can tell about: the condition holds (an alert
opens, unless open already) or not (an open one resolves). An event a run can't tell about (a
run interrupted, a failed run's refusals) is left out, and its alert stays as it is.

- ``failed``: the run failed (``failed``, or ``invalid``: a setting or a secret it needed was wrong);
- ``safeguard``: a safeguard stopped the run before it sent anything (``aborted``);
- ``rejects``: refused rows above ``max_rejected_fraction`` of the rows the run sent, or a
  kind of refusal reason no refused row had before the run (state's rejects say which: a row
  still refused, not mapped again, keeps its kind known);
- ``drop``: members fell by more than ``max_dropped_fraction`` since the last successful run;
- ``stale``: a scheduled export has had no successful run for ``stale_after`` after one came due
  (the first scheduled time after its last success): a daily export is not stale six hours after
  its morning run, only six hours after a morning run that didn't succeed.

A run that delivered (``succeeded``, or ``rejects``: it finished with some rows refused) clears
``failed``, ``safeguard`` and ``stale``, and is the one whose refusals and members are judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from segship.config.model import AlertThresholds
from segship.engine.report import DELIVERED_OUTCOMES, RunReport
from segship.engine.schedule import next_run
from segship.log import mask_pii, redact_text

FAILED = ("failed", "invalid")
#: reasons an alert names (the figures hold them all): a long list is no message
NAMED_REASONS = 3


@dataclass(frozen=True)
class Finding:
    """Whether a condition holds now; when it does, what an alert that opens says."""

    event: str
    holds: bool
    message: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def after_run(report: RunReport, thresholds: AlertThresholds, last_success: dict[str, Any] | None,
              new_reasons: list[str] = ()) -> list[Finding]:
    """What a finished run tells of its export's conditions. ``last_success`` is the export's latest
    run that delivered before this one (``StateStore.last_success``), or None; ``new_reasons`` the
    kinds of refusal reason first seen in this run."""
    run = f"run {report.run_id} of {report.export}"
    why = mask_pii(redact_text(report.message)) or "no reason given"  # it may quote a row's email
    if report.outcome in FAILED:
        return [Finding("failed", True, f"{run} failed: {why}", {"outcome": report.outcome})]
    if report.outcome == "aborted":
        plan = report.plan or {}
        figures = {name: plan[name] for name in ("members", "acknowledged", "remove") if name in plan}
        return [Finding("safeguard", True, f"{run} was stopped by a safeguard before sending anything: {why}",
                        figures)]
    if report.outcome not in DELIVERED_OUTCOMES:
        return []  # interrupted: it tells nothing of the conditions
    before = (last_success or {}).get("report") or {}
    return [Finding("failed", False), Finding("safeguard", False), Finding("stale", False),
            _rejects(report, thresholds, run, list(new_reasons)), _drop(report, thresholds, last_success, before)]


def _rejects(report: RunReport, thresholds: AlertThresholds, run: str, new_reasons: list[str]) -> Finding:
    sent = report.upserted + report.removed + report.rejected
    fraction = report.rejected / sent if sent else 0.0
    figures = {"rejected": report.rejected, "rows_sent": sent, "rejected_fraction": round(fraction, 4),
               "max_rejected_fraction": thresholds.max_rejected_fraction, "new_reasons": new_reasons}
    parts = []
    if fraction > thresholds.max_rejected_fraction:
        parts.append(f"{report.rejected:,} of the {sent:,} rows it sent were refused ({fraction:.1%}, above "
                     f"{thresholds.max_rejected_fraction:.1%})")
    if new_reasons:
        named = "; ".join(new_reasons[:NAMED_REASONS])
        more = f" and {len(new_reasons) - NAMED_REASONS} more" if len(new_reasons) > NAMED_REASONS else ""
        parts.append(f"new refusal reason{'s' if len(new_reasons) > 1 else ''}: {named}{more}")
    return Finding("rejects", bool(parts), f"{run}: " + "; ".join(parts), figures)


def _drop(report: RunReport, thresholds: AlertThresholds, last_success: dict[str, Any] | None,
          before: dict[str, Any]) -> Finding:
    members = (report.plan or {}).get("members")
    earlier = (before.get("plan") or {}).get("members")
    if not earlier or members is None or last_success is None:
        return Finding("drop", False)
    fraction = (earlier - members) / earlier
    figures = {"members": members, "members_before": earlier, "dropped_fraction": round(fraction, 4),
               "max_dropped_fraction": thresholds.max_dropped_fraction, "since_run": last_success["id"]}
    message = (f"{report.export} has {members:,} members after run {report.run_id}, {fraction:.1%} fewer than the "
               f"{earlier:,} of run {last_success['id']}, its last successful run (above "
               f"{thresholds.max_dropped_fraction:.1%})")
    return Finding("drop", fraction > thresholds.max_dropped_fraction, message, figures)


def staleness(export: str, schedule: str, stale_after: timedelta, last_success: dict[str, Any] | None,
              watching_since: datetime, now: datetime) -> Finding:
    """Whether a scheduled export is stale at ``now``; without any successful run, it is judged from
    ``watching_since`` (when the scheduler started) instead of a last success."""
    since = datetime.fromisoformat(last_success["started_at"]) if last_success else watching_since
    due = next_run(schedule, since.astimezone(now.tzinfo))
    figures = {"last_success_at": last_success["started_at"] if last_success else None,
               "due_at": due.isoformat(timespec="seconds"), "stale_after_seconds": int(stale_after.total_seconds())}
    succeeded = f"since {figures['last_success_at']}" if last_success else "yet"
    message = (f"{export} has had no successful run {succeeded}: a run came due at {figures['due_at']}, "
               f"more than {_duration(stale_after)} ago")
    return Finding("stale", now - due > stale_after, message, figures)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
