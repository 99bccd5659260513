"""The webhook sandbox on its own: signatures, the protocol's bodies, collections, refusals, 429s."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import aiohttp
import orjson
from segship.notifiers.webhook import signature
from segship.ratelimit import RateLimit

from segship_webhook.sandbox import WebhookSandbox

from .conftest import SECRET, SandboxHandle


async def post(url: str, path: str, body: object, *, secret: str | None = SECRET,
               header: str | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"X-Segship-Signature": header or signature(data, secret)} if secret or header else {}
    async with aiohttp.ClientSession() as session, session.post(url + path, data=data, headers=headers) as answer:
        return answer.status, orjson.loads(await answer.read())


def member(key: str, **fields: object) -> dict:
    return {"key": key, "identity": key, "fields": fields}


async def test_members_are_kept_per_collection_and_changes_merge(webhook_sandbox: SandboxHandle):
    url = webhook_sandbox.url
    assert await post(url, "/members", {"export": "e", "members": [member("a", x=1, y=2), member("b", x=3)]}) == \
        (200, {"accepted": 2, "refused": []})
    assert (await post(url, "/members", {"export": "e", "members": [member("a", y=5)]}))[0] == 200
    assert (await post(url, "/vip", {"export": "e", "members": [member("c")]}))[0] == 200
    assert (await post(url, "/members/remove", {"export": "e", "members": [{"key": "b", "identity": "b"}]}))[0] == 200
    assert webhook_sandbox.members("e") == {"a": {"identity": "a", "fields": {"x": 1, "y": 5}}}
    assert webhook_sandbox.members("e", "/vip") == {"c": {"identity": "c", "fields": {}}}


async def test_a_signature_must_sign_the_body_with_the_secret(webhook_sandbox: SandboxHandle):
    body = {"export": "e", "members": [member("a")]}
    assert (await post(webhook_sandbox.url, "/members", body, secret="another-secret"))[0] == 401
    assert (await post(webhook_sandbox.url, "/members", body, secret=None))[0] == 401
    assert (await post(webhook_sandbox.url, "/members", body, header="sha256=abc"))[0] == 401
    assert webhook_sandbox.members("e") == {} and webhook_sandbox.stats()["bad_signatures"] == 1
    with SandboxHandle(WebhookSandbox()) as trusting:  # no secret: any well-formed signature
        assert (await post(trusting.url, "/members", body, secret="any"))[0] == 200


async def test_bodies_outside_the_protocol_are_refused(webhook_sandbox: SandboxHandle):
    for path, body in [("/members", b"not json"), ("/members", {"members": []}),
                       ("/members", {"export": "e", "members": [{"key": "a", "identity": "a"}]}),
                       ("/members/remove", {"export": "e", "members": [member("a")]}),
                       ("/members", {"export": "e", "members": [{"key": 1, "identity": "a", "fields": {}}]})]:
        status, answer = await post(webhook_sandbox.url, path, body)
        assert status == 400, (path, body, answer)


async def test_refused_identities_are_answered_by_index(webhook_sandbox: SandboxHandle):
    webhook_sandbox.refuse("b")
    status, answer = await post(webhook_sandbox.url, "/members",
                                {"export": "e", "members": [member("a"), member("b")]})
    assert (status, answer) == (200, {"accepted": 1, "refused": [
        {"index": 1, "reason": "identity b is on the refuse list"}]})
    assert set(webhook_sandbox.members("e")) == {"a"}


async def test_beyond_the_rate_limit_it_answers_429_with_retry_after():
    with SandboxHandle(WebhookSandbox(rate_limit=RateLimit(1, 60.0))) as limited:
        body = {"export": "e", "members": []}
        assert (await post(limited.url, "/members", body))[0] == 200
        async with aiohttp.ClientSession() as session:
            data = orjson.dumps(body)
            async with session.post(limited.url + "/members", data=data,
                                    headers={"X-Segship-Signature": signature(data, SECRET)}) as answer:
                assert answer.status == 429 and int(answer.headers["Retry-After"]) >= 1


def test_the_command_prints_its_url_first_and_serves():
    process = subprocess.Popen([sys.executable, "-m", "segship", "sandbox", "webhook", "--port", "0", "--secret",
                                SECRET], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/_sandbox/stats", timeout=10) as answer:
            assert orjson.loads(answer.read())["members"] == 0
    finally:
        process.terminate()
        process.wait(timeout=10)
