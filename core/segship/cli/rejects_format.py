"""How refused rows and dropped fields read on a terminal: a run's summary lines, ``segship rejects
--summary``, and the line that says a table was cut.

Every text here may hold what a destination said: it is printed through ``redact_text``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from segship.log import redact_text


def shown_line(shown: int, total: int, what: str, hint: str) -> str | None:
    """"showing 100 of 2,728 rejects (…)" when a table holds fewer rows than there are, else None."""
    if shown >= total:
        return None
    return f"showing {shown:,} of {total:,} {what} ({hint})"


def still_refused_line(plan: Mapping[str, Any]) -> str | None:
    """The rows a plan left alone because segship's mapping refused them as they are, or None."""
    refused = plan.get("refused", 0)
    if not refused:
        return None
    since = plan.get("refused_since_run")
    return (f"{refused:,} row(s) still refused by the mapping rules" + (f" since run {since}" if since else "")
            + ", unchanged: not sent again until their rows or the mapping change")


def reason_lines(counts: Mapping[str, int], indent: str = "  ") -> list[str]:
    """One line per kind of reason, most first: its count and the reason (without the rows' values)."""
    return [f"{indent}{count:>7,}  {redact_text(reason)}" for reason, count in
            sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def dropped_lines(dropped: Mapping[str, Mapping[str, int]], indent: str = "  ") -> list[str]:
    """One line per column and kind of reason of the fields left out, most first."""
    rows = [(count, column, reason) for column, kinds in dropped.items() for reason, count in kinds.items()]
    return [f"{indent}{count:>7,}  {column}: {redact_text(reason)}"
            for count, column, reason in sorted(rows, key=lambda row: (-row[0], row[1], row[2]))]


def run_detail_lines(report: Mapping[str, Any]) -> list[str]:
    """What a run's summary adds about refused rows and dropped fields (a report as ``RunReport.as_dict``)."""
    lines = []
    rejected, new = report.get("rejected", 0), report.get("new_rejects", 0)
    if rejected:
        verb = "would be refused" if report.get("dry_run") else "refused"
        known = "" if report.get("dry_run") else f" ({new:,} new, {rejected - new:,} known)"
        lines += [f"rows that {verb}, by reason{known}:", *reason_lines(report.get("rejects_by_reason", {}))]
    line = still_refused_line(report.get("plan") or {})
    if line:
        lines.append(line)
    if report.get("dropped"):
        verb = "would be left out" if report.get("dry_run") else "left out (the members were sent without them)"
        lines += [f"fields {verb}, by field and reason:", *dropped_lines(report.get("dropped_fields", {}))]
    return lines


def summary_lines(export: str, total: int, by_kind: Sequence[Mapping[str, Any]],
                  dropped: Sequence[Mapping[str, Any]]) -> list[str]:
    """``segship rejects EXPORT --summary``: rejects by kind of reason, then dropped fields by column and reason."""
    lines = [f"{export}: {total:,} row(s) refused"]
    for kind in by_kind:
        since = f", since run {kind['since_run']}" if kind.get("since_run") else ""
        who = "the mapping rules" if kind["origin"] == "mapping" else "the destination"
        lines.append(f"  {kind['count']:>7,}  {redact_text(kind['reason'])}  (by {who}{since}; e.g. "
                     f"{', '.join(kind['examples'])})")
    members = sum(kind["count"] for kind in dropped)
    lines.append(f"{export}: {members:,} field(s) left out of members' records, by field and reason")
    for kind in dropped:
        lines.append(f"  {kind['count']:>7,}  {kind['field']}: {redact_text(kind['reason'])}  (e.g. "
                     f"{', '.join(kind['examples'])})")
    return lines
