"""The ``webhook`` destination: members POSTed as signed JSON to a service of your own.

Joins and changes go to ``{url}{upsert_path}`` as ``{"export": NAME, "members": [{"key", "identity",
"fields"}]}`` (every field on a join, the changed ones on a change), leavers to ``{url}{remove_path}``
as ``{"export": NAME, "members": [{"key", "identity"}]}``; each body is signed with the
connection's secret (``X-Segship-Signature: sha256=<hex HMAC-SHA256 of the body>``). A 2xx answer
whose body is empty, or a JSON object, acknowledges the batch but the records its ``refused`` list
names; any other 2xx (a proxy's page, a list, a refusal that doesn't fit the request) acknowledges
nothing and stops the run (see :func:`refusals`). 429 and 5xx are retried by segship's client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from segship.destination import (
    ConnectionContext,
    Destination,
    DestinationError,
    ExportContext,
    Limits,
    Member,
    Record,
    RecordResults,
    Records,
    answer_summary,
    unavailable_error,
)
from segship.http import HttpResponse, HttpStats, RetriesExhausted, RetryPolicy
from segship.notifiers.webhook import SIGNATURE_HEADER, signature
from segship.ratelimit import RateLimit
from segship.secrets import redactor
from segship.settings import with_defaults

from segship_webhook import schemas
from segship_webhook.mapping import MemberMapping

#: Requests in flight at once: a service of your own is paced by requests_per_second; a few
#: connections keep that pace despite its latency.
CONCURRENCY = 4
#: How much of a refusal's reason is kept: a reason is for a person to read, not a document.
MAX_REASON_LENGTH = 500


class NotTheServicesAnswer(Exception):
    """A 2xx answer that is not the webhook protocol's: it acknowledges nothing."""


def refusals(response: HttpResponse, sent: int) -> dict[int, str]:
    """The records a 2xx answer to a batch of ``sent`` members refuses, by index, with their reasons.

    The protocol's answers: an empty body (every member accepted), or a JSON object whose optional
    ``refused`` lists ``{"index": i, "reason": "…"}`` for members of the request, each at most once.
    Anything else raises NotTheServicesAnswer: nobody can tell what the service kept.
    """
    if not response.body.strip():
        return {}
    body = response.json()
    if not isinstance(body, dict):
        raise NotTheServicesAnswer(f"{answer_summary(response)}, not a JSON object")
    listed = body.get("refused", [])
    if not isinstance(listed, list):
        raise NotTheServicesAnswer(f"its refused is {type(listed).__name__}, not a list")
    refused: dict[int, str] = {}
    for entry in listed:
        index = entry.get("index") if isinstance(entry, dict) else None
        reason = entry.get("reason") if isinstance(entry, dict) else None
        if type(index) is not int or not 0 <= index < sent or index in refused:
            raise NotTheServicesAnswer(f"it refuses index {index!r}, which a request of {sent} members doesn't "
                                       "have (or refuses it twice)")
        if not isinstance(reason, str) or not reason.strip():
            raise NotTheServicesAnswer(f"it refuses index {index} without a reason")
        refused[index] = reason.strip()[:MAX_REASON_LENGTH]
    return refused


