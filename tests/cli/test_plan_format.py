"""The plan's Markdown (a pull-request comment) and JSON, from plans made by hand."""

from __future__ import annotations

import json
from io import StringIO

from rich.console import Console
from segship.cli.plan_format import MARKDOWN_MARKER, as_json, as_markdown, print_text
from segship.engine.report import ExportPlan


def rows_of(markdown: str) -> dict[str, list[str]]:
    """Table rows by export name: the cells after the name."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_markdown_is_a_table_per_export_with_what_needs_a_reviewers_eye():
    plans = [
        ExportPlan("vip-braze", members=120, acknowledged=100, add=20, retry=5, update=3, remove=5, unchanged=85,
                   refused=7, refused_since_run=4),
        ExportPlan("news-brevo", members=40, acknowledged=40, unchanged=40, settings_changed=True),
        ExportPlan("lapsed-braze", members=10, acknowledged=100, remove=90, unchanged=10),
        ExportPlan("quiet", members=7, acknowledged=7, unchanged=7),
    ]
    stops = {"lapsed-braze": "export 'lapsed-braze' would remove 90 of the 100 members | too many"}
    markdown = as_markdown(plans, stops)
    assert markdown.startswith(MARKDOWN_MARKER + "\n")
    assert "| export | members | add | retry | update | remove | unchanged | still refused | |" in markdown
    assert rows_of(markdown) == {
        "vip-braze": ["120", "20", "5", "3", "5", "85", "7", "changes"],
        "news-brevo": ["40", "0", "0", "0", "0", "40", "0", "⚠️ re-sends every member"],
        "lapsed-braze": ["10", "0", "0", "0", "90", "10", "0", "⛔ stopped by a safeguard"],
        "quiet": ["7", "0", "0", "0", "0", "7", "0", "no changes"],
    }
    assert ("- `vip-braze`: 7 row(s) still refused by the mapping rules since run 4, unchanged: not sent "
            "(`segship rejects vip-braze --summary` says why)") in markdown
    assert "- ⚠️ `news-brevo`: its settings or mapping changed since the last run: all 40 members" in markdown
    assert ("- ⛔ `lapsed-braze`: a run would stop before sending anything: export 'lapsed-braze' would remove "
            "90 of the 100 members \\| too many") in markdown
    assert "No changes" not in markdown


def test_markdown_says_no_changes_when_no_export_would_send_anything():
    markdown = as_markdown([ExportPlan("vip", members=3, acknowledged=3, unchanged=3)], {})
    assert markdown.rstrip().endswith("No changes: a run now would send nothing.")


def test_json_keeps_every_plan_field_and_the_safeguard_stop():
    (document,) = json.loads(as_json([ExportPlan("vip", members=2, add=2)], {"vip": None}))
    assert document["export"] == "vip" and document["add"] == 2 and document["stopped_by_safeguard"] is None
    assert {"members", "update", "remove", "unchanged", "settings_changed", "examples"} <= set(document)


def test_text_notes_are_whole_lines_after_the_table():
    out = StringIO()
    plans = [ExportPlan("a-rather-long-export-name-for-wrapping", members=4, unchanged=4, settings_changed=True)]
    print_text(plans, {}, Console(file=out, width=80))
    lines = out.getvalue().splitlines()
    assert "a-rather-long-export-name-for-wrapping: its settings or mapping changed since the last run: all 4 " \
           "members will be sent again whole" \
           in lines
