"""The ``braze`` destination: members are marked in a custom array attribute through /users/track.

A join sends the user's identifiers, mapped attributes and ``{"add": [segment]}`` on the
membership attribute; a change only what changed; a leave ``{"remove": [segment]}``.
Braze answers 201 with the indexes of the objects it refused; those rows become
rejects and the rest are acknowledged. Only Braze's documented answers acknowledge
anything (see :func:`track_answer`): a 2xx page from a proxy, or counts that don't add
up, stop the run with nothing of the request acknowledged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pyarrow as pa
import structlog
from segship.columns import JsonArray
from segship.destination import (
    ConfigProblem,
    ConnectionContext,
    Destination,
    DestinationError,
    ExportContext,
    IdentityRule,
    Limits,
    MappedBatch,
    Member,
    Record,
    RecordResults,
    Records,
    answer_summary,
    redactor,
    unavailable_error,
)
from segship.http import HttpResponse, HttpStats, RateLimit, RateLimitHeaders, RetriesExhausted, RetryPolicy

from segship_braze import schemas
from segship_braze.mapping import CONSENT_FIELDS, MAX_STRING_LENGTH, Membership, UserMapping, attribute_name_problem

log = structlog.get_logger("segship.braze")

TRACK_PATH = "/users/track"
#: Braze's limit slides and its reset is an epoch second rounded up: pausing until it whenever an
#: answer shows the window full idled up to a second each time.
#: The pacer keeps to the limit, and a 429 still pauses every request until the reset.
RATE_LIMIT_HEADERS = RateLimitHeaders("X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_epoch=True,
                                      pause_when_spent=False)
#: /users/track requests per engine batch, sent at once: fewer, larger engine batches keep the
#: engine's per-batch work (state commits) small next to Braze's 1,000 requests a second.
REQUESTS_PER_BATCH = 10
#: Engine batches in flight; with REQUESTS_PER_BATCH, 120 requests, which reaches Braze's
#: 1,000 requests/s at its usual ~100 ms latency.
CONCURRENCY = 12
#: Braze counts requests per 3 s as they arrive; the client counts them as they leave. Pacing
#: the limit over a slightly longer window absorbs up to 150 ms of difference (connection
#: set-up, latency jitter) whatever the rate, for 5% of throughput.
PACING_WINDOW_SECONDS = 3.15
#: Words of Braze's answer for an update-only object whose user does not exist.
USER_NOT_FOUND_MARKERS = ("not found", "does not exist", "no user")


class NotBrazesAnswer(Exception):
    """A 2xx answer to /users/track that is none of Braze's: it acknowledges nothing."""


def _message(response: HttpResponse) -> str:
    body = response.json()
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.body[:200].decode("utf-8", "replace").strip()


def _minor_errors(errors: Any, sent: int) -> tuple[dict[int, str], list[str]]:
    """Braze's minor errors for a request of ``sent`` attributes objects: the reasons by index,
    and the errors tied to no object. An error Braze can't have made for this request (about
    another array, at an index the request doesn't have) raises NotBrazesAnswer."""
    if not isinstance(errors, list):
        raise NotBrazesAnswer(f"its errors are {type(errors).__name__}, not a list")
    by_index: dict[int, str] = {}
    unplaced: list[str] = []
    for error in errors:
        if not isinstance(error, dict):  # the generic form of Braze's errors page: a message
            unplaced.append(str(error))
            continue
        if error.get("input_array", "attributes") != "attributes":
            raise NotBrazesAnswer(f"it reports an error in {error.get('input_array')!r}, which the request "
                                  "did not carry")
        reason = str(error.get("type") or error.get("message") or error)
        index = error.get("index")
        if index is None:
            unplaced.append(reason)
        elif type(index) is not int or not 0 <= index < sent:
            raise NotBrazesAnswer(f"it reports an error at index {index!r} of a request of {sent} objects")
        else:
            by_index.setdefault(index, reason)
    return by_index, unplaced


