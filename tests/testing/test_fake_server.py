"""The fake HTTP server answers as scripted, then by its handler or its upstream, and records every
request; its fixtures reach a plugin's tests through the pytest plugin, with no import."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from segship.sandbox import BackgroundSandbox, request_json
from segship.testing import FakeAnswer, FakeServer
from segship_braze.sandbox import SANDBOX_API_KEY, BrazeSandbox

pytest_plugins = ["pytester"]


def fetch(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request, whatever its answer's body: (status, headers, body)."""

    async def request() -> tuple[int, dict[str, str], bytes]:
        async with aiohttp.ClientSession() as session, session.request(method, url, data=body) as answer:
            return answer.status, dict(answer.headers), await answer.read()

    return asyncio.run(request())


def test_scripted_answers_come_first_in_order_then_the_handler() -> None:
    with FakeServer(lambda request: FakeAnswer(200, json={"handled": request.path})) as server:
        server.script(FakeAnswer(429, json={"message": "slow down"}, headers={"Retry-After": "7"}),
                      FakeAnswer(503, body=b"<html>gateway</html>", headers={"Content-Type": "text/html"}),
                      path="/members")
        assert asyncio.run(request_json("GET", server.url + "/account"))[::2] == (200, {"handled": "/account"})
        status, headers, body = asyncio.run(request_json("POST", server.url + "/members?page=2", {"n": 1}))
        assert (status, headers["Retry-After"], body) == (429, "7", {"message": "slow down"})
        assert fetch("POST", server.url + "/members", b"raw")[::2] == (503, b"<html>gateway</html>")
        assert asyncio.run(request_json("POST", server.url + "/members"))[::2] == (200, {"handled": "/members"})
        recorded = server.requests
    assert [(request.method, request.path) for request in recorded] == [
        ("GET", "/account"), ("POST", "/members"), ("POST", "/members"), ("POST", "/members")]
    assert recorded[1].query == {"page": "2"} and recorded[1].json() == {"n": 1}
    assert recorded[2].body == b"raw"
    assert recorded[0].at <= recorded[1].at <= recorded[2].at


def test_without_a_handler_or_upstream_it_answers_404() -> None:
    with FakeServer() as server:
        assert fetch("GET", server.url + "/anything")[0] == 404


def test_an_answer_comes_after_its_latency() -> None:
    with FakeServer(lambda request: FakeAnswer(json={})) as server:
        server.script(FakeAnswer(json={"late": True}, latency=0.3))
        started = time.monotonic()
        assert asyncio.run(request_json("GET", server.url + "/"))[2] == {"late": True}
        assert time.monotonic() - started >= 0.3


def test_a_dropped_connection_gets_no_answer() -> None:
    with FakeServer(lambda request: FakeAnswer(json={})) as server:
        server.script(FakeAnswer(drop=True))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            asyncio.run(request_json("POST", server.url + "/members", {}))
        assert asyncio.run(request_json("POST", server.url + "/members", {}))[0] == 200
        assert len(server.requests) == 2


def test_in_front_of_a_sandbox_it_passes_on_what_nothing_scripted_answers() -> None:
    with BackgroundSandbox(BrazeSandbox(api_key=SANDBOX_API_KEY)) as sandbox, \
            FakeServer(upstream=sandbox.url) as server:
        server.script(FakeAnswer(500))
        headers = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
        body = {"attributes": [{"external_id": "1", "tier": "gold"}]}
        assert asyncio.run(request_json("POST", server.url + "/users/track", body, headers=headers))[0] == 500
        status, _, answer = asyncio.run(request_json("POST", server.url + "/users/track", body, headers=headers))
        assert (status, answer["message"]) == (201, "success")
        assert sandbox.stats()["requests"] == 1
        server.clear()
        assert server.requests == []


def test_the_fixtures_need_no_import(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures="""
        import asyncio

        from segship.destination import Destination
        from segship.sandbox import request_json
        from segship.testing import ExportHarness, FakeAnswer, FakeServer


        def test_fixtures(fake_server, export_harness):
            assert isinstance(fake_server, FakeServer)
            fake_server.handler = lambda request: FakeAnswer(json={"ok": True})
            assert asyncio.run(request_json("GET", fake_server.url + "/"))[2] == {"ok": True}
            assert isinstance(export_harness(Destination, connection={}, settings={}, mapping={}, key="id"),
                              ExportHarness)
    """)
    # no -p: the kit's pytest11 entry point loads it wherever segship is installed
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
