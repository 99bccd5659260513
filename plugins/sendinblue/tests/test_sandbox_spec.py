"""Every answer of the Brevo sandbox, for every operation it serves, against Brevo's published spec.

The vendored part of the spec (brevo_api_v3.yaml, with its source) documents, per operation, the
statuses it answers and the schema of each answer; ``$ref``s resolve within it. Statuses the
spec documents globally rather than per operation (its list of possible responses: 401 for a
bad key; 429 and 5xx, which the sandbox gives only under load or fault knobs) must carry an
error body: ``errorModel`` for 401, and for 429/5xx a ``code`` and ``message`` (Brevo's 429
code, ``too_many_requests``, postdates the spec's enum of codes).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from segship.ratelimit import RateLimit

from segship_sendinblue.sandbox import BrevoFaults, BrevoSandbox, RunningBrevoSandbox, call

SPEC = yaml.safe_load((Path(__file__).parent / "brevo_api_v3.yaml").read_text(encoding="utf-8"))
GLOBAL_ERROR_BODY = {"type": "object", "required": ["code", "message"],
                     "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}
#: Brevo's current reference lists more process statuses than the spec's enum (queued,
#: in_process, completed): "processing", "failed", "cancelled"
#: (https://developers.brevo.com/reference/get-processes). The sandbox ends a failed import so.
LATER_PROCESS_STATUSES = ["processing", "failed", "cancelled"]

IMPORT, LIST, PROCESS = "/contacts/import", "/contacts/lists/{listId}", "/processes/{processId}"
ACCOUNT, REMOVE, CONTACT = "/account", "/contacts/lists/{listId}/contacts/remove", "/contacts/{identifier}"
LIST_CONTACTS = "/contacts/lists/{listId}/contacts"


def response_schema(operation: str, method: str, status: int) -> dict[str, Any] | None:
    """The schema of an answer's body; None for an answer without one (204)."""
    responses = SPEC["paths"][operation][method]["responses"]
    if str(status) in responses:
        return responses[str(status)].get("schema")
    if status == 401:
        return {"$ref": "#/definitions/errorModel"}
    assert status == 429 or status >= 500, \
        f"{method.upper()} {operation} answered {status}, a status the spec doesn't document for it"
    return GLOBAL_ERROR_BODY


def check(operation: str, method: str, status: int, body: Any, *, definitions: dict | None = None) -> None:
    documented = response_schema(operation, method, status)
    if documented is None:
        assert body is None, f"{method.upper()} {operation} answered {status} with a body the spec has none for"
        return
    schema = {**documented, "definitions": definitions or SPEC["definitions"]}
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(body)


async def answer(url: str, operation: str, method: str, path: str, body: object = None, **kwargs: Any) -> tuple:
    status, _, document = await call(url + path, method.upper(), body, **kwargs)
    check(operation, method, status, document)
    return status, document


def contacts(*emails: str) -> list[dict[str, Any]]:
    return [{"email": email, "attributes": {"FIRSTNAME": "A"}} for email in emails]


async def test_account_and_list_answers_follow_the_spec(sendinblue_sandbox):
    url = sendinblue_sandbox.url
    assert (await answer(url, ACCOUNT, "get", "/account"))[0] == 200
    assert (await answer(url, ACCOUNT, "get", "/account", key=None))[0] == 401
    assert (await answer(url, LIST, "get", "/contacts/lists/2"))[0] == 200
    assert (await answer(url, LIST, "get", "/contacts/lists/99"))[0] == 404
    assert (await answer(url, LIST, "get", "/contacts/lists/two"))[0] == 400


@pytest.mark.parametrize("body", [
    "not json",
    [1, 2],
    {"listIds": [2]},
    {"jsonBody": contacts("a@b.co")},
    {"jsonBody": contacts("a@b.co"), "listIds": [99]},
    {"jsonBody": contacts("a@b.co"), "listIds": ["2"]},
    {"jsonBody": [{"email": "a@b.co", "attributes": ["FIRSTNAME"]}], "listIds": [2]},
    {"jsonBody": contacts("a@b.co"), "listIds": [2], "smsBlacklist": "no"},
    {"jsonBody": contacts("a@b.co"), "listIds": [2], "notifyUrl": 5},
    {"jsonBody": contacts("a@b.co"), "newList": {"listName": ""}},
    {"fileUrl": "https://example.com/contacts.csv", "listIds": [2]},
])
async def test_refused_imports_answer_a_documented_400(sendinblue_sandbox, body):
    raw = body.encode() if isinstance(body, str) else None
    status, document = await answer(sendinblue_sandbox.url, IMPORT, "post", "/contacts/import",
                                    None if raw else body, raw=raw)
    assert status == 400, document


