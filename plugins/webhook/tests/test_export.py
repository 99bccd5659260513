"""The webhook destination end to end: the real ``segship`` CLI (a subprocess) against the sandbox."""

from __future__ import annotations

import hashlib
import hmac
import json

import orjson
from aiohttp import web
from segship_webhook.sandbox import WebhookSandbox

from .conftest import EXPORT, SECRET, SandboxHandle, profile


def report(project, name: str = "report.json") -> dict:
    """The run report of the export."""
    [run] = json.loads((project.root / name).read_text())["exports"]
    return run


def test_a_first_run_posts_every_member_with_every_field(project):
    project.write([profile(1), profile(2, tier=""), profile(3)])
    result = project.cli("export", EXPORT)
    assert result.returncode == 0, result.stderr
    members = project.sandbox.members()
    assert members["C001"] == {"identity": "C001", "fields": {"email": "user1@example.com", "tier": "gold",
                                                              "lifetime_value": 1001}}
    assert members["C002"]["fields"]["tier"] is None  # an empty value is sent, as null
    [empty_check, batch] = project.sandbox.batches()  # the connection check, then one batch of 3
    assert empty_check == {"path": "/members", "export": EXPORT, "members": []}
    assert batch["path"] == "/members" and [member["key"] for member in batch["members"]] == ["C001", "C002", "C003"]


def test_a_change_sends_only_the_changed_fields_and_an_unchanged_run_nothing(project):
    project.write([profile(1), profile(2)])
    assert project.cli("export", EXPORT).returncode == 0
    project.write([profile(1, tier="platinum"), profile(2)])
    result = project.cli("export", EXPORT)
    assert result.returncode == 0, result.stderr
    change = project.sandbox.batches()[-1]
    assert change["members"] == [{"key": "C001", "identity": "C001", "fields": {"tier": "platinum"}}]
    assert project.sandbox.members()["C001"]["fields"] == {"email": "user1@example.com", "tier": "platinum",
                                                           "lifetime_value": 1001}
    sent = len(project.sandbox.batches())
    assert project.cli("export", EXPORT).returncode == 0
    assert len(project.sandbox.batches()) == sent  # nothing to send: not even the connection check


def test_leavers_are_posted_to_the_remove_path(project):
    project.write([profile(1), profile(2), profile(3)])
    assert project.cli("export", EXPORT).returncode == 0
    project.write([profile(1)])
    result = project.cli("export", EXPORT)
    assert result.returncode == 0, result.stderr
    removal = project.sandbox.batches()[-1]
    assert removal == {"path": "/members/remove", "export": EXPORT,
                       "members": [{"key": "C002", "identity": "C002"}, {"key": "C003", "identity": "C003"}]}
    assert set(project.sandbox.members()) == {"C001"}


def test_refused_members_are_reported_and_sent_again_next_run(project):
    project.write([profile(1), profile(2), profile(3)])
    project.sandbox.refuse("C002")
    result = project.cli("export", EXPORT, "--report", "report.json")
    assert result.returncode == 3, result.stderr  # refused for the first time
    assert report(project)["rejected"] == 1 and set(project.sandbox.members()) == {"C001", "C003"}
    rejects = json.loads(project.cli("rejects", EXPORT, "--json").stdout)
    assert [(row["key"], row["reason"], row["origin"]) for row in rejects] == [
        ("C002", "refused by the service: identity C002 is on the refuse list", "destination")]
    project.sandbox.refuse()
    result = project.cli("export", EXPORT)
    assert result.returncode == 0, result.stderr
    assert project.sandbox.batches()[-1]["members"] == [
        {"key": "C002", "identity": "C002", "fields": {"email": "user2@example.com", "tier": "gold",
                                                       "lifetime_value": 1002}}]
    assert set(project.sandbox.members()) == {"C001", "C002", "C003"}


