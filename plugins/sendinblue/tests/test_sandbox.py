"""The Brevo sandbox on its own: Brevo's answers, limits and the `segship sandbox sendinblue` command."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import orjson
import pytest
from segship.ratelimit import RateLimit

from segship_sendinblue.sandbox import (
    DEFAULT_ORGANIZATION_ID,
    MAX_IMPORT_BODY_BYTES,
    BrevoSandbox,
    RunningBrevoSandbox,
    call,
)
from segship_sendinblue.sandbox import SANDBOX_API_KEY as BREVO_KEY


def running_brevo_accounts():
    """A sandbox whose key reaches the default account, with another account's key and a rotated key of the first."""
    return RunningBrevoSandbox(BrevoSandbox(api_key=BREVO_KEY, process_delay=0.01, accounts={
        "xkeysib-other": "5a5dbe1100000000000000ff", "xkeysib-rotated": DEFAULT_ORGANIZATION_ID}))


async def test_the_key_is_checked_with_brevos_answer(sendinblue_sandbox):
    assert (await call(sendinblue_sandbox.url + "/account", key=None))[::2] == (
        401, {"code": "unauthorized", "message": "Key not found"})
    assert (await call(sendinblue_sandbox.url + "/account", key="other"))[0] == 401
    assert (await call(sendinblue_sandbox.url + "/account"))[0] == 200


async def test_rate_limit_headers_and_429():
    with RunningBrevoSandbox(BrevoSandbox(rate_limit=RateLimit(2, 60))) as sb:
        first = await call(sb.url + "/account")
        await call(sb.url + "/account")
        status, headers, body = await call(sb.url + "/account")
    assert first[1]["x-sib-ratelimit-limit"] == "2" and first[1]["x-sib-ratelimit-remaining"] == "1"
    assert status == 429 and body["code"] == "too_many_requests"
    assert headers["x-sib-ratelimit-remaining"] == "0" and 0 < int(headers["x-sib-ratelimit-reset"]) <= 60


@pytest.mark.parametrize("body, status, code", [
    ({"listIds": [2]}, 400, "missing_parameter"),
    ({"jsonBody": [], "listIds": [2]}, 400, "missing_parameter"),
    ({"jsonBody": ["a@b.co"], "listIds": [2]}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}]}, 400, "missing_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": ["2"]}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": [99]}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": [2], "updateExistingContacts": "yes"}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co", "attributes": ["FIRSTNAME"]}], "listIds": [2]}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": 7}], "listIds": [2]}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": [2], "smsBlacklist": "no"}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": [2], "emailBlacklist": 1}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "listIds": [2], "notifyUrl": 5}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "newList": "fresh"}, 400, "invalid_parameter"),
    ({"jsonBody": [{"email": "a@b.co"}], "newList": {"listName": "fresh"}}, 400, "invalid_parameter"),
    ({"fileBody": "EMAIL\na@b.co", "listIds": [2]}, 400, "invalid_parameter"),
])
async def test_import_bodies_are_validated(sendinblue_sandbox, body, status, code):
    answer = await call(sendinblue_sandbox.url + "/contacts/import", "POST", body)
    assert (answer[0], answer[2]["code"]) == (status, code)


async def test_a_refused_import_queues_no_process(sendinblue_sandbox):
    body = {"jsonBody": [{"email": "a@b.co", "attributes": "FIRSTNAME=A"}], "listIds": [2]}
    assert (await call(sendinblue_sandbox.url + "/contacts/import", "POST", body))[0] == 400
    assert sendinblue_sandbox.stats()["processes"] == {"queued": 0, "in_process": 0, "completed": 0, "failed": 0}


async def test_an_import_into_a_new_list_creates_it(sendinblue_sandbox):
    body = {"jsonBody": [{"email": "a@b.co"}], "newList": {"listName": "Fresh", "folderId": 3}}
    status, _, answer = await call(sendinblue_sandbox.url + "/contacts/import", "POST", body)
    assert status == 202
    status, _, found = await call(sendinblue_sandbox.url + "/contacts/lists/11")
    assert (status, found["name"], found["folderId"]) == (200, "Fresh", 3)
    while sendinblue_sandbox.list_contacts(11) == {}:
        await asyncio.sleep(0.01)


async def imported(sandbox, body: dict, key: str = BREVO_KEY) -> None:
    """Import ``body`` into list 2 (of the account ``key`` belongs to) and wait until the sandbox has processed it."""
    status, _, created = await call(sandbox.url + "/contacts/import", "POST", {"listIds": [2], **body}, key=key)
    assert status == 202
    while (await call(f"{sandbox.url}/processes/{created['processId']}", key=key))[2]["status"] != "completed":
        await asyncio.sleep(0.01)