def track_answer(response: HttpResponse, sent: int) -> tuple[dict[int, str], list[str]]:
    """What a 2xx answer to a /users/track request of ``sent`` attributes objects says: the
    reasons of the objects Braze refused, by index, and errors it tied to no object.

    Braze documents two such answers: 201 ``{"message": "success"}``, with non-fatal
    ``errors`` at indexes of the request and ``attributes_processed`` counting the other
    objects; and 202 ``{"message": "queued"}``, the whole request accepted for later while
    Braze pauses processing for maintenance. Anything else (a proxy's or another host's
    page, an empty body, JSON without Braze's message, counts that don't add up, another
    2xx) raises NotBrazesAnswer: nobody can tell what Braze kept.
    """
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        raise NotBrazesAnswer(f"{answer_summary(response)}, not Braze's JSON answer")
    message = body["message"]
    if response.status == 202 and message == "queued":
        return {}, []
    if response.status != 201 or message != "success":
        raise NotBrazesAnswer(f"HTTP {response.status} with message {message[:100]!r}, which Braze doesn't answer "
                              "to a request it accepted")
    by_index, unplaced = _minor_errors(body.get("errors", []), sent)
    processed = body.get("attributes_processed")
    if processed is not None and not unplaced and (type(processed) is not int or processed != sent - len(by_index)):
        raise NotBrazesAnswer(f"it counts {processed!r} attributes objects processed of {sent} sent, "
                              f"{len(by_index)} refused")
    return by_index, unplaced


