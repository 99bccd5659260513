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


def test_plan_detailed_exitcode_gates_ci(project):
    """0 nothing to do, 2 changes to send, 4 a safeguard would stop a run, 1 any error (terraform's habit)."""
    project.configure(max_removed=0.2)
    project.write(rows(10))
    assert project.cli("plan").returncode == 0  # without the option, a plan that worked exits 0 as ever
    changes = project.cli("plan", "--detailed-exitcode")
    assert changes.returncode == 2, changes.stderr
    assert "| vip-braze" in changes.stdout.replace("│", "|")  # still printed
    assert project.cli("export", "--all").returncode == 0
    assert project.cli("plan", "--detailed-exitcode", "--format", "json").returncode == 0
    project.write(rows(6))  # 4 of 10 would leave: the 20% safeguard stops the run, which outweighs changes
    assert project.cli("plan", "--detailed-exitcode").returncode == 4
    assert project.cli("plan", "vip-braze", "--detailed-exitcode", "--format", "markdown").returncode == 4

    # errors are 1, never 2 (which would read as "changes"): an unknown export, a bad option, a broken config
    unknown = project.cli("plan", "nope", "--detailed-exitcode")
    assert unknown.returncode == 1 and "unknown export 'nope'" in unknown.stderr, unknown.stderr
    assert project.cli("plan", "nope").returncode == 2
    assert project.cli("plan", "--detailed-exitcode", "--bogus").returncode == 1
    assert project.cli("plan", "--bogus").returncode == 2
    (project.root / "segship.yaml").write_text("version: 1\nexports: [\n")
    broken = project.cli("plan", "--detailed-exitcode")
    assert broken.returncode == 1 and "segship.yaml" in broken.stderr, broken.stderr
