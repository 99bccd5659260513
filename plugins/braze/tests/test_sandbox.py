"""The Braze sandbox speaks /users/track as Braze does: validation, answers, limits, inspection, CLI."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from segship.ratelimit import RateLimit

from segship_braze.sandbox import NO_DATA_MESSAGE, BrazeSandbox, RunningBrazeSandbox, call


async def test_a_missing_or_wrong_key_is_401_quoting_the_key(braze_sandbox):
    assert (await call(braze_sandbox.url, {}, key=None))[0] == 401
    status, _, body = await call(braze_sandbox.url, {}, key="nope-key")
    assert (status, body) == (401, {"message": "Invalid API key: nope-key"})


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "unparseable JSON"),
    ([1, 2], "must be a JSON object"),
    ({"attributes": {"external_id": "1"}}, "'attributes' must be an array"),
    ({"attributes": [{"external_id": str(n)} for n in range(76)]}, "Received 76 attributes objects"),
    ({}, NO_DATA_MESSAGE),
    ({"attributes": []}, NO_DATA_MESSAGE),
])
async def test_malformed_requests_are_400_and_change_nothing(braze_sandbox, body, message):
    status, _, answer = await call(braze_sandbox.url, body)
    assert status == 400 and message in answer["message"]
    assert braze_sandbox.users() == {}


async def test_invalid_objects_are_listed_by_index_and_the_others_applied(braze_sandbox):
    attributes = [
        {"external_id": "ok-1", "email": "a@example.com"},
        {"email": "b@example.com"},
        {"external_id": "long", "city": "x" * 256},
        {"external_id": "bad-email", "email": "nope"},
        {"external_id": "", "city": "Paris"},
        {"external_id": "bad-array", "tags": {"add": "not-a-list"}},
        {"external_id": "ok-2", "city": "x" * 255},
    ]
    status, _, answer = await call(braze_sandbox.url, {"attributes": attributes})
    assert status == 201
    assert answer["message"] == "success" and answer["attributes_processed"] == 2
    assert [(e["index"], e["input_array"]) for e in answer["errors"]] == [(i, "attributes") for i in range(1, 6)]
    assert "255" in answer["errors"][1]["type"] and "email" in answer["errors"][2]["type"]
    assert set(braze_sandbox.users()) == {"ok-1", "ok-2"}


async def test_arrays_nulls_and_increments_update_the_profile(braze_sandbox):
    url = braze_sandbox.url
    await call(url, {"attributes": [{"external_id": "1", "tier": "gold", "visits": {"inc": 2},
                                     "segs": {"add": ["a", "b"]}}]})
    await call(url, {"attributes": [{"external_id": "1", "tier": None, "visits": {"inc": 3},
                                     "segs": {"add": ["b", "c"], "remove": ["a"]}}]})
    assert braze_sandbox.user("1") == {"visits": 5, "segs": ["b", "c"]}
    assert braze_sandbox.stats()["data_points"] == 6


async def test_update_existing_only_and_aliases_never_create_users(braze_sandbox):
    url = braze_sandbox.url
    _, _, answer = await call(url, {"attributes": [
        {"external_id": "new", "_update_existing_only": True, "tier": "gold"},
        {"user_alias": {"alias_name": "n", "alias_label": "crm"}, "tier": "gold"},
        {"braze_id": "b-1", "tier": "gold"},
    ]})
    assert [e["index"] for e in answer["errors"]] == [0, 1]
    assert set(braze_sandbox.users()) == {"braze_id:b-1"}


async def test_rate_limit_headers_follow_the_sliding_window():
    with RunningBrazeSandbox(BrazeSandbox(rate_limit=RateLimit(2, 3.0))) as braze:
        body = {"attributes": [{"external_id": "1"}]}
        first = await call(braze.url, body, key="any")
        second = await call(braze.url, body, key="any")
        third = await call(braze.url, body, key="any")
    assert [answer[0] for answer in (first, second, third)] == [201, 201, 429]
    assert first[1]["X-RateLimit-Limit"] == "2" and first[1]["X-RateLimit-Remaining"] == "1"
    assert third[1]["X-RateLimit-Remaining"] == "0"
    reset = int(third[1]["X-RateLimit-Reset"])
    assert time.time() < reset <= math.ceil(time.time() + 3)


async def test_refused_users_faults_and_reset_are_driven_over_http(braze_sandbox):
    status, _, knobs = await call(braze_sandbox.url, {"refuse_external_ids": ["2"]}, path="/_sandbox/faults",
                                  key=None)
    assert status == 200 and knobs["refuse_external_ids"] == ["2"]
    _, _, answer = await call(braze_sandbox.url, {"attributes": [{"external_id": "1"}, {"external_id": "2"}]})
    assert [e["index"] for e in answer["errors"]] == [1]
    assert (await call(braze_sandbox.url, {}, path="/_sandbox/reset", key=None))[0] == 200
    assert braze_sandbox.users() == {}


async def test_canned_answers_stand_in_for_brazes_as_often_as_asked(braze_sandbox):
    canned = {"path": "/users/track", "status": 201, "body": '{"message": "success"}', "count": 1}
    status, _, knobs = await call(braze_sandbox.url, {"canned_answers": [canned]}, path="/_sandbox/faults", key=None)
    assert status == 200 and knobs["canned_answers"] == [{**canned, "content_type": "application/json",
                                                          "method": None}]
    body = {"attributes": [{"external_id": "1"}]}
    assert (await call(braze_sandbox.url, body, key=None))[::2] == (201, {"message": "success"})  # not even the key
    assert braze_sandbox.users() == {}  # Braze never saw it
    assert (await call(braze_sandbox.url, body))[::2] == (201, {"message": "success", "attributes_processed": 1})
    assert braze_sandbox.stats()["canned_answers"] == 1
    refused = await call(braze_sandbox.url, {"canned_answers": [{"status": 200}]}, path="/_sandbox/faults", key=None)
    assert refused[0] == 400  # no path


async def test_users_can_be_inspected(braze_sandbox):
    url = braze_sandbox.url
    await call(url, {"attributes": [{"external_id": str(n), "segs": {"add": ["vip"] if n % 2 else ["new"]}}
                                    for n in range(5)]})
    status, _, user = await call(url, method="GET", path="/_sandbox/users/3", key=None)
    assert (status, user) == (200, {"external_id": "3", "segs": ["vip"]})
    assert (await call(url, method="GET", path="/_sandbox/users/nobody", key=None))[0] == 404
    _, _, listing = await call(url, method="GET", path="/_sandbox/users?limit=2&array=segs", key=None)
    assert listing["count"] == 5 and len(listing["users"]) == 2
    assert listing["array_counts"] == {"new": 3, "vip": 2}
    _, _, stats = await call(url, method="GET", path="/_sandbox/stats", key=None)
    assert (stats["requests"], stats["users"], stats["objects_processed"]) == (1, 5, 5)


def test_the_sandbox_command_prints_its_url_answers_and_stops_on_sigterm():
    segship = Path(sys.executable).with_name("segship")
    process = subprocess.Popen([str(segship), "sandbox", "braze", "--port", "0", "--api-key", "cli-key-0001",
                                "--refuse", "9"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(url + "/users/track", method="POST",
                                         data=orjson.dumps({"attributes": [{"external_id": "1"},
                                                                           {"external_id": "9"}]}),
                                         headers={"Authorization": "Bearer cli-key-0001"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 201
            assert [e["index"] for e in orjson.loads(answer.read())["errors"]] == [1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_each_workspace_has_its_own_users():
    with RunningBrazeSandbox(BrazeSandbox(api_key="prod-key", workspaces={"staging-key": "staging",
                                                                      "staging-key-2": "staging"})) as sb:
        for key, tier in (("prod-key", "gold"), ("staging-key", "silver"), ("staging-key-2", "bronze")):
            status, _, _ = await call(sb.url, {"attributes": [{"external_id": "1", "tier": tier}]}, key=key)
            assert status == 201
        assert (await call(sb.url, {"attributes": [{"external_id": "1"}]}, key="unknown-key"))[0] == 401
        assert sb.users() == {"1": {"tier": "gold"}} and sb.users("staging") == {"1": {"tier": "bronze"}}
        with urllib.request.urlopen(sb.url + "/_sandbox/users?workspace=staging") as answer:
            assert orjson.loads(answer.read())["users"] == [{"external_id": "1", "tier": "bronze"}]
