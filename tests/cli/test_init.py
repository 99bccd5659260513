"""`segship init`: a config repository that validates and plans at once, with no secret set."""

from __future__ import annotations

import json

import yaml

SCAFFOLD = ("segship.yaml", "segship.schema.json", "data/profiles.csv", ".gitignore",
            ".github/workflows/segship.yml")


def test_init_scaffolds_a_repo_that_validates_and_plans_at_once(segship, tmp_path):
    created = segship("init", "repo")
    assert created.exit_code == 0, created
    repo = tmp_path / "repo"
    assert all((repo / name).is_file() for name in SCAFFOLD)

    config = (repo / "segship.yaml").read_text()
    assert config.startswith("# yaml-language-server: $schema=segship.schema.json\n")
    assert "${env:BRAZE_API_KEY}" in config and "${env:BREVO_API_KEY}" in config
    assert json.loads((repo / "segship.schema.json").read_text()) == json.loads(segship("schema").stdout)
    assert ".segship/" in (repo / ".gitignore").read_text().splitlines()

    validated = segship("validate", cwd=repo)  # no BRAZE_/BREVO_/SEGSHIP_ variable is set
    assert validated.exit_code == 0, validated
    assert "2 connections, 2 exports" in validated.stdout
    planned = segship("plan", "--format", "markdown", cwd=repo)
    assert planned.exit_code == 0, planned
    assert "| `vip-to-braze` | 2 | 2 | 0 | 0 | 0 | 0 | 0 | changes |" in planned.stdout


def test_the_workflow_validates_and_comments_the_plan_on_pull_requests_and_exports_on_merge_and_schedule(
        segship, tmp_path):
    assert segship("init").exit_code == 0
    workflow = yaml.safe_load((tmp_path / ".github/workflows/segship.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(triggers) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert triggers["push"]["branches"] == ["main"] and triggers["schedule"][0]["cron"]
    plan, export = workflow["jobs"]["plan"], workflow["jobs"]["export"]
    plan_steps = "\n".join(step.get("run", "") for step in plan["steps"])
    assert "segship validate --format github" in plan_steps
    assert "segship plan --format markdown" in plan_steps and "gh pr comment" in plan_steps
    assert plan["permissions"]["pull-requests"] == "write"
    (export_step,) = [step for step in export["steps"] if step.get("name") == "Export"]
    assert "export --all" in export_step["run"]
    assert export_step["env"] == {name: f"${{{{ secrets.{name} }}}}"
                                  for name in ("SEGSHIP_STATE_URL", "BRAZE_API_KEY", "BREVO_API_KEY")}
    assert export["concurrency"]["cancel-in-progress"] is False


def test_init_refuses_to_overwrite_and_then_writes_nothing(segship, tmp_path):
    (tmp_path / "segship.yaml").write_text("version: 1\n")
    (tmp_path / ".gitignore").write_text("mine\n")
    refused = segship("init")
    assert refused.exit_code == 2
    assert "segship.yaml" in refused.stderr and ".gitignore" in refused.stderr
    assert "already exist" in refused.stderr
    assert (tmp_path / "segship.yaml").read_text() == "version: 1\n"
    assert not (tmp_path / "segship.schema.json").exists() and not (tmp_path / ".github").exists()


def test_the_config_and_the_workflow_agree_on_shared_state_in_ci(segship, tmp_path, postgres_url):
    assert segship("init").exit_code == 0
    assert "state" not in yaml.safe_load((tmp_path / "segship.yaml").read_text())  # $SEGSHIP_STATE_URL when set
    workflow = yaml.safe_load((tmp_path / ".github/workflows/segship.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]
             if step.get("run", "").lstrip().startswith(("segship", "code=0"))]
    assert {step["name"] for step in steps} == {"Validate", "Plan", "Export"}
    assert all(step["env"]["SEGSHIP_STATE_URL"] == "${{ secrets.SEGSHIP_STATE_URL }}" for step in steps)

    ci = {"CI": "true", "SEGSHIP_STATE_URL": postgres_url}  # the workflow's steps, the secret set
    validated = segship("validate", "--format", "github", env=ci)
    assert validated.exit_code == 0 and "::warning" not in validated.stdout, validated
    assert json.loads(segship("state", "show", "--json", env=ci).stdout)["backend"] == "postgresql"
    planned = segship("plan", "--format", "markdown", env=ci)
    assert planned.exit_code == 0 and "| `vip-to-braze` | 2 | 2 | 0 | 0 | 0 | 0 | 0 | changes |" in planned.stdout, planned

    # in CI without the secret's variable, state would be a runner's empty disk: validate says so
    local = segship("validate", "--format", "github", env={"CI": "true"})
    assert local.exit_code == 0, local
    assert "::warning file=segship.yaml," in local.stdout
    assert "::state is the local file .segship/state.db and this runs in CI (CI=true)" in local.stdout
    # a laptop: the local file, no warning
    laptop = segship("validate")
    assert laptop.exit_code == 0 and "warning" not in laptop.stderr, laptop
    assert json.loads(segship("state", "show", "--json").stdout)["backend"] == "sqlite"
