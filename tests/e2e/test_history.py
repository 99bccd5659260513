"""``segship runs``: one line per run, whole reports in JSON, and an unknown export is a usage error."""

from __future__ import annotations

import json

from .conftest import profile


def rows(count: int) -> list[dict]:
    return [profile(i) for i in range(1, count + 1)]


def test_runs_keeps_one_line_per_run_and_json_has_the_whole_message(project):
    project.configure(max_removed=0.2)
    project.write(rows(20))
    assert project.cli("export", "vip-braze").returncode == 0
    project.write(rows(10))  # half would leave: the safeguard stops the run with a long message
    assert project.cli("export", "vip-braze").returncode == 1

    text = project.cli("runs")
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if "vip-braze" in line]
    assert len(lines) == 2, text.stdout
    assert "aborted" in lines[0] and "export 'vip-braze' would remove 10 of the 20 members" in lines[0], text.stdout
    assert lines[0].endswith("… │"), text.stdout  # cut to the width left
    assert "succeeded" in lines[1], text.stdout

    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert [run["outcome"] for run in runs] == ["aborted", "succeeded"]
    message = runs[0]["report"]["message"]
    assert message.startswith("export 'vip-braze' would remove 10 of the 20 members") and \
        message.endswith("nothing was sent"), message
    assert runs[1]["report"]["upserted"] == 20


def test_runs_of_an_unknown_export_is_a_usage_error(project):
    unknown = project.cli("runs", "nope")
    assert unknown.returncode == 2, unknown.stdout
    assert "unknown export 'nope' (exports: vip-braze, vip-brevo)" in unknown.stderr
    assert project.cli("runs", "vip-brevo").returncode == 0  # in the config, no run yet
