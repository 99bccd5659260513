"""How `segship plan` shows its plans: a terminal table, JSON, or Markdown for a pull-request comment.

Each export's plan comes with the safeguard that would stop its run, if any (``stops``),
so a reviewer sees before merging that a change would be refused, not only at run time; and the
exports gone from the config that left members in their destination (``retired``), so deleting
an export is not mistaken for removing its members.
Rows refused before are counted apart from the members to add: ``retry`` (sent again) and
``still refused`` (segship's mapping refused them as they are: not sent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.table import Table

from segship.engine.report import ExportPlan

if TYPE_CHECKING:
    from segship.engine.retire import RetiredExport  # the engine's run machinery: imported when a plan runs

#: First line of the Markdown comment: the CI workflow finds its earlier comment by it and edits it.
MARKDOWN_MARKER = "<!-- segship-plan -->"
COUNTS = ("members", "add", "retry", "update", "remove", "unchanged", "refused")
#: A count's column heading, where it isn't the count's name
HEADINGS = {"refused": "still refused"}


class PlanFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def count(plan: ExportPlan, name: str) -> int:
    """A column of the plan's table: ``remove`` is every removal a run makes (``ExportPlan.removals``:
    a move's removals from earlier targets too), as its report's ``removed`` counts them."""
    return plan.removals if name == "remove" else getattr(plan, name)


def has_changes(plan: ExportPlan) -> bool:
    return bool(plan.add or plan.retry or plan.update or plan.remove or plan.move or plan.stale_identities
                or plan.settings_changed)


def headings() -> list[str]:
    return [HEADINGS.get(count, count) for count in COUNTS]


def settings_note(plan: ExportPlan) -> str:
    return f"its settings or mapping changed since the last run: all {plan.members} members will be sent again whole"


def still_refused_note(plan: ExportPlan) -> str:
    return (f"{plan.refused} row(s) still refused by the mapping rules"
            + (f" since run {plan.refused_since_run}" if plan.refused_since_run else "")
            + f", unchanged: not sent (`segship rejects {plan.export} --summary` says why)")


def hashes_note(plan: ExportPlan) -> str:
    return (f"state's hashes were made by an older segship (DuckDB's hash()); the next run converts those of "
            f"{plan.hashes_converted} member(s) to segship's own, re-sending only rows that changed")


def left_out_note(plan: ExportPlan) -> str:
    return (f"{plan.left_out} key(s) share their destination identity with a lower key and are left out "
            "(identity_conflicts: first)")


def empty_state_note(plan: ExportPlan) -> str:
    return ("state holds none of its members: before sending, the run asks the destination how many members its "
            "target holds and stops if any (lost state? `segship state rebuild`, or `--allow-empty-state` once)")


def retired_note(retired: RetiredExport) -> str:
    stale = f" and {retired.stale_identities} old identities" if retired.stale_identities else ""
    return (f"no longer in the config, but its {retired.members} members{stale} are still in its destination: "
            f"`segship retire {retired.name}` removes them and forgets its state (`--dry-run` first)")


def as_json(plans: Sequence[ExportPlan], stops: Mapping[str, str | None],
            retired: Sequence[RetiredExport] = ()) -> str:
    """The plans, then each retired export as a plan of nothing to do (it can't run) whose ``acknowledged``
    members are still in its destination; ``retired`` tells them apart."""
    documents: list[dict[str, Any]] = [{**plan.as_dict(), "stopped_by_safeguard": stops.get(plan.export),
                                        "retired": False} for plan in plans]
    documents += [{**ExportPlan(export.name, acknowledged=export.members, stale_identities=export.stale_identities
                                ).as_dict(), "stopped_by_safeguard": None, "retired": True} for export in retired]
    return orjson.dumps(documents, option=orjson.OPT_INDENT_2).decode()


def print_text(plans: Sequence[ExportPlan], stops: Mapping[str, str | None], console: Console,
               retired: Sequence[RetiredExport] = ()) -> None:
    table = Table("export", *headings(), "examples")
    for plan in plans:
        examples = "; ".join(f"{action}: {', '.join(keys)}" for action, keys in plan.examples.items())
        table.add_row(plan.export, *(str(count(plan, name)) for name in COUNTS), examples or "-")
    console.print(table)

    def say(line: str) -> None:  # plain lines, never wrapped: people grep them
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    for plan in plans:
        if stops.get(plan.export):
            say(f"{plan.export}: a run would stop before sending anything: {stops[plan.export]}")
        if plan.settings_changed:
            say(f"{plan.export}: {settings_note(plan)}")
        for line in plan.instance_lines() + plan.move_lines() + plan.removal_lines():
            say(f"{plan.export}: {line}")
        for line in plan.left_behind_lines():
            say(f"{plan.export}: {line}")
        if plan.refused:
            say(f"{plan.export}: {still_refused_note(plan)}")
        if plan.hashes_converted:
            say(f"{plan.export}: {hashes_note(plan)}")
        if plan.left_out:
            say(f"{plan.export}: {left_out_note(plan)}")
        if plan.empty_state_check and plan.to_send:
            say(f"{plan.export}: {empty_state_note(plan)}")
        for key, fields in plan.changed_fields.items():
            say(f"{plan.export}: {key} changed: {', '.join(fields) or '(no mapped field)'}")
    for export in retired:
        say(f"{export.name}: {retired_note(export)}")


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _status(plan: ExportPlan, stop: str | None) -> str:
    if stop:
        return "⛔ stopped by a safeguard"
    if plan.settings_changed:
        return "⚠️ re-sends every member"
    return "changes" if has_changes(plan) else "no changes"


def as_markdown(plans: Sequence[ExportPlan], stops: Mapping[str, str | None],
                retired: Sequence[RetiredExport] = ()) -> str:
    """A comment for a pull request: one table row per export, then what needs a reviewer's eye."""
    lines = [MARKDOWN_MARKER, "### segship plan", ""]
    retired_notes = [f"- 🗑️ `{export.name}`: {retired_note(export)}" for export in retired]
    if not plans:
        return "\n".join([*lines, "No exports.", *([""] + retired_notes if retired_notes else [])]) + "\n"
    lines += [f"| export | {' | '.join(headings())} | |", f"|---|{'--:|' * len(COUNTS)}---|"]
    for plan in plans:
        counts = " | ".join(str(count(plan, name)) for name in COUNTS)
        lines.append(f"| `{plan.export}` | {counts} | {_status(plan, stops.get(plan.export))} |")
    notes = []
    for plan in plans:
        if stops.get(plan.export):
            notes.append(f"- ⛔ `{plan.export}`: a run would stop before sending anything: "
                         f"{_cell(stops[plan.export] or '')}")
        if plan.settings_changed:
            notes.append(f"- ⚠️ `{plan.export}`: {settings_note(plan)}")
        notes += [f"- `{plan.export}`: {_cell(line)}"
                  for line in plan.instance_lines() + plan.move_lines() + plan.removal_lines()]
        notes += [f"- ⚠️ `{plan.export}`: {_cell(line)}" for line in plan.left_behind_lines()]
        if plan.refused:
            notes.append(f"- `{plan.export}`: {still_refused_note(plan)}")
        if plan.hashes_converted:
            notes.append(f"- `{plan.export}`: {hashes_note(plan)}")
        if plan.left_out:
            notes.append(f"- `{plan.export}`: {left_out_note(plan)}")
        if plan.empty_state_check and plan.to_send:
            notes.append(f"- ⚠️ `{plan.export}`: {_cell(empty_state_note(plan))}")
    notes += retired_notes
    lines += ["", *notes] if notes else []
    if not any(has_changes(plan) or stops.get(plan.export) for plan in plans):
        lines += ["", "No changes: a run now would send nothing."]
    return "\n".join(lines) + "\n"
