"""`segship plan --format markdown|json` against real state: what a pull request's comment shows."""

from __future__ import annotations

import json

from .conftest import profile


def rows(count: int) -> list[dict]:
    return [profile(i) for i in range(1, count + 1)]


def test_the_markdown_plan_shows_changes_then_no_changes_then_a_safeguard_stop(project):
    project.configure(max_removed=0.2)
    project.write(rows(10))
    without_keys = {k: v for k, v in project.env.items() if k not in ("BRAZE_API_KEY", "BREVO_API_KEY")}
    first = project.cli("plan", "--format", "markdown", env=without_keys)  # as on a pull request: no API key
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("<!-- segship-plan -->\n### segship plan\n")
    assert "| `vip-braze` | 10 | 10 | 0 | 0 | 0 | 0 | 0 | changes |" in first.stdout
    assert project.braze.stats().get("requests", 0) == 0

    assert project.cli("export", "--all").returncode == 0
    unchanged = project.cli("plan", "--format", "markdown")
    assert "| `vip-brevo` | 10 | 0 | 0 | 0 | 0 | 10 | 0 | no changes |" in unchanged.stdout
    assert "No changes: a run now would send nothing." in unchanged.stdout

    project.write(rows(6))  # 4 of 10 would leave: more than the 20% safeguard
    stopped = project.cli("plan", "--format", "markdown")
    assert "| `vip-braze` | 6 | 0 | 0 | 0 | 4 | 6 | 0 | ⛔ stopped by a safeguard |" in stopped.stdout
    assert "- ⛔ `vip-braze`: a run would stop before sending anything: export 'vip-braze' would remove 4 of " \
           "the 10 members" in stopped.stdout
    assert "nothing was sent" not in stopped.stdout

    as_json = {plan["export"]: plan for plan in json.loads(project.cli("plan", "--format", "json").stdout)}
    assert as_json["vip-braze"]["remove"] == 4 and "would remove 4" in as_json["vip-braze"]["stopped_by_safeguard"]
    alias = json.loads(project.cli("plan", "--json").stdout)  # the older spelling still works
    assert [plan["export"] for plan in alias] == ["vip-braze", "vip-brevo"]
