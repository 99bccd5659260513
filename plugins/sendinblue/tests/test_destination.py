"""The destination against a real Brevo sandbox on 127.0.0.1: no HTTP mocks."""

from __future__ import annotations

import time

import orjson
import pytest
from aiohttp import web
from segship.destination import ConnectionContext, DestinationError, Member, Record
from segship.http import RetriesExhausted, RetryPolicy
from segship.ratelimit import RateLimit

from segship_sendinblue.destination import UPSERT_BATCH_SIZE, SendinblueDestination
from segship_sendinblue.sandbox import (
    DEFAULT_ORGANIZATION_ID,
    SANDBOX_API_KEY,
    BrevoSandbox,
    RunningBrevoSandbox,
    brevo_error,
    call,
)

from .conftest import person, records


async def test_joins_are_imported_into_the_list_with_their_attributes(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    await destination.prepare()
    batch = records(destination, [person(1), person(2)])
    results = await destination.upsert(batch)
    assert {(r.key, r.error) for r in results} == {("person1@example.com", None), ("person2@example.com", None)}
    assert sendinblue_sandbox.list_contacts(2) == {
        "person1@example.com": {"FIRSTNAME": "First1", "LASTNAME": "Last1", "SMS": "+33612340001", "TIER": "gold"},
        "person2@example.com": {"FIRSTNAME": "First2", "LASTNAME": "Last2", "SMS": "+33612340002", "TIER": "gold"},
    }
    assert sendinblue_sandbox.list_contacts(1) == {}


async def test_import_body_carries_brevo_flags(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    seen = []
    original = sendinblue_sandbox.sandbox._parse_import
    sendinblue_sandbox.sandbox._parse_import = lambda raw: seen.append(orjson.loads(raw)) or original(raw)
    await destination.upsert(records(destination, [person(1)]))
    assert seen[0]["listIds"] == [2]
    assert (seen[0]["updateExistingContacts"], seen[0]["emptyContactsAttributes"],
            seen[0]["disableNotification"]) == (True, False, True)


async def test_segship_never_touches_a_contacts_blocklisting(sendinblue_sandbox, make_destination):
    # Brevo warns that un-blocklisting contacts can suspend an account: segship's imports never carry
    # emailBlacklist/smsBlacklist, and segship changes no contact's blocklisting any other way
    destination = make_destination(sendinblue_sandbox.url)
    bodies = []
    original = sendinblue_sandbox.sandbox._parse_import
    sendinblue_sandbox.sandbox._parse_import = lambda raw: bodies.append(orjson.loads(raw)) or original(raw)
    rows = [person(1, emailBlacklisted=False, smsBlacklisted=False), person(2)]  # columns a mapping doesn't name
    await destination.upsert(records(destination, rows))
    status, _, _ = await call(sendinblue_sandbox.url + "/contacts/person1%40example.com", "PUT",
                              {"emailBlacklisted": True, "smsBlacklisted": True})
    assert status == 204
    changed = destination.map(person(1, tier="platinum"), frozenset({"tier"}))
    assert all(r.ok for r in await destination.upsert([changed]))
    assert all(r.ok for r in await destination.remove([Member("k1", "person1@example.com")]))
    assert all(r.ok for r in await destination.upsert(records(destination, [person(1, tier="silver")])))
    assert sendinblue_sandbox.blacklisting("person1@example.com") == {"emailBlacklisted": True, "smsBlacklisted": True}
    assert sendinblue_sandbox.blacklisting("person2@example.com") == {"emailBlacklisted": False,
                                                                      "smsBlacklisted": False}
    assert sendinblue_sandbox.list_contacts(2)["person1@example.com"]["TIER"] == "silver"
    assert len(bodies) == 3 and all(set(body) == {"jsonBody", "listIds", "updateExistingContacts",
                                                  "emptyContactsAttributes", "disableNotification"} for body in bodies)
    assert all(set(contact) <= {"email", "attributes"} for body in bodies for contact in body["jsonBody"])
    assert sendinblue_sandbox.stats()["contact_updates"] == 1  # the test's own


async def test_changed_attributes_update_the_contact_and_missing_values_keep_theirs(sendinblue_sandbox,
                                                                                    make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    await destination.upsert(records(destination, [person(1)]))
    changed = destination.map(person(1, tier="platinum", last_name=None), frozenset({"tier", "last_name"}))
    assert [r.error for r in await destination.upsert([changed])] == [None]
    assert sendinblue_sandbox.list_contacts(2)["person1@example.com"] == {
        "FIRSTNAME": "First1", "LASTNAME": "Last1", "SMS": "+33612340001", "TIER": "platinum"}


async def test_leavers_are_removed_from_the_list_only(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    await destination.upsert(records(destination, [person(n) for n in range(1, 4)]))
    leavers = [Member(f"k{n}", f"person{n}@example.com") for n in (1, 3)]
    results = await destination.remove(leavers)
    assert {(r.key, r.error) for r in results} == {("k1", None), ("k3", None)}
    assert list(sendinblue_sandbox.list_contacts(2)) == ["person2@example.com"]
    assert sendinblue_sandbox.stats()["contacts"] == 3  # the profiles stay in the account


async def test_removal_is_idempotent_and_cut_in_calls_of_150(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    await destination.upsert(records(destination, [person(n) for n in range(320)]))
    members = [Member(str(n), f"person{n}@example.com") for n in range(320)]
    before = sendinblue_sandbox.stats()["requests"]
    assert all(r.ok for r in await destination.remove(members))
    assert sendinblue_sandbox.stats()["requests"] - before == 3
    assert sendinblue_sandbox.list_contacts(2) == {}
    # a retried call or a contact removed by hand: not in the list is what was asked
    assert all(r.ok for r in await destination.remove(members[:5]))


async def test_removal_from_a_list_that_no_longer_exists_is_done(sendinblue_sandbox, make_destination):
    # an export moved from a list that was deleted since: its old members are in no list to leave
    destination = make_destination(sendinblue_sandbox.url, settings={"list_id": 999})
    results = await destination.remove([Member("k1", "person1@example.com")])
    assert [(r.key, r.error) for r in results] == [("k1", None)]


async def test_emails_brevo_refuses_fail_their_rows_only(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    good = destination.map(person(1))
    # an address our rules accept but Brevo's import reports in its invalid-email CSV
    bad = Record("k-bad", "not-an-email", orjson.dumps({"email": "not-an-email"}))
    results = {r.key: r.error for r in await destination.upsert([good, bad])}
    assert results == {"person1@example.com": None, "k-bad": "Brevo refused the email address as invalid"}
    assert list(sendinblue_sandbox.list_contacts(2)) == ["person1@example.com"]


async def test_an_invalid_email_report_that_is_no_csv_of_emails_acknowledges_nothing(sendinblue_sandbox,
                                                                                     make_destination):
    # the report link (S3, for Brevo) answered by a gateway's page instead of the CSV
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=GATEWAY_PAGE, content_type="text/html")

    gateway = web.Application()
    gateway.router.add_get("/report.csv", page)
    runner = web.AppRunner(gateway)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        process = {"id": 1, "name": "IMPORTUSER", "status": "completed",
                   "info": {"import": {"invalid_emails": f"http://127.0.0.1:{port}/report.csv"}}}
        sendinblue_sandbox.answer_instead("/processes/1", orjson.dumps(process).decode())
        destination = make_destination(sendinblue_sandbox.url)
        with pytest.raises(DestinationError, match="report of process 1 is not a CSV of emails"):
            await destination.upsert(records(destination, [person(1), person(2)]))
    finally:
        await runner.cleanup()


async def test_a_failed_import_process_fails_its_rows_with_the_reason(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.set_faults(fail_next_imports=1)
    failed = await destination.upsert(records(destination, [person(1), person(2)]))
    assert {r.error for r in failed} == {"Brevo import process 1 ended with status 'failed'"}
    assert sendinblue_sandbox.list_contacts(2) == {}
    assert all(r.ok for r in await destination.upsert(records(destination, [person(1), person(2)])))


async def test_an_import_that_never_finishes_fails_its_rows_after_the_timeout(make_destination):
    with RunningBrevoSandbox(BrevoSandbox(process_delay=30)) as sandbox:
        destination = make_destination(sandbox.url, connection={"process_timeout": 0.1})
        [result] = await destination.upsert(records(destination, [person(1)]))
    assert "did not finish within 0.1 s" in result.error


async def test_import_bodies_are_split_to_stay_under_the_size_limit(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url, max_import_bytes=1_000)
    body_sizes = []
    original = sendinblue_sandbox.sandbox._parse_import
    sendinblue_sandbox.sandbox._parse_import = lambda raw: body_sizes.append(len(raw)) or original(raw)
    batch = records(destination, [person(n) for n in range(100)])
    assert sum(len(r.payload) for r in batch) > 10 * 1_000
    assert all(r.ok for r in await destination.upsert(batch))
    assert len(body_sizes) > 10 and max(body_sizes) <= 1_000
    assert list(sendinblue_sandbox.list_contacts(2)) == [f"person{n}@example.com" for n in range(100)]


async def test_a_full_batch_of_wide_contacts_is_split_under_brevos_10mb(make_destination):
    # the sandbox refuses bodies over 10 MB as Brevo does; a full batch of wide rows is ~12 MB
    with RunningBrevoSandbox(BrevoSandbox(process_delay=0.01)) as sandbox:
        mapping = {"email": "email", "attributes": {"NOTES": "notes"}}
        destination = make_destination(sandbox.url, mapping=mapping)
        notes = "n" * 450
        batch = [destination.map({"email": f"p{n}@example.com", "notes": notes}) for n in range(UPSERT_BATCH_SIZE)]
        assert sum(len(r.payload) for r in batch) > 10 * 1024 * 1024
        assert all(r.ok for r in await destination.upsert(batch))
        assert sandbox.stats()["imports"] == 2
        assert sandbox.stats()["contacts"] == UPSERT_BATCH_SIZE


@pytest.mark.parametrize("statuses", [(429,), (500, 502, 503, 504)])
async def test_429_and_5xx_are_retried(sendinblue_sandbox, make_destination, statuses):
    destination = make_destination(sendinblue_sandbox.url, retry=RetryPolicy(attempts=10, base_delay=0.01,
                                                                              max_delay=0.02))
    sendinblue_sandbox.set_faults(error_fraction=0.5, error_statuses=statuses, seed=7)
    assert all(r.ok for r in await destination.upsert(records(destination, [person(n) for n in range(5)])))
    assert all(r.ok for r in await destination.remove([Member("k", "person1@example.com")]))
    stats = destination.http_stats
    assert (stats.throttled if statuses == (429,) else stats.server_errors) == stats.retries > 0
    assert len(sendinblue_sandbox.list_contacts(2)) == 4


async def test_the_rate_limit_headers_pause_requests_before_brevo_refuses_them(make_destination):
    # the client paces at 1000/s but the sandbox allows 2/s: x-sib-ratelimit-remaining reaching 0 holds it.
    # The import is done long before its one poll (0.01 s, polled after 0.2 s), however loaded the
    # machine: import, poll (the budget spent), then the removal, held until the budget refills.
    with RunningBrevoSandbox(BrevoSandbox(process_delay=0.01, rate_limit=RateLimit(2, 1.0))) as sandbox:
        destination = make_destination(sandbox.url, connection={"process_poll_interval": 0.2})
        started = time.monotonic()
        assert all(r.ok for r in await destination.upsert(records(destination, [person(1)])))
        assert all(r.ok for r in await destination.remove([Member("k", "person1@example.com")]))
        assert destination.http_stats.requests == 3 and time.monotonic() - started >= 0.5
        assert sandbox.stats().get("rate_limited", 0) == destination.http_stats.throttled == 0


async def test_dropped_connections_are_retried(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.set_faults(drop_fraction=0.4, seed=3)
    assert all(r.ok for r in await destination.upsert(records(destination, [person(1), person(2)])))
    assert destination.http_stats.connection_errors > 0


async def test_persistent_server_errors_exhaust_retries(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url, retry=RetryPolicy(attempts=2, base_delay=0.01))
    sendinblue_sandbox.set_faults(error_fraction=1.0, error_statuses=(503,))
    with pytest.raises(RetriesExhausted):
        await destination.upsert(records(destination, [person(1)]))


async def test_check_connection_describes_the_account_and_list(sendinblue_sandbox, make_destination):
    description = await make_destination(sendinblue_sandbox.url).check_connection()
    assert description == "Brevo account segship Brevo sandbox, list 2 'List 2' (0 contacts)"
    assert await make_destination(sendinblue_sandbox.url, export=False).check_connection() == \
        "Brevo account segship Brevo sandbox"


async def test_a_wrong_key_stops_with_a_clear_message(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url, connection={"api_key": "xkeysib-wrong-key-123"})
    with pytest.raises(DestinationError) as stopped:
        await destination.check_connection()
    message = str(stopped.value)
    assert "API key was refused" in message and "connections.brevo-test.settings.api_key" in message
    assert "unauthorized" in message and "xkeysib-wrong-key-123" not in message
    with pytest.raises(DestinationError, match="API key was refused"):
        await destination.upsert(records(destination, [person(1)]))


class KeyQuotingBrevo(BrevoSandbox):
    """A Brevo whose 401 quotes the key it refused, as some APIs do."""

    def auth_error(self, request):
        return brevo_error(401, "unauthorized", f"Key not found: {self.presented_key(request)}")


async def test_a_refused_key_quoted_back_is_masked(make_destination):
    wrong_key = "xkeysib-quoted-back-4567"
    with RunningBrevoSandbox(KeyQuotingBrevo(api_key=SANDBOX_API_KEY)) as sandbox:
        destination = make_destination(sandbox.url, connection={"api_key": wrong_key})
        with pytest.raises(DestinationError) as stopped:
            await destination.check_connection()
    assert "(unauthorized: Key not found: ***)" in str(stopped.value), stopped.value
    assert wrong_key not in str(stopped.value)


async def test_an_unknown_list_stops_with_a_clear_message(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url, settings={"list_id": 11})
    for step in (destination.check_connection, destination.prepare):
        with pytest.raises(DestinationError) as stopped:
            await step()
        assert str(stopped.value) == ("Brevo list 11 does not exist in this account (document_not_found: List ID "
                                      "does not exist): create it or fix exports.vip-to-brevo.settings.list_id")


async def test_lists_can_be_chosen(make_destination):
    with RunningBrevoSandbox(BrevoSandbox(list_ids=[3, 7])) as sandbox:
        await make_destination(sandbox.url, settings={"list_id": 7}).check_connection()
        with pytest.raises(DestinationError, match="list 2 does not exist"):
            await make_destination(sandbox.url).prepare()


@pytest.mark.parametrize("status, fragment", [
    (429, "kept answering 429"), (503, "Brevo is unavailable"),
])
async def test_check_connection_explains_throttling_and_outages(sendinblue_sandbox, make_destination, status,
                                                               fragment):
    sendinblue_sandbox.set_faults(error_fraction=1.0, error_statuses=(status,))
    destination = make_destination(sendinblue_sandbox.url, retry=RetryPolicy(attempts=2, base_delay=0.01))
    with pytest.raises(DestinationError, match=fragment):
        await destination.check_connection()


async def test_check_connection_explains_an_unreachable_host(make_destination):
    destination = make_destination("http://127.0.0.1:9/v3", retry=RetryPolicy(attempts=1))
    with pytest.raises(DestinationError, match="can't reach Brevo at http://127.0.0.1:9/v3"):
        await destination.check_connection()


# -- only Brevo's answers acknowledge anything ------------------------------------------------

GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
REMOVE_PATH = "/contacts/lists/2/contacts/remove"


@pytest.mark.parametrize("status, body, content_type", [
    pytest.param(200, GATEWAY_PAGE, "text/html", id="a gateway's page"),
    pytest.param(202, "", "application/json", id="202 without a body"),
    pytest.param(202, "[78]", "application/json", id="202 JSON but no object"),
    pytest.param(202, "{}", "application/json", id="202 without a processId"),
    pytest.param(202, '{"processId": "78"}', "application/json", id="a processId that is text"),
    pytest.param(202, '{"processId": true}', "application/json", id="a processId that is a boolean"),
    pytest.param(201, '{"processId": 78}', "application/json", id="201"),
])
async def test_an_import_answer_that_is_not_brevos_acknowledges_nothing(sendinblue_sandbox, make_destination, status,
                                                                         body, content_type):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead("/contacts/import", body, status=status, content_type=content_type)
    with pytest.raises(DestinationError) as stopped:
        await destination.upsert(records(destination, [person(1), person(2)]))
    assert "connections.brevo-test.settings.base_url" in str(stopped.value)
    assert sendinblue_sandbox.stats().get("imports", 0) == 0  # Brevo never saw it


@pytest.mark.parametrize("body, content_type", [
    pytest.param(GATEWAY_PAGE, "text/html", id="a gateway's page"),
    pytest.param('{"id": 1, "name": "IMPORTUSER"}', "application/json", id="no status"),
    pytest.param('{"id": 2, "name": "IMPORTUSER", "status": "completed"}', "application/json",
                 id="another process"),
    pytest.param('{"name": "IMPORTUSER", "status": "completed"}', "application/json", id="no process id"),
])
async def test_a_process_answer_that_is_not_brevos_acknowledges_nothing(sendinblue_sandbox, make_destination, body,
                                                                         content_type):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead("/processes/1", body, content_type=content_type)
    with pytest.raises(DestinationError, match="connections.brevo-test.settings.base_url"):
        await destination.upsert(records(destination, [person(1), person(2)]))


async def test_a_process_that_ends_in_a_status_segship_doesnt_know_acknowledges_nothing(sendinblue_sandbox,
                                                                                       make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead("/processes/1", '{"id": 1, "name": "IMPORTUSER", "status": "cancelled"}')
    results = await destination.upsert(records(destination, [person(1), person(2)]))
    assert {r.error for r in results} == {"Brevo import process 1 ended with status 'cancelled'"}


async def test_a_removal_acknowledges_only_the_emails_brevos_answer_names(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    answer = {"contacts": {"success": ["Person1@Example.com"], "failure": ["person2@example.com"]}}
    sendinblue_sandbox.answer_instead(REMOVE_PATH, orjson.dumps(answer).decode(), status=201)
    members = [Member(f"k{n}", f"person{n}@example.com") for n in (1, 2, 3)]
    results = {r.key: r.error for r in await destination.remove(members)}
    # success: removed; failure: Brevo's spec says "already in/out list and/or doesn't exist": out, as asked
    assert results["k1"] is None and results["k2"] is None
    assert "neither" in results["k3"] and "removed again on the next run" in results["k3"]


@pytest.mark.parametrize("status, body, content_type", [
    pytest.param(200, GATEWAY_PAGE, "text/html", id="a gateway's page"),
    pytest.param(201, "", "application/json", id="201 without a body"),
    pytest.param(201, "{}", "application/json", id="no contacts"),
    pytest.param(201, '{"contacts": ["person1@example.com"]}', "application/json", id="contacts not an object"),
    pytest.param(201, '{"contacts": {"success": "person1@example.com"}}', "application/json",
                 id="success not a list"),
    pytest.param(200, '{"contacts": {"success": ["person1@example.com"]}}', "application/json", id="200"),
    pytest.param(204, "", "application/json", id="204"),
])
async def test_a_removal_answer_that_is_not_brevos_acknowledges_nothing(sendinblue_sandbox, make_destination, status,
                                                                         body, content_type):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead(REMOVE_PATH, body, status=status, content_type=content_type)
    with pytest.raises(DestinationError, match="connections.brevo-test.settings.base_url"):
        await destination.remove([Member("k1", "person1@example.com")])


@pytest.mark.parametrize("path", ["/account", "/contacts/lists/2"])
async def test_the_connection_check_refuses_a_page_that_is_not_brevos(sendinblue_sandbox, make_destination, path):
    sendinblue_sandbox.answer_instead(path, GATEWAY_PAGE, content_type="text/html")
    with pytest.raises(DestinationError, match=f"HTTP 200 with {len(GATEWAY_PAGE)} bytes of text/html"):
        await make_destination(sendinblue_sandbox.url).check_connection()


async def test_the_lists_contacts_are_counted_and_listed_page_by_page(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    assert await destination.count_members() == 0
    emails = [f"Person{n}@Example.com" for n in range(1, 1203)]
    await call(sendinblue_sandbox.url + "/contacts/import", "POST",
               {"jsonBody": [{"email": email} for email in emails], "listIds": [2]})
    while len(sendinblue_sandbox.list_contacts(2)) < len(emails):
        time.sleep(0.01)
    assert await destination.count_members() == len(emails)
    pages = [page async for page in destination.list_members()]
    assert [len(page) for page in pages] == [500, 500, 202]  # Brevo's largest page
    assert [email for page in pages for email in page] == [email.lower() for email in emails]


async def test_a_count_or_a_list_that_is_not_brevos_is_refused(sendinblue_sandbox, make_destination):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead("/contacts/lists/2", '{"id": 2, "name": "List 2", "uniqueSubscribers": "many"}')
    with pytest.raises(DestinationError, match="uniqueSubscribers 'many'.*connections.brevo-test.settings.base_url"):
        await destination.count_members()
    sendinblue_sandbox.answer_instead("/contacts/lists/2/contacts", '{"contacts": "none", "count": 0}')
    with pytest.raises(DestinationError, match="contacts of type str.*connections.brevo-test.settings.base_url"):
        [page async for page in destination.list_members()]
async def test_the_instance_is_the_account_the_key_belongs_to():
    with RunningBrevoSandbox(BrevoSandbox(api_key=SANDBOX_API_KEY, accounts={"xkeysib-other": "5a5dbe1100000000000000ff",
                                                                         "xkeysib-rotated": DEFAULT_ORGANIZATION_ID})) \
            as sandbox:
        observed = {}
        for key in (SANDBOX_API_KEY, "xkeysib-rotated", "xkeysib-other"):
            destination = SendinblueDestination(ConnectionContext("brevo", {"api_key": key, "base_url": sandbox.url}))
            try:
                observed[key] = await destination.observe_instance()
            finally:
                await destination.finish()
    assert observed == {SANDBOX_API_KEY: {"organization_id": DEFAULT_ORGANIZATION_ID},
                        "xkeysib-rotated": {"organization_id": DEFAULT_ORGANIZATION_ID},
                        "xkeysib-other": {"organization_id": "5a5dbe1100000000000000ff"}}
    assert SendinblueDestination.observes_instance and SendinblueDestination.instance_settings == ()


@pytest.mark.parametrize("body", ['{"email": "owner@example.com", "companyName": "Shop"}',
                                  '{"organization_id": ""}', '{"organization_id": null}', "[]"])
async def test_an_account_answer_without_an_organization_id_tells_no_account(sendinblue_sandbox, make_destination,
                                                                             body):
    destination = make_destination(sendinblue_sandbox.url)
    sendinblue_sandbox.answer_instead("/account", body)
    with pytest.raises(DestinationError, match="asking which account the API key belongs to"):
        await destination.observe_instance()