def url_identity(url: Any) -> str:
    """The URL as it identifies the service: scheme and host in lower case, no trailing slash."""
    parts = urlsplit(str(url).strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


class WebhookDestination(Destination):
    name = "webhook"
    connection_schema = schemas.connection_schema
    export_settings_schema = schemas.export_settings_schema
    mapping_schema = schemas.mapping_schema
    # the paths are where an export's members are: another path moves them (removed through the
    # old remove_path, added through the new upsert_path)
    target_settings = ("upsert_path", "remove_path")
    # the service is its URL (credentials can't be in it: the schema refuses them)
    instance_settings = ("url",)

    def __init__(self, connection: ConnectionContext, export: ExportContext | None = None, *,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__(connection, export)
        settings, export = self.connection.settings, self.export  # the schemas' defaults filled in
        self.url = str(settings["url"]).rstrip("/")
        self.batch_size = int(settings["batch_size"])
        self._secret = settings["secret"]  # an UnresolvedSecret in plan and --dry-run: never signs
        # masked in every log line and error, even when the settings were not resolved by the core
        redactor.add(self._secret)
        self._http = self.connection.http_client(self.url, {}, concurrency=CONCURRENCY, retry=retry,
                                                 rate_limit=RateLimit.per_second(settings["requests_per_second"]))
        # a connection test without an export checks the default path
        self._paths = export.settings if export else with_defaults(schemas.export_settings_schema, {})
        # an instance that only removes members from an earlier target may have no mapping (the
        # export moved here from another destination type since): removals need only the paths
        self._members = MemberMapping.from_config(export.mapping) if export and "identity" in export.mapping \
            else None

    @classmethod
    def instance_setting(cls, name: str, value: Any) -> Any:
        return url_identity(value) if name == "url" else value

    @property
    def limits(self) -> Limits:
        return Limits(upsert_batch_size=self.batch_size, remove_batch_size=self.batch_size, concurrency=CONCURRENCY)

    @property
    def http_stats(self) -> HttpStats:
        return self._http.stats

    # -- lifecycle ------------------------------------------------------------------------

    async def check_connection(self) -> str:
        # an empty batch changes nothing, and proves the URL, the path and the secret
        path = self._paths["upsert_path"]
        await self._post(path, [])
        return f"webhook at {self.url}{path}: accepts signed batches"

    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        if self._members is None:
            raise DestinationError("this webhook connection is not bound to an export, so it has no mapping")
        identity, fields = self._members.member(row, changed_columns)
        return Record(key=identity, identity=identity, payload=fields)

    async def upsert(self, records: Sequence[Record]) -> RecordResults:
        records = Records.of(records)
        members = [{"key": key, "identity": identity, "fields": fields}
                   for key, identity, fields in zip(records.keys, records.identities, records.payloads)]
        return RecordResults(records.keys, await self._post(self._paths["upsert_path"], members))

    async def remove(self, members: Sequence[Member]) -> RecordResults:
        leavers = [{"key": member.key, "identity": member.identity} for member in members]
        return RecordResults([member.key for member in members], await self._post(self._paths["remove_path"], leavers))

    async def finish(self) -> None:
        await self._http.close()

    # -- requests -----------------------------------------------------------------------------

    async def _post(self, path: str, members: list[dict[str, Any]]) -> dict[int, str]:
        """POST one signed batch; the reasons of the members the service refused, by index."""
        body = orjson.dumps({"export": self.export.name if self.export else None, "members": members})
        # signed here, not as a default header: the signature is of these very bytes
        headers = {SIGNATURE_HEADER: signature(body, self._secret)}
        try:
            response = await self._http.request("POST", path, body=body, headers=headers)
        except RetriesExhausted as exc:
            raise unavailable_error(exc, "the webhook", self.url + path, url_setting="url",
                                    limit_spent="the service kept refusing the pace",
                                    pacing_setting="requests_per_second") from None
        if not 200 <= response.status < 300:
            raise self._error(response, path)
        try:
            return {index: f"refused by the service: {reason}" for index, reason in
                    refusals(response, len(members)).items()}
        except NotTheServicesAnswer as exc:
            raise DestinationError(
                f"webhook: {self.url}{path} answered {exc}; nothing of the batch is counted as delivered, so it "
                f"is sent again on the next run. Check connections.{self.connection.name}.settings.url: it must "
                "reach the service itself, not a proxy or gateway answering in its place") from None

    def _error(self, response: HttpResponse, path: str) -> DestinationError:
        """A run-stopping error for a non-2xx answer, saying what to check (never the secret)."""
        where = f"connections.{self.connection.name}.settings"
        advice = {
            401: f"the service refused the signature: check {where}.secret (the service's copy must be the same)",
            403: f"the service refused the signature: check {where}.secret (the service's copy must be the same)",
            404: f"{self.url}{path} was not found: check {where}.url and the export's upsert_path and remove_path",
            413: f"the batch was too large for the service: lower {where}.batch_size",
        }.get(response.status, f"unexpected answer from {self.url}{path}")
        return DestinationError(f"webhook: {advice} ({answer_summary(response)})")
