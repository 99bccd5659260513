"""The ``sendinblue`` destination (alias ``brevo``): members are imported into a Brevo list.

Joins and changes go through ``POST /contacts/import`` (asynchronous: the process is
polled with backoff until it completes), leavers through
``POST /contacts/lists/{id}/contacts/remove``, 150 emails a call. A contact's identity is
its email, which Brevo compares case-insensitively (``identity_rule``); the list's contacts
are counted by ``GET /contacts/lists/{id}`` and listed by ``GET /contacts/lists/{id}/contacts``.
A mapped contact is kept as its encoded JSON, so an import body is measured and assembled
without encoding anything twice.

Only Brevo's documented answers acknowledge anything: an import by 202 with an integer
``processId`` and then that process ``completed``; a removal by 201
``{"contacts": {"success": […], "failure": […]}}``, for the emails it names. Any other
2xx (a gateway's page, a body of another shape) stops the run with nothing of it recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import pyarrow as pa
import structlog
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
    RecordResult,
    RecordResults,
    Records,
    RowRejected,
    answer_summary,
    redactor,
    unavailable_error,
)
from segship.http import HttpResponse, HttpStats, RateLimit, RateLimitHeaders, RetriesExhausted, RetryPolicy

from segship_sendinblue import schemas
from segship_sendinblue.mapping import EMAIL_PATTERN, MAX_EMAIL_LENGTH, ContactMapping, phone_region

log = structlog.get_logger("segship.sendinblue")

#: Brevo takes import bodies up to 10 MB and recommends staying around 8 MB.
MAX_IMPORT_BYTES = 8 * 1024 * 1024
#: Contacts per engine batch: about 3 MB of typical contacts, so 1M profiles is 40 imports,
#: while 3 batches in flight keep a 1M-profile run within its memory bound (each one more holds
#: another batch of mapped contacts) and within 2 min.
UPSERT_BATCH_SIZE = 25_000
CONCURRENCY = 3
#: Brevo's limit of emails per remove-from-list call.
REMOVE_BATCH_SIZE = 150
#: Contacts per page when listing a list's (the most Brevo gives).
LIST_PAGE_SIZE = 500
#: Bytes of an import body around its contacts (the flags and list ID), with room to spare.
IMPORT_ENVELOPE_BYTES = 256
RATE_LIMIT_HEADERS = RateLimitHeaders("x-sib-ratelimit-remaining", "x-sib-ratelimit-reset", reset_is_epoch=False)
#: Statuses of a process that is not finished yet.
PROCESS_RUNNING = frozenset({"queued", "in_process", "processing"})
#: Brevo's answer when every email of a remove call was already out of the list.
NOT_IN_LIST_MESSAGE = "already removed from list"
#: Why a leaver whose email a removal's answer names in neither of its lists stays a member.
NOT_ANSWERED_REASON = ("Brevo's answer to the removal named this email neither removed nor absent from the list; "
                       "it is removed again on the next run")


def pacing(requests_per_second: float) -> RateLimit:
    """A sliding window for a per-second rate, 10% under it so arrival jitter does not cause 429s."""
    return RateLimit.per_second(requests_per_second).scaled(0.9)


def split_by_size(payloads: Sequence[bytes], max_bytes: int) -> Iterator[slice]:
    """Consecutive groups of encoded contacts whose import body stays within ``max_bytes``."""
    start, size = 0, IMPORT_ENVELOPE_BYTES
    for index, length in enumerate(map(len, payloads)):
        length += 1  # the comma between contacts
        if index > start and size + length > max_bytes:
            yield slice(start, index)
            start, size = index, IMPORT_ENVELOPE_BYTES
        size += length
    if start < len(payloads):
        yield slice(start, len(payloads))


def _encoded(contact: dict[str, Any]) -> bytes:
    # orjson's result keeps its whole output buffer (1 KB or more) allocated; an exact copy holds
    # only the contact's bytes
    return bytes(memoryview(orjson.dumps(contact)))


def brevo_error(response: HttpResponse) -> tuple[str, str]:
    """Brevo's ``(code, message)`` of an error answer, tolerating bodies that are not Brevo's."""
    body = response.json()
    if isinstance(body, dict):
        return str(body.get("code", "")), str(body.get("message", ""))
    return "", response.body[:200].decode("utf-8", "replace")


class SendinblueDestination(Destination):
    name = "sendinblue"
    aliases = ("brevo",)
    connection_schema = schemas.connection_schema
    export_settings_schema = schemas.export_settings_schema
    mapping_schema = schemas.mapping_schema
    target_settings = ("list_id",)
    # the account the API key belongs to identifies the instance (GET /account): a renamed
    # connection, the legacy base URL or a rotated key on the same account moves nobody
    observes_instance = True

    def __init__(self, connection: ConnectionContext, export: ExportContext | None = None, *,
                 max_import_bytes: int = MAX_IMPORT_BYTES, retry: RetryPolicy | None = None) -> None:
        super().__init__(connection, export)
        settings, export = self.connection.settings, self.export  # the schemas' defaults filled in
        self.base_url = str(settings["base_url"]).rstrip("/")
        self.max_import_bytes = max_import_bytes
        api_key = str(settings["api_key"])
        # masked in every log line and error, even when the settings were not resolved by the core
        redactor.add(api_key)
        self._http = self.connection.http_client(
            self.base_url, {"api-key": api_key}, concurrency=CONCURRENCY, retry=retry,
            rate_limit=pacing(settings["requests_per_second"]),
            rate_limit_headers=RATE_LIMIT_HEADERS)
        # Brevo links import reports on another host (S3): they are fetched without the key
        self._report_http = self.connection.http_client("", {}, rate_limit=RateLimit(10, 1.0), concurrency=1,
                                                        retry=retry)
        self._poll_interval = float(settings["process_poll_interval"])
        self._poll_max_interval = max(self._poll_interval, float(settings["process_poll_max_interval"]))
        self._process_timeout = float(settings["process_timeout"])
        # an instance that only removes members from an earlier list may have no mapping (the
        # export moved to another destination type since): removals need only the list
        self._contacts = ContactMapping.from_config(export.settings, export.mapping) \
            if export and export.mapping else None

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        names = export_settings["attribute_names"]
        # attribute -> where it is set, to find two mapping entries writing the same attribute
        written: dict[str, tuple[str | int, ...]] = {}
        targets = [(names[field], ("mapping", field)) for field in ("first_name", "last_name", "phone")
                   if field in mapping]
        targets += [(attribute, ("mapping", "attributes", attribute)) for attribute in mapping.get("attributes", {})]
        country_code = export_settings.get("default_country_code")
        if isinstance(country_code, str) and phone_region(country_code) is None:
            yield ConfigProblem(("settings", "default_country_code"),
                                f"{country_code} is no country's calling code (+33 France, +1 United States…)")
        for attribute, path in targets:
            if attribute.upper() == "EMAIL":
                yield ConfigProblem(path, "EMAIL identifies the contact: map it with mapping.email, "
                                          "not as an attribute")
            elif attribute.upper() in written:
                other = ".".join(map(str, written[attribute.upper()]))
                yield ConfigProblem(path, f"Brevo attribute {attribute} is already set by {other}; "
                                          "map each attribute once")
            else:
                written[attribute.upper()] = path

    @classmethod
    def identity_rule(cls, mapping: Mapping[str, Any]) -> IdentityRule:
        # as normalize_email makes it: trimmed, lower-cased, an address the pattern accepts
        return IdentityRule(mapping["email"], "lower", EMAIL_PATTERN.pattern, "email", MAX_EMAIL_LENGTH)

    @property
    def list_id(self) -> int:
        if self.export is None:
            raise DestinationError("this Brevo connection is not bound to an export, so it has no list")
        return int(self.export.settings["list_id"])

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=UPSERT_BATCH_SIZE, remove_batch_size=REMOVE_BATCH_SIZE,
                      concurrency=CONCURRENCY,
                      max_profiles=self.export.settings["max_profiles"] if self.export else None)

    @property
    def http_stats(self) -> HttpStats:
        return self._http.stats

    # -- lifecycle ------------------------------------------------------------------------

    async def check_connection(self) -> str:
        with self._unavailable():
            account = await self._get("/account", "checking the API key")
            description = f"Brevo account {account.get('companyName') or account.get('email') or '?'}"
            if self.export is not None:
                description += ", " + await self._describe_list()
        return description

    async def observe_instance(self) -> dict[str, Any]:
        """The account the API key belongs to: its ``organization_id`` (GET /account)."""
        doing = "asking which account the API key belongs to"
        with self._unavailable():
            account = await self._get("/account", doing)
        organization = account.get("organization_id")
        if type(organization) not in (str, int) or not str(organization).strip():
            # without it no account can be told from another: refused rather than guessed
            raise self._not_brevos(doing, f"an account without an organization_id ({len(account)} fields)",
                                   "account with its organization_id")
        return {"organization_id": str(organization)}

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Requests that failed after every retry, as the run-stopping error saying what to do."""
        try:
            yield
        except RetriesExhausted as exc:
            raise unavailable_error(exc, "Brevo", self.base_url, url_setting="base_url",
                                    limit_spent="the account's rate limit is used up (other integrations on the "
                                                "same key?)",
                                    pacing_setting="requests_per_second") from None

    async def prepare(self) -> None:
        # a missing list fails the run before anything is sent
        await self._describe_list()

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        # Brevo's import replaces the attributes it is given, so every mapped one is sent even on a change.
        contact, dropped = self._mapping().contact(row)
        email = contact["email"]
        return Record(key=email, identity=email, payload=self._payload(contact), dropped=dropped)

    def map_batch(self, rows: pa.RecordBatch, changed: Sequence[frozenset[str] | None] | None = None) -> MappedBatch:
        contacts, rejects, dropped = self._mapping().contacts(rows)
        identities: list[str | None] = []
        payloads: list[bytes | None] = []
        for index, contact in enumerate(contacts):
            payload = None
            if contact is not None:
                try:
                    payload = self._payload(contact)
                except RowRejected as exc:
                    rejects[index] = exc.reason
                    dropped.pop(index, None)
            identities.append(None if payload is None else contact["email"])
            payloads.append(payload)
        return MappedBatch(identities, payloads, rejects, dropped)

    def _payload(self, contact: dict[str, Any]) -> bytes:
        """The contact's JSON, or RowRejected when it can't fit in one import body."""
        payload = _encoded(contact)
        if len(payload) + 1 + IMPORT_ENVELOPE_BYTES > self.max_import_bytes:
            raise RowRejected(f"the contact is {len(payload):,} bytes of JSON, more than one Brevo import takes "
                              f"({self.max_import_bytes:,} bytes): shorten its attributes in the source")
        return payload

    def _mapping(self) -> ContactMapping:
        if self._contacts is None:
            raise DestinationError("this Brevo connection is not bound to an export, so it has no mapping")
        return self._contacts

    async def upsert(self, records: Sequence[Record]) -> RecordResults:
        records = Records.of(records)
        refused: dict[int, str] = {}
        for group in split_by_size(records.payloads, self.max_import_bytes):
            for index, reason in (await self._import(records[group])).items():
                refused[group.start + index] = reason
        return RecordResults(records.keys, refused)

    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for start in range(0, len(members), REMOVE_BATCH_SIZE):
            results += await self._remove_from_list(members[start:start + REMOVE_BATCH_SIZE])
        return results

    async def count_members(self) -> int:
        """The list's contacts (``uniqueSubscribers``: blocklisted ones too, as they stay in it)."""
        count = (await self._list_details()).get("uniqueSubscribers")
        if type(count) is not int:
            raise self._not_brevos("counting the list's contacts", f"uniqueSubscribers {count!r}",
                                   "uniqueSubscribers: <integer>")
        return count

    async def list_members(self) -> AsyncIterator[list[str]]:
        """The list's emails, lower-cased, a page of ``LIST_PAGE_SIZE`` at a time, oldest first (a
        contact without an email, an SMS-only one, has no identity here and is left aside)."""
        doing = "listing the list's contacts"
        offset = 0
        while True:
            page = await self._get(f"/contacts/lists/{self.list_id}/contacts", doing,
                                   params={"limit": str(LIST_PAGE_SIZE), "offset": str(offset), "sort": "asc"})
            contacts, count = page.get("contacts"), page.get("count")
            if not isinstance(contacts, list) or type(count) is not int or \
                    not all(isinstance(contact, dict) for contact in contacts):
                raise self._not_brevos(doing, f"contacts of type {type(contacts).__name__} and count {count!r}",
                                       '{"contacts": [{…}…], "count": <integer>}')
            yield [contact["email"].strip().lower() for contact in contacts if isinstance(contact.get("email"), str)]
            offset += len(contacts)
            if len(contacts) < LIST_PAGE_SIZE or offset >= count:
                return

    async def finish(self) -> None:
        await self._http.close()
        await self._report_http.close()

    # -- joins and changes ------------------------------------------------------------------

    async def _import(self, records: Records) -> dict[int, str]:
        """One import of encoded contacts; the reasons of those refused, by index."""
        contacts = orjson.Fragment(b"[" + b",".join(records.payloads) + b"]")
        body = {"jsonBody": contacts, "listIds": [self.list_id], "updateExistingContacts": True,
                "emptyContactsAttributes": False, "disableNotification": True}
        response = await self._http.request("POST", "/contacts/import", json=body)
        if response.status == 400:  # this body was refused; the next batches may pass
            code, message = brevo_error(response)
            return dict.fromkeys(range(len(records)), f"Brevo refused the import ({code}: {message})")
        if not 200 <= response.status < 300:
            raise self._error(response, "importing contacts")
        created = response.json()
        process_id = created.get("processId") if isinstance(created, dict) else None
        if response.status != 202 or type(process_id) is not int:
            raise self._not_brevos("importing contacts", answer_summary(response), 'HTTP 202 {"processId": <integer>}')
        log.debug("sendinblue.import_queued", process_id=process_id, contacts=len(records))
        process = await self._wait_for(process_id)
        if process is None:
            return dict.fromkeys(range(len(records)), f"Brevo import process {process_id} did not finish within "
                                 f"{self._process_timeout:g} s; the rows are sent again on the next run")
        status = process.get("status")
        if status != "completed":
            return dict.fromkeys(range(len(records)), f"Brevo import process {process_id} ended with status "
                                 f"{status!r}")
        invalid = await self._invalid_emails(process)
        if not invalid:  # the usual answer: all imported
            return {}
        return {index: "Brevo refused the email address as invalid"
                for index, identity in enumerate(records.identities) if identity in invalid}

    async def _wait_for(self, process_id: int) -> dict[str, Any] | None:
        """The finished process, polled with a doubling interval (the endpoint has a low hourly limit)."""
        deadline = time.monotonic() + self._process_timeout
        interval = self._poll_interval
        while True:
            await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            doing = "checking an import process"
            process = await self._get(f"/processes/{process_id}", doing)
            if process.get("id") != process_id or not isinstance(process.get("status"), str):
                raise self._not_brevos(doing, f"process {process.get('id')!r} with status {process.get('status')!r}",
                                       f"process {process_id} with its status")
            if process["status"] not in PROCESS_RUNNING:
                return process
            if time.monotonic() >= deadline:
                return None
            interval = min(interval * 2, self._poll_max_interval)

    async def _invalid_emails(self, process: Mapping[str, Any]) -> set[str]:
        """Emails Brevo's import refused, read from the CSV report it links (none in the usual case)."""
        report_url = ((process.get("info") or {}).get("import") or {}).get("invalid_emails")
        if not report_url:
            return set()
        response = await self._report_http.request("GET", str(report_url))
        if response.status != 200:
            raise DestinationError(f"Brevo's invalid-email report of process {process.get('id')} could not be "
                                   f"read (HTTP {response.status})")
        header, *lines = response.body.decode("utf-8", "replace").splitlines() or [""]
        if "email" not in _first_field(header):
            # a proxy's or gateway's page read as a report would name no email: every contact acknowledged
            raise DestinationError(f"Brevo's invalid-email report of process {process.get('id')} is not a CSV "
                                   f"of emails (it begins {header[:40]!r}); nothing of the import is acknowledged")
        return {_first_field(line) for line in lines if line.strip()}

    # -- leavers ------------------------------------------------------------------------------

    async def _remove_from_list(self, members: Sequence[Member]) -> list[RecordResult]:
        path = f"/contacts/lists/{self.list_id}/contacts/remove"
        response = await self._http.request("POST", path, json={"emails": [m.identity for m in members]})
        if response.status == 400:
            code, message = brevo_error(response)
            if NOT_IN_LIST_MESSAGE in message.lower():
                # none of them is in the list any more (a retried call, or removed by hand): done
                return [RecordResult(member.key) for member in members]
            return self._fail(members, f"Brevo refused the removal ({code}: {message})")
        if response.status == 404:
            # the list itself is gone (deleted after an export moved to another list): nobody is in it
            log.info("sendinblue.remove_list_gone", list_id=self.list_id, contacts=len(members))
            return [RecordResult(member.key) for member in members]
        if not 200 <= response.status < 300:
            raise self._error(response, "removing contacts from the list")
        removed, absent = self._removal(response)
        if absent:
            # Brevo lists here the emails that were not in the list or are no contact: the goal is met
            log.info("sendinblue.remove_not_in_list", list_id=self.list_id, contacts=len(absent))
        answered = removed | absent
        return [RecordResult(member.key) if member.identity.strip().lower() in answered else
                RecordResult(member.key, NOT_ANSWERED_REASON) for member in members]

    def _removal(self, response: HttpResponse) -> tuple[set[str], set[str]]:
        """The emails a removal's answer says are out of the list: removed, and not in it (or no
        contact) in the first place; lower-cased, as identities are."""
        body = response.json()
        contacts = body.get("contacts") if isinstance(body, dict) else None
        named = [contacts.get(field, []) for field in ("success", "failure")] if isinstance(contacts, dict) else []
        if response.status != 201 or not named or not all(
                isinstance(emails, list) and all(isinstance(email, str) for email in emails) for emails in named):
            raise self._not_brevos("removing contacts from the list", answer_summary(response),
                                   'HTTP 201 {"contacts": {"success": [<email>…], "failure": [<email>…]}}')
        removed, absent = ({email.strip().lower() for email in emails} for emails in named)
        return removed, absent

    # -- requests and errors ------------------------------------------------------------------

    async def _get(self, path: str, doing: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = await self._http.request("GET", path, params=params)
        if response.status != 200:
            raise self._error(response, doing)
        return self._object(response, doing)

    def _object(self, response: HttpResponse, doing: str) -> dict[str, Any]:
        """The JSON object of a 200 answer, or a run-stopping error when the answer isn't Brevo's."""
        body = response.json()
        if not isinstance(body, dict):
            raise self._not_brevos(doing, answer_summary(response), "JSON object")
        return body

    async def _describe_list(self) -> str:
        found = await self._list_details()
        return f"list {self.list_id} {found.get('name', '')!r} ({found.get('uniqueSubscribers', '?')} contacts)"

    async def _list_details(self) -> dict[str, Any]:
        """``GET /contacts/lists/{id}``: the list's name and counts; a list that doesn't exist stops the run."""
        response = await self._http.request("GET", f"/contacts/lists/{self.list_id}")
        if response.status == 404:
            code, message = brevo_error(response)
            raise DestinationError(
                f"Brevo list {self.list_id} does not exist in this account ({code}: {message}): create it or "
                f"fix exports.{self.export.name}.settings.list_id")
        if response.status != 200:
            raise self._error(response, "checking the list")
        return self._object(response, "checking the list")

    def _not_brevos(self, doing: str, answered: str, expected: str) -> DestinationError:
        """A run-stopping error for an answer that is none of Brevo's (and acknowledges nothing)."""
        return DestinationError(
            f"Brevo ({doing}): {self.base_url} answered {answered}, not Brevo's {expected}; nothing of it is counted "
            f"as done. Check connections.{self.connection.name}.settings.base_url: it must be Brevo's API "
            f"({schemas.DEFAULT_BASE_URL}), reached without a proxy or gateway answering in Brevo's place")

    def _error(self, response: HttpResponse, doing: str) -> DestinationError:
        """A run-stopping error for an unexpected answer, saying what to fix (and never the key)."""
        code, message = brevo_error(response)
        where = f"connections.{self.connection.name}.settings"
        refused_key = f"the API key was refused: check {where}.api_key (Brevo > Settings > SMTP & API > API keys)"
        no_credits = "the Brevo account has not enough credits for this: check its plan"
        not_allowed = ("the API key may not do this: check its permissions and, if the account restricts API "
                       "access by IP address, authorise this machine (Brevo > Security > Authorised IPs)")
        advice = {"unauthorized": refused_key, "not_enough_credits": no_credits,
                  "permission_denied": not_allowed}.get(code) or {
            401: refused_key, 402: no_credits, 403: not_allowed,
            404: f"not found: check {where}.base_url ({self.base_url})",
        }.get(response.status, f"unexpected HTTP {response.status}")
        detail = f" ({code}: {message})" if code or message else ""
        return DestinationError(redactor.redact(f"Brevo ({doing}): {advice}{detail}"))  # an answer may quote the key

    @staticmethod
    def _fail(members: Iterable[Member], reason: str) -> list[RecordResult]:
        return [RecordResult(member.key, reason) for member in members]


def _first_field(line: str) -> str:
    """The first field of a line of Brevo's CSV report (comma- or semicolon-separated), lower-cased."""
    return line.split(",")[0].split(";")[0].strip().strip('"').lower()