async def test_blocklisted_contacts_stay_blocklisted_until_brevo_is_told_otherwise(sendinblue_sandbox):
    url, sandbox = sendinblue_sandbox.url, sendinblue_sandbox
    await imported(sandbox, {"jsonBody": [{"email": "a@b.co"}, {"email": "c@d.co"}]})
    assert (await call(url + "/contacts/a%40b.co", "PUT", {"emailBlacklisted": True, "smsBlacklisted": True}))[0] == 204
    assert sandbox.blacklisting("a@b.co") == {"emailBlacklisted": True, "smsBlacklisted": True}
    assert (await call(url + "/contacts/lists/2"))[2]["totalBlacklisted"] == 1
    # an import that doesn't ask to blocklist (emailBlacklist/smsBlacklist false, or left out) changes nothing
    await imported(sandbox, {"jsonBody": [{"email": "A@B.co", "attributes": {"FIRSTNAME": "Ann"}}],
                             "updateExistingContacts": True, "emailBlacklist": False, "smsBlacklist": False})
    await imported(sandbox, {"jsonBody": [{"email": "a@b.co", "attributes": {"FIRSTNAME": "Anna"}}]})
    assert sandbox.blacklisting("a@b.co") == {"emailBlacklisted": True, "smsBlacklisted": True}
    assert sandbox.list_contacts(2)["a@b.co"] == {"FIRSTNAME": "Anna"}
    # an import that asks blocklists every contact it carries, for what it names
    await imported(sandbox, {"jsonBody": [{"email": "c@d.co"}, {"email": "e@f.co"}], "smsBlacklist": True})
    assert [sandbox.blacklisting(email) for email in ("c@d.co", "e@f.co")] == [
        {"emailBlacklisted": False, "smsBlacklisted": True}] * 2
    _, _, inspected = await call(sandbox.origin + "/_sandbox/lists/2/contacts", key=None)
    assert [(c["email"], c["emailBlacklisted"], c["smsBlacklisted"]) for c in inspected["contacts"]] == [
        ("a@b.co", True, True), ("c@d.co", False, True), ("e@f.co", False, True)]
    # only the contact API lifts it
    assert (await call(url + "/contacts/a%40b.co", "PUT", {"emailBlacklisted": False}))[0] == 204
    assert sandbox.blacklisting("a@b.co") == {"emailBlacklisted": False, "smsBlacklisted": True}
    assert sandbox.stats()["contact_updates"] == 2


async def test_a_contact_update_sets_attributes_and_lists(sendinblue_sandbox):
    url, sandbox = sendinblue_sandbox.url, sendinblue_sandbox
    await imported(sandbox, {"jsonBody": [{"email": "a@b.co", "attributes": {"FIRSTNAME": "Ann", "TIER": "gold"}}]})
    body = {"attributes": {"FIRSTNAME": "Anna", "TIER": ""}, "listIds": [5], "unlinkListIds": [2]}
    assert (await call(url + "/contacts/a%40b.co", "PUT", body))[0] == 204
    assert sandbox.list_contacts(5) == {"a@b.co": {"FIRSTNAME": "Anna"}} and sandbox.list_contacts(2) == {}
    assert (await call(url + "/contacts/nobody%40b.co", "PUT", {"emailBlacklisted": True}))[2]["code"] == \
        "document_not_found"


async def test_an_import_over_10mb_is_refused(sendinblue_sandbox):
    contacts = [{"email": f"p{n}@example.com", "attributes": {"NOTES": "x" * 1000}} for n in range(11_000)]
    raw = orjson.dumps({"jsonBody": contacts, "listIds": [2]})
    assert len(raw) > MAX_IMPORT_BODY_BYTES
    status, _, body = await call(sendinblue_sandbox.url + "/contacts/import", "POST", raw=raw)
    assert status == 400 and body == {"code": "invalid_parameter", "message": "Maximum allowed json body size is 10MB"}


async def test_an_import_is_queued_then_completed_with_an_invalid_email_report():
    with RunningBrevoSandbox(BrevoSandbox(process_delay=0.2)) as sb:
        body = {"jsonBody": [{"email": "A@Example.com", "attributes": {"FIRSTNAME": "A"}}, {"email": "nope"}],
                "listIds": [2, 3]}
        status, _, answer = await call(sb.url + "/contacts/import", "POST", body)
        assert (status, answer) == (202, {"processId": 1})
        assert (await call(sb.url + "/processes/1"))[2] == {"id": 1, "name": "IMPORTUSER", "status": "queued"}
        while (process := (await call(sb.url + "/processes/1"))[2])["status"] == "queued":
            await asyncio.sleep(0.02)
        assert process["status"] == "completed"
        report = process["info"]["import"]["invalid_emails"]
        with urllib.request.urlopen(report) as csv:  # no key: Brevo's report links are pre-signed
            assert csv.read().decode().splitlines() == ["EMAIL", "nope"]
        assert sb.list_contacts(2) == sb.list_contacts(3) == {"a@example.com": {"FIRSTNAME": "A"}}
        assert (await call(sb.url + "/processes/2"))[::2] == (
            404, {"code": "invalid_parameter", "message": "processId is invalid"})