def endpoint_identity(endpoint: Any) -> str:
    """A REST endpoint as it identifies an instance: scheme and host in lower case, no trailing slash."""
    parts = urlsplit(str(endpoint).strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def track_body(users: Sequence[Any]) -> bytes:
    """The /users/track body for attributes objects; a JsonArray (joins made column-wise) is one
    JSON array already, so no object is encoded again."""
    if isinstance(users, JsonArray):
        return b'{"attributes":' + users.json() + b"}"
    return orjson.dumps({"attributes": users})


class BrazeDestination(Destination):
    name = "braze"
    connection_schema = schemas.connection_schema
    export_settings_schema = schemas.export_settings_schema
    mapping_schema = schemas.mapping_schema
    target_settings = ("segment_api_identifier", "membership_attribute")
    # Braze can't say which workspace a key belongs to: the endpoint, and the connection the
    # workspace is configured under, tell its instances apart
    instance_settings = ("rest_endpoint",)

    def __init__(self, connection: ConnectionContext, export: ExportContext | None = None, *,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__(connection, export)
        settings, export = self.connection.settings, self.export  # the schemas' defaults filled in
        self.rest_endpoint = str(settings["rest_endpoint"]).rstrip("/")
        self.batch_size = int(settings["batch_size"])
        api_key = str(settings["api_key"])
        # masked in every log line and error, even when the settings were not resolved by the core
        redactor.add(api_key)
        requests = int(settings["requests_per_3s"])
        self._http = self.connection.http_client(self.rest_endpoint, {"Authorization": f"Bearer {api_key}"},
                                            rate_limit=RateLimit(requests, PACING_WINDOW_SECONDS),
                                            concurrency=CONCURRENCY * REQUESTS_PER_BATCH,
                                            rate_limit_headers=RATE_LIMIT_HEADERS, retry=retry)
        # an instance that only removes members from an earlier target may have no mapping (the
        # export moved to another destination type since): removals need only the membership
        self._users = UserMapping.from_config(export.settings, export.mapping) if export and export.mapping else None
        self._membership = Membership.of(export.settings) if export else None

    @classmethod
    def instance_setting(cls, name: str, value: Any) -> Any:
        # one endpoint, however written: https://REST.iad-01.braze.com/ is https://rest.iad-01.braze.com
        return endpoint_identity(value) if name == "rest_endpoint" else value

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        membership = export_settings["membership_attribute"]
        problem = attribute_name_problem(membership) or (
            f"{membership!r} is a Braze subscription field, which would record consent: choose another attribute "
            "name" if membership in CONSENT_FIELDS else None)
        if problem:
            yield ConfigProblem(("settings", "membership_attribute"), problem)
        attributes = mapping.get("attributes")
        for name in attributes if isinstance(attributes, Mapping) else ():
            problem = attribute_name_problem(name) or (
                f"{name!r} is the membership attribute segship maintains (settings.membership_attribute): "
                "choose another attribute name" if name == membership else None)
            if problem:
                yield ConfigProblem(("mapping", "attributes", name), problem)

    @classmethod
    def identity_rule(cls, mapping: Mapping[str, Any]) -> IdentityRule:
        # a user is its external_id, the mapped customer ID as external_id() makes it: trimmed, case kept
        return IdentityRule(mapping["customer_id"], "trim", None, "external_id", MAX_STRING_LENGTH)

    @property
    def limits(self) -> Limits:
        size = self.batch_size * REQUESTS_PER_BATCH
        return Limits(upsert_batch_size=size, remove_batch_size=size, concurrency=CONCURRENCY)

    @property
    def http_stats(self) -> HttpStats:
        return self._http.stats

    def _mapping(self) -> UserMapping:
        if self._users is None:
            raise DestinationError("this Braze connection is not bound to an export, so it has no mapping")
        return self._users

    # -- lifecycle ------------------------------------------------------------------------

    async def check_connection(self) -> str:
        # An empty /users/track request is authenticated and authorised like a real one, then
        # refused (400) or ignored for lack of data: it proves key, permission and instance
        # without writing anything. Braze has no read endpoint that needs users.track.
        try:
            response = await self._http.request("POST", TRACK_PATH, json={"attributes": []})
        except RetriesExhausted as exc:
            raise unavailable_error(exc, "Braze", self.rest_endpoint, url_setting="rest_endpoint",
                                    limit_spent="the workspace's /users/track limit is used up (other integrations?)",
                                    pacing_setting="requests_per_3s") from None
        if response.status not in (200, 201, 202, 400):
            raise self._error(response)
        body = response.json()
        if not isinstance(body, dict) or not isinstance(body.get("message"), str):
            # a proxy's or another host's page, answering with a status Braze uses too
            raise self._not_brazes(f"answered {answer_summary(response)}, not Braze's JSON answer")
        description = f"Braze REST API at {self.rest_endpoint}: the API key may call {TRACK_PATH}"
        if self._membership is not None:
            description += (f"; members get {self._membership.segment_api_identifier!r} in "
                            f"{self._membership.attribute}")
        return description

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        user, dropped = self._mapping().user(row, changed_columns)
        identity = user["external_id"]
        return Record(key=identity, identity=identity, payload=user, dropped=dropped)

    def map_batch(self, rows: pa.RecordBatch, changed: Sequence[frozenset[str] | None] | None = None) -> MappedBatch:
        # payloads are attributes objects, their JSON (orjson.Fragment), or a JsonArray of a batch of joins
        return self._mapping().users(rows, changed)

    async def upsert(self, records: Sequence[Record]) -> RecordResults:
        records = Records.of(records)
        return await self._track(records.keys, records.payloads, leaving=False)

    async def remove(self, members: Sequence[Member]) -> RecordResults:
        if self._membership is None:
            raise DestinationError("this Braze connection is not bound to an export, so it has no segment")
        membership = self._membership
        return await self._track([member.key for member in members],
                                 [membership.leaver(member.identity) for member in members], leaving=True)

    async def finish(self) -> None:
        await self._http.close()

    # -- requests -----------------------------------------------------------------------------

    async def _track(self, keys: Sequence[str], users: Sequence[Any], *, leaving: bool) -> RecordResults:
        """Send attributes objects (``users[i]`` for ``keys[i]``: dicts, their JSON as orjson.Fragment, or a
        :class:`~segship.columns.JsonArray` of them),
        ``batch_size`` per request, all requests at once."""
        starts = range(0, len(users), self.batch_size)
        answers = await asyncio.gather(*(self._track_chunk(users[start:start + self.batch_size], leaving)
                                         for start in starts), return_exceptions=True)
        refused: dict[int, str] = {}
        for start, answer in zip(starts, answers):
            if isinstance(answer, BaseException):
                # the whole batch stays unacknowledged and is sent again on the next run
                raise answer
            for index, reason in answer.items():
                refused[start + index] = reason
        return RecordResults(keys, refused)

    async def _track_chunk(self, users: Sequence[Any], leaving: bool) -> dict[int, str]:
        """One /users/track request; the reasons of the objects Braze refused, by index."""
        response = await self._http.request("POST", TRACK_PATH, body=track_body(users))
        if response.status == 400:
            # a fatal error: Braze processed none of the objects, so every row is refused with the reason
            message = _message(response)
            body = response.json()
            try:
                by_index, _ = _minor_errors(body.get("errors", []) if isinstance(body, dict) else [], len(users))
            except NotBrazesAnswer:
                by_index = {}  # Braze's message is reason enough
            return {index: f"Braze refused the request: {by_index.get(index, message)}" for index in range(len(users))}
        if not 200 <= response.status < 300:
            raise self._error(response)
        try:
            by_index, unplaced = track_answer(response, len(users))
        except NotBrazesAnswer as exc:
            raise self._not_brazes(f"answered {exc}; nothing of the request is counted as written, so its rows "
                                   "are sent again on the next run") from None
        if unplaced:
            # an error Braze did not tie to an object: nothing tells which rows it hit, so none is trusted
            log.warning("braze.unplaced_errors", errors=unplaced[:5], objects=len(users))
            return dict.fromkeys(range(len(users)), f"Braze reported an error for the request: {unplaced[0]}")
        refused = {}
        for index, reason in sorted(by_index.items()):  # usually none: all accepted
            if leaving and any(marker in reason.lower() for marker in USER_NOT_FOUND_MARKERS):
                continue  # a leaver Braze no longer has is out of the segment: done
            refused[index] = f"Braze refused the user: {reason}"
        return refused

    # -- errors ------------------------------------------------------------------------------

    def _not_brazes(self, problem: str) -> DestinationError:
        """A run-stopping error for an answer that is none of Braze's (and acknowledges nothing)."""
        return DestinationError(
            f"Braze: {self.rest_endpoint}{TRACK_PATH} {problem}. Check connections.{self.connection.name}.settings."
            "rest_endpoint: it must be your instance's REST endpoint, reached without a proxy or gateway "
            "answering in Braze's place")

    def _error(self, response: HttpResponse) -> DestinationError:
        """A run-stopping error for an unexpected answer, saying what to fix (and never the key)."""
        where = f"connections.{self.connection.name}.settings"
        advice = {
            401: f"the API key was refused: check {where}.api_key (Braze > Settings > APIs and Identifiers)",
            403: f"the API key lacks the users.track permission: edit the key in Braze > Settings > APIs and "
                 f"Identifiers, or use another key in {where}.api_key",
            404: f"{self.rest_endpoint}{TRACK_PATH} was not found: check {where}.rest_endpoint; it must be the "
                 "REST endpoint of your workspace's instance, e.g. https://rest.iad-01.braze.com",
        }.get(response.status, f"unexpected HTTP {response.status} from {self.rest_endpoint}{TRACK_PATH}")
        detail = redactor.redact(_message(response))  # Braze's 401 quotes the key it refused
        return DestinationError(f"Braze: {advice}" + (f" (Braze said: {detail})" if detail else ""))
