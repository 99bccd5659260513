"""Every answer of the Braze sandbox against the responses Braze's documentation defines.

braze_users_track_responses.yaml transcribes them (with its sources): per status, the body.
A status it doesn't list is an answer Braze doesn't give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from segship.ratelimit import RateLimit

from segship_braze.sandbox import BrazeFaults, BrazeSandbox, RunningBrazeSandbox, call

DOCUMENTED = yaml.safe_load((Path(__file__).parent / "braze_users_track_responses.yaml").read_text(encoding="utf-8"))


def check(status: int, body: Any) -> None:
    responses = DOCUMENTED["responses"]
    key = str(status) if str(status) in responses else f"{str(status)[0]}XX"
    assert key in responses, f"POST /users/track answered {status}, which Braze's documentation doesn't define"
    schema = {**responses[key], "definitions": DOCUMENTED["definitions"]}
    jsonschema.Draft202012Validator(schema).validate(body)


async def answer(url: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
    status, _, document = await call(url, body, **kwargs)
    check(status, document)
    return status, document


def user(external_id: str, **attributes: Any) -> dict[str, Any]:
    return {"external_id": external_id, "email": f"{external_id}@example.com", **attributes}


async def test_successes_answer_the_documented_body(braze_sandbox):
    status, body = await answer(braze_sandbox.url, {"attributes": [user("1"), user("2", first_name="A")]})
    assert (status, body) == (201, {"message": "success", "attributes_processed": 2})
    status, body = await answer(braze_sandbox.url, {"events": [{"external_id": "1", "name": "x", "time": "2024"}]})
    assert (status, body) == (201, {"message": "success", "events_processed": 1})


async def test_refused_objects_are_documented_minor_errors(braze_sandbox):
    attributes = [user("1"), user("2", first_name="x" * 256), {"email": "nobody@example.com"}, "not an object"]
    status, body = await answer(braze_sandbox.url, {"attributes": attributes})
    assert status == 201
    assert body["attributes_processed"] == 1 and [error["index"] for error in body["errors"]] == [1, 2, 3]


@pytest.mark.parametrize("body", [
    b"{not json", [1, 2], {}, {"attributes": "1"}, {"attributes": [user(str(n)) for n in range(76)]},
])
async def test_malformed_requests_are_documented_fatal_errors(braze_sandbox, body):
    assert (await answer(braze_sandbox.url, body))[0] == 400


async def test_keys_and_urls_answer_documented_fatal_errors():
    with RunningBrazeSandbox(BrazeSandbox(api_key="good-key")) as sb:
        assert (await answer(sb.url, {"attributes": [user("1")]}, key=None))[0] == 401
        assert (await answer(sb.url, {"attributes": [user("1")]}, key="wrong-key"))[0] == 401
        assert (await answer(sb.url, {"attributes": [user("1")]}, key="good-key", path="/user/track"))[0] == 404
    with RunningBrazeSandbox(BrazeSandbox(forbidden_keys=["read-only-key"])) as sb:
        assert (await answer(sb.url, {"attributes": [user("1")]}, key="read-only-key"))[0] == 403


async def test_limits_and_faults_answer_documented_fatal_errors():
    with RunningBrazeSandbox(BrazeSandbox(rate_limit=RateLimit(1, 60), faults=BrazeFaults(seed=1))) as sb:
        assert (await answer(sb.url, {"attributes": [user("1")]}, key="k"))[0] == 201
        assert (await answer(sb.url, {"attributes": [user("1")]}, key="k"))[0] == 429
    with RunningBrazeSandbox(BrazeSandbox()) as sb:
        sb.set_faults(error_fraction=1.0, error_statuses=[500, 502, 503, 504])
        for _ in range(4):
            assert (await answer(sb.url, {"attributes": [user("1")]}, key="k"))[0] >= 500