async def test_a_lists_contacts_are_paged_in_the_order_they_joined_or_its_reverse(sendinblue_sandbox):
    url = sendinblue_sandbox.url
    emails = [f"p{n}@b.co" for n in range(7)]
    await call(url + "/contacts/import", "POST", {"jsonBody": [{"email": e} for e in emails], "listIds": [4]})
    while len(sendinblue_sandbox.list_contacts(4)) < 7:
        await asyncio.sleep(0.01)

    async def page(query: str) -> list[str]:
        status, _, body = await call(f"{url}/contacts/lists/4/contacts?{query}")
        assert (status, body["count"]) == (200, 7)
        return [contact["email"] for contact in body["contacts"]]

    assert await page("sort=asc&limit=3") + await page("sort=asc&limit=3&offset=3") + \
        await page("sort=asc&limit=3&offset=6") == emails
    assert await page("") == emails[::-1]  # Brevo's default: the newest first, 50 a page
    assert await page("sort=asc&offset=7") == []
    ids = {contact["id"] for contact in (await call(f"{url}/contacts/lists/4/contacts"))[2]["contacts"]}
    assert len(ids) == 7


async def test_remove_answers_success_and_failure_and_caps_at_150(sendinblue_sandbox):
    url = sendinblue_sandbox.url
    await call(url + "/contacts/import", "POST", {"jsonBody": [{"email": "a@b.co"}], "listIds": [2]})
    while sendinblue_sandbox.list_contacts(2) == {}:
        await asyncio.sleep(0.01)
    status, _, body = await call(url + "/contacts/lists/2/contacts/remove", "POST", {"emails": ["a@b.co", "z@b.co"]})
    assert (status, body) == (201, {"contacts": {"success": ["a@b.co"], "failure": ["z@b.co"]}})
    status, _, body = await call(url + "/contacts/lists/2/contacts/remove", "POST", {"emails": ["a@b.co"]})
    assert status == 400 and body["code"] == "invalid_parameter"
    status, _, body = await call(url + "/contacts/lists/2/contacts/remove", "POST",
                                 {"emails": [f"p{n}@b.co" for n in range(151)]})
    assert status == 400 and "150" in body["message"]
    assert (await call(url + "/contacts/lists/12/contacts/remove", "POST", {"emails": ["a@b.co"]}))[0] == 404


def test_the_command_prints_its_url_answers_and_stops_on_sigterm():
    command = [sys.executable, "-c", "from segship.cli.main import main; main()", "sandbox", "sendinblue",
               "--port", "0", "--api-key", "cli-key-123", "--lists", "3,7", "--process-delay", "0.01"]
    env = {**os.environ, "SEGSHIP_LOAD_PLUGINS": "sendinblue"}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v3")
        request = urllib.request.Request(url + "/contacts/lists/7", headers={"api-key": "cli-key-123"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert orjson.loads(answer.read())["id"] == 7
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "/contacts/lists/2",
                                                          headers={"api-key": "cli-key-123"}), timeout=10)
        assert refused.value.code == 404
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_each_account_has_its_own_contacts_and_lists_and_says_who_it_is():
    with running_brevo_accounts() as sb:
        other, rotated = "xkeysib-other", "xkeysib-rotated"
        accounts = {key: (await call(sb.url + "/account", key=key))[2] for key in (BREVO_KEY, other, rotated)}
        assert accounts[BREVO_KEY]["organization_id"] == DEFAULT_ORGANIZATION_ID
        assert accounts[rotated]["organization_id"] == DEFAULT_ORGANIZATION_ID
        assert accounts[other]["organization_id"] == "5a5dbe1100000000000000ff"
        assert (await call(sb.url + "/account", key="xkeysib-unknown"))[0] == 401
        await imported(sb, {"jsonBody": [{"email": "a@b.co"}]}, key=other)
        assert sb.list_contacts(2, "5a5dbe1100000000000000ff") == {"a@b.co": {}} and sb.list_contacts(2) == {}
        status, _, found = await call(sb.url + "/contacts/lists/2", key=rotated)
        assert (status, found["uniqueSubscribers"]) == (200, 0)
        status, _, inspected = await call(sb.origin + "/_sandbox/lists/2/contacts?account=5a5dbe1100000000000000ff",
                                          key=None)
        assert (status, inspected["count"]) == (200, 1)