def test_every_body_is_signed_with_the_secret(project, tmp_path):
    # a receiver without the secret can't check anything: the sandbox's raw bodies are checked here
    bodies: list[tuple[bytes, str]] = []

    class Recording(WebhookSandbox):
        async def _receive(self, request):
            bodies.append((await request.read(), request.headers["X-Segship-Signature"]))
            return await super()._receive(request)

    with SandboxHandle(Recording(secret=SECRET)) as sandbox:
        project.configure(url=sandbox.url)
        project.write([profile(1), profile(2)])
        assert project.cli("export", EXPORT).returncode == 0
    assert len(bodies) == 2
    for body, header in bodies:
        assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert orjson.loads(body)["export"] == EXPORT


def test_a_wrong_secret_stops_the_run_naming_the_setting_never_the_secret(project):
    project.write([profile(1)])
    wrong = "whsec-wrong-secret-0000000000000000"
    result = project.cli("--log-level", "debug", "export", EXPORT, "--report", "report.json",
                         env={**project.env, "WEBHOOK_SECRET": wrong})
    assert result.returncode == 1
    assert "the service refused the signature: check connections.service.settings.secret" in result.stdout
    for text in (result.stdout, result.stderr, (project.root / "report.json").read_text()):
        assert wrong not in text and SECRET not in text
    assert project.sandbox.members() == {}


def test_429_and_5xx_are_retried(project):
    project.write([profile(1), profile(2)])
    project.sandbox.set_faults(canned_answers=[
        {"path": "/members", "status": 429, "body": "", "count": 2},
        {"path": "/members", "status": 503, "body": "", "count": 1}])
    result = project.cli("export", EXPORT, "--report", "report.json")
    assert result.returncode == 0, result.stderr
    assert project.sandbox.stats()["canned_answers"] == 3 and set(project.sandbox.members()) == {"C001", "C002"}
    assert report(project)["http"]["throttled"] == 2


def test_an_answer_that_is_not_the_protocols_acknowledges_nothing(project):
    class BehindAProxy(WebhookSandbox):
        """Answers a batch of members with a proxy's page (the empty connection check gets through)."""

        proxy = True

        async def _receive(self, request):
            if self.proxy and orjson.loads(await request.read())["members"]:
                return web.Response(text="<html>hi</html>", content_type="text/html")
            return await super()._receive(request)

    project.write([profile(1), profile(2)])
    with SandboxHandle(BehindAProxy(secret=SECRET)) as sandbox:
        project.configure(url=sandbox.url)
        result = project.cli("export", EXPORT)
        assert result.returncode == 1
        assert "answered HTTP 200 with 15 bytes of text/html" in result.stdout, result.stdout
        assert "not a JSON object; nothing of the batch is counted as delivered" in result.stdout
        assert sandbox.members() == {}
        sandbox.call(lambda: setattr(sandbox.sandbox, "proxy", False))
        result = project.cli("export", EXPORT)  # the proxy is gone: every member is sent again
        assert result.returncode == 0, result.stderr
        assert set(sandbox.members()) == {"C001", "C002"}
        assert [member["key"] for member in sandbox.batches()[-1]["members"]] == ["C001", "C002"]


def test_plan_and_a_dry_run_need_no_secret(project):
    project.write([profile(1), profile(2)])
    env = {name: value for name, value in project.env.items() if name != "WEBHOOK_SECRET"}
    plan = project.cli("plan", EXPORT, "--format", "json", env=env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)[0]["add"] == 2
    dry = project.cli("export", EXPORT, "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert project.sandbox.batches() == []


def test_new_paths_move_the_members(project):
    project.write([profile(1), profile(2)])
    assert project.cli("export", EXPORT).returncode == 0
    project.configure(settings={"upsert_path": "/vip", "remove_path": "/vip/remove"})
    plan = project.cli("plan", EXPORT)
    assert plan.returncode == 0 and "move" in plan.stdout, plan.stdout
    result = project.cli("export", EXPORT)
    assert result.returncode == 0, result.stderr
    assert project.sandbox.members() == {} and set(project.sandbox.members(collection="/vip")) == {"C001", "C002"}


def test_a_literal_secret_is_refused_by_validate_without_quoting_it(project):
    project.configure(secret=SECRET)
    project.write([profile(1)])
    result = project.cli("validate")
    assert result.returncode == 2
    assert "connections.service.settings.secret is a secret" in result.stdout + result.stderr
    assert SECRET not in result.stdout + result.stderr