async def test_import_process_and_remove_answers_follow_the_spec():
    with RunningBrevoSandbox(BrevoSandbox(process_delay=0.1)) as sb:
        body = {"jsonBody": contacts("a@b.co", "c@d.co", "nope"), "listIds": [2], "emailBlacklist": False,
                "smsBlacklist": False, "notifyUrl": "https://example.com/done"}
        status, created = await answer(sb.url, IMPORT, "post", "/contacts/import", body)
        assert status == 202
        path = f"/processes/{created['processId']}"
        status, process = await answer(sb.url, PROCESS, "get", path)
        assert (status, process["status"]) == (200, "queued")
        while process["status"] != "completed":
            await asyncio.sleep(0.02)
            process = (await answer(sb.url, PROCESS, "get", path))[1]
        assert (await answer(sb.url, PROCESS, "get", "/processes/999"))[0] == 404
        assert (await answer(sb.url, PROCESS, "get", "/processes/first"))[0] == 400

        remove = "/contacts/lists/2/contacts/remove"
        status, removed = await answer(sb.url, REMOVE, "post", remove, {"emails": ["a@b.co", "x@y.co"]})
        assert (status, removed["contacts"]["failure"]) == (201, ["x@y.co"])
        assert (await answer(sb.url, REMOVE, "post", remove, {"emails": ["a@b.co"]}))[0] == 400  # not in it any more
        assert (await answer(sb.url, REMOVE, "post", remove, {"emails": []}))[0] == 400
        assert (await answer(sb.url, REMOVE, "post", remove, {"emails": [f"p{n}@b.co" for n in range(151)]}))[0] == 400
        assert (await answer(sb.url, REMOVE, "post", "/contacts/lists/99/contacts/remove", {"emails": ["c@d.co"]})
                )[0] == 404


async def test_list_contacts_answers_follow_the_spec(sendinblue_sandbox):
    url = sendinblue_sandbox.url
    await call(url + "/contacts/import", "POST", {"jsonBody": contacts("a@b.co", "c@d.co"), "listIds": [2]})
    while len(sendinblue_sandbox.list_contacts(2)) < 2:
        await asyncio.sleep(0.01)
    await call(url + "/contacts/a%40b.co", "PUT", {"emailBlacklisted": True})
    status, page = await answer(url, LIST_CONTACTS, "get", "/contacts/lists/2/contacts?limit=500&offset=0&sort=asc")
    assert (status, page["count"], [c["email"] for c in page["contacts"]]) == (200, 2, ["a@b.co", "c@d.co"])
    assert page["contacts"][0]["emailBlacklisted"] is True and page["contacts"][0]["listIds"] == [2]
    assert (await answer(url, LIST_CONTACTS, "get", "/contacts/lists/3/contacts"))[1] == {"contacts": [], "count": 0}
    assert (await answer(url, LIST_CONTACTS, "get", "/contacts/lists/99/contacts"))[0] == 404
    for query in ("limit=501", "limit=-1", "offset=-1", "limit=ten", "sort=up", "modifiedSince=2024-01-01"):
        assert (await answer(url, LIST_CONTACTS, "get", f"/contacts/lists/2/contacts?{query}"))[0] == 400


async def test_contact_update_answers_follow_the_spec(sendinblue_sandbox):
    url = sendinblue_sandbox.url
    await call(url + "/contacts/import", "POST", {"jsonBody": contacts("a@b.co"), "listIds": [2]})
    while not sendinblue_sandbox.list_contacts(2):
        await asyncio.sleep(0.01)
    assert (await answer(url, CONTACT, "put", "/contacts/a%40b.co", {"emailBlacklisted": True}))[0] == 204
    assert (await answer(url, CONTACT, "put", "/contacts/x%40y.co", {"emailBlacklisted": True}))[0] == 404
    for body in ({"emailBlacklisted": "yes"}, {"attributes": ["A"]}, {"listIds": [99]}, [True]):
        assert (await answer(url, CONTACT, "put", "/contacts/a%40b.co", body))[0] == 400
    assert (await answer(url, CONTACT, "put", "/contacts/42", {"smsBlacklisted": True}))[0] == 400


async def test_answers_under_faults_and_limits_carry_error_bodies():
    with RunningBrevoSandbox(BrevoSandbox(rate_limit=RateLimit(1, 60), faults=BrevoFaults(fail_next_imports=1))) as sb:
        status, created = await answer(sb.url, IMPORT, "post", "/contacts/import",
                                       {"jsonBody": contacts("a@b.co"), "listIds": [2]})
        assert (status, (await answer(sb.url, ACCOUNT, "get", "/account"))[0]) == (202, 429)
    with RunningBrevoSandbox(BrevoSandbox(faults=BrevoFaults(fail_next_imports=1))) as sb:
        created = (await answer(sb.url, IMPORT, "post", "/contacts/import",
                                {"jsonBody": contacts("a@b.co"), "listIds": [2]}))[1]
        while (process := (await call(f"{sb.url}/processes/{created['processId']}"))[2])["status"] == "queued":
            await asyncio.sleep(0.01)
        assert process["status"] == "failed"
        definitions = {**SPEC["definitions"], "getProcess": widened_process_statuses()}
        check(PROCESS, "get", 200, process, definitions=definitions)
        sb.set_faults(error_fraction=1.0, error_statuses=[500, 502, 503])
        for _ in range(3):
            assert (await answer(sb.url, LIST, "get", "/contacts/lists/2"))[0] >= 500


def widened_process_statuses() -> dict[str, Any]:
    process = SPEC["definitions"]["getProcess"]
    status = process["properties"]["status"]
    return {**process, "properties": {**process["properties"],
                                      "status": {**status, "enum": status["enum"] + LATER_PROCESS_STATUSES}}}


def test_the_vendored_spec_names_its_source():
    header = (Path(__file__).parent / "brevo_api_v3.yaml").read_text(encoding="utf-8").split("\n\n")[0]
    assert "https://github.com/getbrevo/brevo-go/blob/26055debcb4cd113dd0f6ec797fff21ab8ab79a3/api/swagger.yaml" \
        in header and SPEC["info"]["version"] == "3.0.0"
    assert {(path, method) for path, item in SPEC["paths"].items() for method in item} == {
        (ACCOUNT, "get"), (LIST, "get"), (LIST_CONTACTS, "get"), (IMPORT, "post"), (PROCESS, "get"), (REMOVE, "post"),
        (CONTACT, "put")}
