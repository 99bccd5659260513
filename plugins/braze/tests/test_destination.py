"""The destination's upsert, remove and connection check against a real sandbox on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from segship.destination import ConnectionContext, DestinationError, ExportContext, Member
from segship.http import RetriesExhausted, RetryPolicy
from segship.ratelimit import RateLimit

from segship_braze.destination import BrazeDestination
from segship_braze.sandbox import SANDBOX_API_KEY, BrazeSandbox, RunningBrazeSandbox

from .conftest import FAST_RETRY, SEGMENT, person, records


async def test_joins_create_users_with_their_attributes_and_membership(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    results = await destination.upsert(records(destination, [person(1), person(2)]))
    assert sorted((r.key, r.error) for r in results) == [("1", None), ("2", None)]
    assert braze_sandbox.user("1") == {"email": "person1@example.com", "first_name": "First1", "tier": "gold",
                                       "lifetime_value": 1001, "segship_segments": [SEGMENT]}


async def test_a_change_writes_only_the_changed_attributes(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    await destination.upsert(records(destination, [person(1)]))
    written = braze_sandbox.stats()["data_points"]
    change = destination.map(person(1, tier="platinum", first_name="Ignored"), frozenset({"tier"}))
    assert all(r.ok for r in await destination.upsert([change]))
    assert braze_sandbox.stats()["data_points"] - written == 1
    user = braze_sandbox.user("1")
    assert (user["tier"], user["first_name"], user["segship_segments"]) == ("platinum", "First1", [SEGMENT])


async def test_a_value_that_became_empty_is_removed(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    await destination.upsert(records(destination, [person(1)]))
    await destination.upsert([destination.map(person(1, tier=None), frozenset({"tier"}))])
    assert "tier" not in braze_sandbox.user("1")


async def test_a_leaver_loses_only_this_segment_and_stays_in_braze(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    other = make_destination(braze_sandbox.url, settings={"segment_api_identifier": "other-segment"})
    await destination.upsert(records(destination, [person(1)]))
    await other.upsert(records(other, [person(1)]))
    results = await destination.remove([Member("1", "1")])
    assert [(r.key, r.error) for r in results] == [("1", None)]
    assert braze_sandbox.user("1")["segship_segments"] == ["other-segment"]
    assert braze_sandbox.user("1")["email"] == "person1@example.com"


async def test_removing_a_user_braze_no_longer_has_is_done_without_creating_it(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    results = await destination.remove([Member("gone", "deleted-in-braze")])
    assert [(r.key, r.error) for r in results] == [("gone", None)]
    assert braze_sandbox.users() == {}


async def test_refused_users_become_rejects_and_the_rest_is_acknowledged(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    braze_sandbox.set_faults(refuse_external_ids=["3", "77"])
    results = {r.key: r.error for r in await destination.upsert(records(destination, [person(n) for n in range(80)]))}
    refused = {key: error for key, error in results.items() if error}
    assert set(refused) == {"3", "77"}  # 77 is in the second request: indexes are per request
    assert "refuse_external_ids" in refused["3"]
    assert len(results) == 80
    assert braze_sandbox.user("3") is None and braze_sandbox.user("4") is not None
    assert braze_sandbox.stats()["users"] == 78


async def test_update_existing_only_reports_unknown_users_and_creates_none(braze_sandbox, make_destination):
    creating = make_destination(braze_sandbox.url)
    await creating.upsert(records(creating, [person(1)]))
    destination = make_destination(braze_sandbox.url, settings={"update_existing_only": True})
    results = {r.key: r.error for r in await destination.upsert(records(destination, [person(1), person(2)]))}
    assert results["1"] is None
    assert "_update_existing_only" in results["2"]
    assert braze_sandbox.user("2") is None


async def test_requests_carry_at_most_batch_size_users(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url, connection={"batch_size": 50})
    assert destination.limits.upsert_batch_size % 50 == 0
    results = await destination.upsert(records(destination, [person(n) for n in range(120)]))
    assert len(results) == 120 and all(r.ok for r in results)
    stats = braze_sandbox.stats()
    assert (stats["requests"], stats["users"]) == (3, 120)


async def test_a_400_rejects_every_row_of_the_request_with_brazes_message(braze_sandbox, make_destination):
    # batch_size is capped at 75 by the schema; past the cap, the sandbox answers as Braze does
    destination = make_destination(braze_sandbox.url, connection={"batch_size": 76})
    results = await destination.upsert(records(destination, [person(n) for n in range(76)]))
    assert len(results) == 76
    assert all("Received 76 attributes objects; the limit is 75" in r.error for r in results)
    assert braze_sandbox.stats()["users"] == 0


async def test_429_storms_and_server_errors_are_retried_until_accepted(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url, retry=RetryPolicy(attempts=30, base_delay=0.005,
                                                                         max_delay=0.02))
    braze_sandbox.set_faults(error_fraction=0.6, error_statuses=[429, 500, 502, 503], seed=7)
    results = await destination.upsert(records(destination, [person(n) for n in range(600)]))
    assert len(results) == 600 and all(r.ok for r in results)
    assert braze_sandbox.stats()["users"] == 600
    assert destination.http_stats.throttled > 0 and destination.http_stats.server_errors > 0


async def test_dropped_connections_are_retried(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url)
    braze_sandbox.set_faults(drop_fraction=0.5, seed=3)
    results = await destination.upsert(records(destination, [person(n) for n in range(150)]))
    assert all(r.ok for r in results) and destination.http_stats.connection_errors > 0


async def test_retries_exhausted_propagate_to_the_engine(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url, retry=RetryPolicy(attempts=2, base_delay=0.001,
                                                                        max_delay=0.001))
    braze_sandbox.set_faults(error_fraction=1.0, error_statuses=[503])
    with pytest.raises(RetriesExhausted):
        await destination.upsert(records(destination, [person(1)]))
    with pytest.raises(DestinationError, match="Braze is unavailable"):
        await destination.check_connection()


async def test_the_rate_limit_resets_braze_states_are_honoured(make_destination):
    # the sandbox allows 4 requests per 3 s, the destination believes in 3000: Braze's 429s,
    # with X-RateLimit-Reset, pause the run until the window frees instead of failing it
    with RunningBrazeSandbox(BrazeSandbox(api_key=SANDBOX_API_KEY, rate_limit=RateLimit(4, 3.0))) as braze:
        destination = make_destination(braze.url, connection={"batch_size": 1})
        results = await destination.upsert(records(destination, [person(n) for n in range(6)]))
        assert all(r.ok for r in results) and braze.stats()["users"] == 6
        assert braze.stats()["rate_limited"] >= 1


async def test_requests_are_paced_under_the_limit_so_no_429_is_served(make_destination):
    with RunningBrazeSandbox(BrazeSandbox(api_key=SANDBOX_API_KEY, rate_limit=RateLimit(20, 3.0))) as braze:
        destination = make_destination(braze.url, connection={"batch_size": 1, "requests_per_3s": 20})
        started = time.monotonic()
        results = await destination.upsert(records(destination, [person(n) for n in range(22)]))
        assert all(r.ok for r in results)
        assert braze.stats().get("rate_limited", 0) == 0
        assert time.monotonic() - started >= 3.1  # 20 requests fit in a window: the rest waited for it


async def test_connection_check_proves_key_and_permission_without_writing(braze_sandbox, make_destination):
    description = await make_destination(braze_sandbox.url).check_connection()
    assert braze_sandbox.url in description and SEGMENT in description
    stats = braze_sandbox.stats()
    assert (stats["requests"], stats.get("data_points", 0), stats["users"]) == (1, 0, 0)


async def test_a_wrong_key_stops_the_run_with_a_clear_message(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url, connection={"api_key": "wrong-key-123456"})
    for call in (destination.check_connection(), destination.upsert(records(destination, [person(1)]))):
        with pytest.raises(DestinationError) as stopped:
            await call
        assert "API key was refused" in str(stopped.value) and "connections.braze-test.settings.api_key" in str(
            stopped.value)
        assert "wrong-key-123456" not in str(stopped.value)


async def test_a_key_without_users_track_permission_is_named(make_destination):
    with RunningBrazeSandbox(BrazeSandbox(forbidden_keys=["read-only-key-0001"])) as braze:
        destination = make_destination(braze.url, connection={"api_key": "read-only-key-0001"})
        with pytest.raises(DestinationError, match="lacks the users.track permission"):
            await destination.check_connection()


async def test_a_wrong_endpoint_is_named(braze_sandbox, make_destination):
    destination = make_destination(braze_sandbox.url + "/not-braze")
    with pytest.raises(DestinationError, match="was not found: check connections.braze-test.settings.rest_endpoint"):
        await destination.upsert(records(destination, [person(1)]))


async def test_an_unreachable_endpoint_is_named(make_destination):
    destination = make_destination("http://127.0.0.1:9", retry=RetryPolicy(attempts=2, base_delay=0.001,
                                                                           max_delay=0.001))
    with pytest.raises(DestinationError, match="can't reach Braze at http://127.0.0.1:9"):
        await destination.check_connection()


# -- only Braze's answers acknowledge anything ------------------------------------------------

PROXY_PAGE = "<!doctype html><html><head><title>Gateway</title></head><body>Welcome</body></html>"


@pytest.mark.parametrize("status, body, content_type", [
    pytest.param(200, PROXY_PAGE, "text/html; charset=utf-8", id="a proxy's page"),
    pytest.param(201, "", "application/json", id="an empty body"),
    pytest.param(201, "[]", "application/json", id="JSON but no object"),
    pytest.param(201, '{"attributes_processed": 2}', "application/json", id="JSON without a message"),
    pytest.param(201, '{"message": "queued"}', "application/json", id="201 queued"),
    pytest.param(200, '{"message": "success", "attributes_processed": 2}', "application/json", id="200"),
    pytest.param(204, "", "application/json", id="204"),
    pytest.param(202, '{"message": "success", "attributes_processed": 2}', "application/json", id="202 success"),
    pytest.param(201, '{"message": "success", "attributes_processed": 5}', "application/json",
                 id="more processed than sent"),
    pytest.param(201, '{"message": "success", "attributes_processed": "2"}', "application/json",
                 id="a count that is no number"),
    pytest.param(201, '{"message": "success", "attributes_processed": 1, "errors": [{"type": "x", "input_array": '
                      '"attributes", "index": 7}]}', "application/json", id="an index past the request"),
    pytest.param(201, '{"message": "success", "errors": [{"type": "x", "input_array": "attributes", "index": -1}]}',
                 "application/json", id="a negative index"),
    pytest.param(201, '{"message": "success", "errors": [{"type": "x", "input_array": "events", "index": 0}]}',
                 "application/json", id="an error in an array not sent"),
    pytest.param(201, '{"message": "success", "errors": "none"}', "application/json", id="errors not a list"),
])
async def test_an_answer_that_is_not_brazes_acknowledges_nothing_and_stops_the_run(braze_sandbox, make_destination,
                                                                                   status, body, content_type):
    destination = make_destination(braze_sandbox.url)
    braze_sandbox.answer_instead("/users/track", body, status=status, content_type=content_type)
    for sending in (destination.upsert(records(destination, [person(1), person(2)])),
                    destination.remove([Member("1", "1"), Member("2", "2")])):
        with pytest.raises(DestinationError) as stopped:
            await sending
        message = str(stopped.value)
        assert "nothing of the request is counted as written" in message
        assert "connections.braze-test.settings.rest_endpoint" in message
    assert braze_sandbox.users() == {}  # the proxy answered; Braze never saw a thing


@pytest.mark.parametrize("body, refused", [
    ('{"message": "success", "attributes_processed": 2}', {}),
    ('{"message": "success"}', {}),
    ('{"message": "success", "attributes_processed": 1, "errors": [{"type": "Invalid email", '
     '"input_array": "attributes", "index": 1}]}', {"2": "Braze refused the user: Invalid email"}),
])
async def test_brazes_own_answers_acknowledge_what_they_say(braze_sandbox, make_destination, body, refused):
    destination = make_destination(braze_sandbox.url)
    braze_sandbox.answer_instead("/users/track", body, status=201)
    results = await destination.upsert(records(destination, [person(1), person(2)]))
    assert {r.key: r.error for r in results if r.error} == refused and len(results) == 2


async def test_a_request_braze_queues_during_maintenance_is_acknowledged(braze_sandbox, make_destination):
    # Braze's errors page: "During times of maintenance, Braze might pause real-time processing of
    # the API [...] the server will return an HTTP Accepted 202 response code" with {"message": "queued"}
    destination = make_destination(braze_sandbox.url)
    braze_sandbox.answer_instead("/users/track", '{"message": "queued"}', status=202)
    assert all(r.ok for r in await destination.upsert(records(destination, [person(1), person(2)])))


async def test_the_connection_check_refuses_a_page_that_is_not_brazes(braze_sandbox, make_destination):
    braze_sandbox.answer_instead("/users/track", PROXY_PAGE, content_type="text/html")
    with pytest.raises(DestinationError, match=f"HTTP 200 with {len(PROXY_PAGE)} bytes of text/html, not Braze's"):
        await make_destination(braze_sandbox.url).check_connection()


async def test_an_instance_removing_from_an_earlier_target_needs_no_mapping(braze_sandbox, make_destination):
    # the export moved to another destination type since: its mapping is no Braze mapping any more
    joined = make_destination(braze_sandbox.url)
    await joined.upsert(records(joined, [person(1)]))
    leaving = BrazeDestination(ConnectionContext("braze-old", {"api_key": SANDBOX_API_KEY,
                                                              "rest_endpoint": braze_sandbox.url}),
                               ExportContext("vip-to-brevo", {"segment_api_identifier": SEGMENT}, {}), retry=FAST_RETRY)
    try:
        assert [(r.key, r.error) for r in await leaving.remove([Member("1", "1")])] == [("1", None)]
    finally:
        await leaving.finish()
    assert braze_sandbox.user("1")["segship_segments"] == []


def test_the_instance_is_the_endpoint_however_written_and_the_connection():
    assert BrazeDestination.instance_settings == ("rest_endpoint",) and not BrazeDestination.observes_instance
    written = ["https://rest.iad-01.braze.com", "https://rest.iad-01.braze.com/", " https://REST.iad-01.Braze.com/"]
    assert {BrazeDestination.instance_setting("rest_endpoint", url) for url in written} == {
        "https://rest.iad-01.braze.com"}
    assert BrazeDestination.instance_setting("rest_endpoint", "https://rest.iad-02.braze.com") != \
        BrazeDestination.instance_setting("rest_endpoint", "https://rest.iad-01.braze.com")
