"""The Destination contract: what a destination plugin declares and implements.

A destination is a class registered through ``segship_register_destinations``. The
engine drives one instance per export run through this lifecycle::

    destination = DestinationClass(connection, export)   # no I/O
    await destination.check_connection()                  # `segship connections test`
    await destination.prepare()                           # opens the HTTP session, checks the export
    record = destination.map(row, changed_columns)        # mapping rules; raises RowRejected
    results = await destination.upsert(records)           # joins and changes, per-record results
    results = await destination.remove(members)           # leavers, per-record results
    await destination.finish()                            # closes everything; always called

``check_connection``, ``prepare`` and ``finish`` are coroutines because they talk to
the network; ``map`` is plain and pure so ``--dry-run`` can map every row without a
connection. A destination owns its limits (``limits``) and its pacing (through
:class:`segship.http.HttpClient`); the engine honours both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from segship.http import HttpStats


class RowRejected(Exception):
    """Raised by ``Destination.map`` when a row can't be sent as it is; the row becomes a reject."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DestinationError(Exception):
    """A problem that stops the run (bad key, missing permission, wrong endpoint, missing list).

    The message is shown to the user as it is: it must say what to fix and must never
    contain a secret.
    """


@dataclass(frozen=True, slots=True)
class Limits:
    """Batching and concurrency a destination allows; pacing lives in its HttpClient."""

    upsert_batch_size: int
    remove_batch_size: int
    concurrency: int = 8
    max_profiles: int | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """One mapped row, ready to send.

    ``key`` is the segment key: the engine sets it on what ``map`` returns (a destination
    doesn't know the key column), so a destination may leave any value there.
    ``identity`` is how the destination knows the profile (Braze ``external_id``, a
    Brevo email). The engine keeps it in state so a leaver can be removed after its row
    has gone from the segment, and so a changed identity removes the old one.
    """

    key: str
    identity: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Member:
    """A profile that left the segment, as the destination last acknowledged it."""

    key: str
    identity: str


@dataclass(frozen=True, slots=True)
class RecordResult:
    """The destination's answer for one record: acknowledged when ``error`` is None."""

    key: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class ConnectionContext:
    """A configured connection with its settings resolved (secrets included: never log it)."""

    name: str
    settings: Mapping[str, Any] = field(repr=False)  # holds the API key: never in a repr


@dataclass(frozen=True)
class ExportContext:
    """The export a destination instance serves: its settings and mapping as configured."""

    name: str
    settings: Mapping[str, Any]
    mapping: Mapping[str, Any]
    segments: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class ConfigProblem:
    """A plugin-specific config error; ``path`` is relative to the export (``("mapping", "email")``)."""

    path: tuple[str | int, ...]
    message: str


class Destination(ABC):
    """Base class of destination plugins. Subclasses set the class attributes and the lifecycle."""

    #: The connection ``type`` that selects this destination.
    name: ClassVar[str]
    #: Other ``type`` values accepted for it (``brevo`` for ``sendinblue``).
    aliases: ClassVar[tuple[str, ...]] = ()
    #: JSON Schema of ``connections.<name>.settings``; mark secret fields ``"x-secret": true``.
    connection_schema: ClassVar[dict[str, Any]]
    #: JSON Schema of ``exports.<name>.settings``.
    export_settings_schema: ClassVar[dict[str, Any]]
    #: JSON Schema of ``exports.<name>.mapping``.
    mapping_schema: ClassVar[dict[str, Any]]
    #: Export settings that name where members go (a list, a segment). Changing one moves the
    #: members: the engine removes them from the old target (through an instance built with the
    #: old settings) and sends them to the new one, instead of re-sending everyone.
    target_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, connection: ConnectionContext, export: ExportContext | None = None) -> None:
        self.connection = connection
        self.export = export

    # -- declared facts -------------------------------------------------------------------

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        """Checks beyond the JSON Schemas, made by `segship validate` (no secrets, no network)."""
        return ()

    @classmethod
    def target(cls, export_settings: Mapping[str, Any]) -> dict[str, Any]:
        """The export's target: its ``target_settings``, with the schema's defaults for those not set."""
        properties = cls.export_settings_schema.get("properties", {})
        return {name: export_settings.get(name, properties.get(name, {}).get("default"))
                for name in cls.target_settings}

    @classmethod
    def source_columns(cls, mapping: Mapping[str, Any]) -> list[str]:
        """The segment columns the mapping reads: by default every string value in it, in order."""
        columns: list[str] = []

        def collect(value: Any) -> None:
            if isinstance(value, str):
                if value not in columns:
                    columns.append(value)
            elif isinstance(value, Mapping):
                for item in value.values():
                    collect(item)
            elif isinstance(value, list):
                for item in value:
                    collect(item)

        collect(mapping)
        return columns

    @property
    @abstractmethod
    def limits(self) -> Limits:
        """Batch sizes, concurrency and profile cap for this connection and export."""

    @property
    def http_stats(self) -> HttpStats:
        """Requests, retries and throttles so far; destinations with an HttpClient return its stats."""
        return HttpStats()

    # -- lifecycle ------------------------------------------------------------------------

    @abstractmethod
    async def check_connection(self) -> str:
        """Prove the key and endpoint work without changing data; return a one-line description.

        Raise DestinationError with a clear message otherwise.
        """

    async def prepare(self) -> None:
        """Open what a run needs (session) and check the export against the destination."""

    @abstractmethod
    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        """Apply the mapping rules to a segment row.

        ``changed_columns`` is None for a new member (send everything) or the source
        columns whose values changed since the destination last acknowledged the row.
        Raise RowRejected with a reason for a row that can't be sent.
        """

    @abstractmethod
    async def upsert(self, records: Sequence[Record]) -> list[RecordResult]:
        """Send joins and changes; return one result per record (any order)."""

    @abstractmethod
    async def remove(self, members: Sequence[Member]) -> list[RecordResult]:
        """Take leavers out of the segment or list (the profile is not deleted); one result each."""

    async def finish(self) -> None:
        """Release what prepare or check_connection opened; called exactly once, even after errors."""
