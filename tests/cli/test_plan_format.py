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


def test_a_move_to_another_instance_and_members_left_in_one_unreachable_say_where_first():
    staging = {"destination": "braze", "connection": "braze-staging", "rest_endpoint": "https://rest.iad-01.braze.com"}
    target = {"segment_api_identifier": "seg-1"}
    plan = ExportPlan(
        "vip", members=30, acknowledged=30, move=30, target=target, connection="braze-prod",
        instance={**staging, "connection": "braze-prod", "rest_endpoint": "https://rest.iad-02.braze.com"},
        moves=[{"from": target, "from_instance": staging, "from_connection": "braze-staging", "members": 30}],
        left_behind=[{"from": target, "from_instance": staging, "from_connection": "braze-staging", "members": 30,
                      "reason": "connection 'braze-staging' is no longer in the config"}])
    move = ("move from segment_api_identifier seg-1 on braze-staging (destination braze, rest_endpoint "
            "https://rest.iad-01.braze.com) to segment_api_identifier seg-1 on braze-prod (destination braze, "
            "rest_endpoint https://rest.iad-02.braze.com), 30 members")
    left = ("30 member(s) left to remove from segment_api_identifier seg-1 on braze-staging (destination braze, "
            "rest_endpoint https://rest.iad-01.braze.com): connection 'braze-staging' is no longer in the config; "
            "they are removed by the first run that can reach it")
    out = StringIO()
    print_text([plan], {}, Console(file=out, width=80))
    assert [f"vip: {move}", f"vip: {left}"] == [line for line in out.getvalue().splitlines() if line.startswith("vip:")]
    markdown = as_markdown([plan], {})
    assert f"- `vip`: {move}" in markdown and f"- ⚠️ `vip`: {left}" in markdown
    (document,) = json.loads(as_json([plan], {}))
    assert document["left_behind"][0]["members"] == 30 and document["moves"][0]["from_connection"] == "braze-staging"


def test_a_new_connection_of_a_destination_that_observes_its_account_is_noted():
    plan = ExportPlan("news", members=3, acknowledged=3, unchanged=3, connection="brevo-prod",
                      previous_connection="brevo-sandbox")
    out = StringIO()
    print_text([plan], {}, Console(file=out, width=80))
    assert ("news: its connection changed from brevo-sandbox to brevo-prod: a run first asks which account "
            "brevo-prod reaches, and moves the members there if it is another") in out.getvalue().splitlines()
