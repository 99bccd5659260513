"""The Destination contract: what a destination plugin declares and implements.

A destination is a class registered through ``segship_register_destinations``. The
engine drives one instance per export run through this lifecycle::

    destination = DestinationClass(connection, export)   # no I/O
    await destination.observe_instance()                  # only if observes_instance, settings changed
    await destination.check_connection()                  # every run with work; `segship connections test`
    await destination.prepare()                           # opens the HTTP session, checks the export
    record = destination.map(row, changed_columns)        # mapping rules; raises RowRejected; Record.dropped
    mapped = destination.map_batch(rows, changed)         # the engine's way: a batch of rows at once
    results = await destination.upsert(records)           # joins and changes, per-record results
    results = await destination.remove(members)           # leavers, per-record results
    await destination.finish()                            # closes everything; always called

``check_connection``, ``prepare`` and ``finish`` are coroutines because they talk to
the network; ``map`` is plain and pure so ``--dry-run`` can map every row without a
connection. A destination owns its limits (``limits``) and its pacing (through
:class:`segship.http.HttpClient`); the engine honours both.

``map`` is the whole contract a plugin must meet. The engine maps a batch of rows at once
through ``map_batch``, whose default calls ``map`` row by row; a destination may override
it to map column-wise (Braze and Brevo do, to spare the Python objects of each row and
value), as long as every row comes out exactly as ``map`` makes it. The engine hands
``upsert`` a :class:`Records` (column-wise, and a sequence of :class:`Record`), and a
destination may answer with a :class:`RecordResults` instead of a list.

A destination may also declare how it compares identities (``identity_rule``: the engine
then stops a plan where two keys would become one profile) and how to count and list the
members its target holds (``count_members``: an export whose state is empty stops if the
target holds any; ``list_members``: ``segship state rebuild``).

A row is refused (``RowRejected``) only when the destination can't know whom it is about (its
identity is unusable) or can't take it at all. A value the destination can't take in a field
that is not the identity is left out of the record instead, and the record says so
(``Record.dropped``, ``MappedBatch.dropped``: a :class:`DroppedField` per field left out, named
by the segment column it came from); the engine counts them, keeps them in state and, for an
export with ``on_invalid_field: reject``, refuses the row with the field's reason instead.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, overload

from segship.errors import SegshipError
from segship.http import HttpClient, HttpResponse, HttpStats, RetriesExhausted
from segship.network import NetworkSettings
from segship.secrets import redactor
from segship.settings import with_defaults

if TYPE_CHECKING:
    import pyarrow as pa

#: What a destination plugin imports from here (with ``redactor``, the process's secret redactor,
#: re-exported from ``segship.secrets``); docs/plugins.md lists every public name and its module.
__all__ = [
    "ConfigProblem", "ConnectionContext", "Destination", "DestinationError", "ExportContext", "IdentityRule", "Limits",
    "MappedBatch", "Member", "Record", "RecordResult", "RecordResults", "Records", "RowRejected", "answer_summary",
    "redactor", "unavailable_error",
]


class RowRejected(Exception):
    """Raised by ``Destination.map`` when a row can't be sent as it is; the row becomes a reject."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DroppedField(NamedTuple):
    """A field left out of a record because its value was invalid: the segment ``column`` the value
    came from (where the user fixes it, and what the engine tracks changes by) and why."""

    column: str
    reason: str


class DestinationError(SegshipError):
    """A problem that stops the run (bad key, missing permission, wrong endpoint, missing list).

    The message is shown to the user as it is: it must say what to fix and must never
    contain a secret.
    """


def answer_summary(response: HttpResponse) -> str:
    """An answer as a user can recognise it, without its body: for an answer that is not the
    service's (a proxy's or a gateway's page), whose body may hold anything."""
    kind = response.headers.get("Content-Type") or "no content type"
    return f"HTTP {response.status} with {len(response.body)} bytes of {kind}"


def unavailable_error(exc: RetriesExhausted, service: str, url: str, *, url_setting: str, limit_spent: str,
                      pacing_setting: str) -> DestinationError:
    """The run-stopping error for a request that failed after every retry, saying what to do.

    The destination supplies its own words: its ``service`` name, the ``url`` it was reached at
    and the connection setting holding it, what a run of 429s means (``limit_spent``: whose
    limit is used up, by whom perhaps) and the setting that paces its requests.
    """
    if exc.throttled:
        return DestinationError(f"{service} kept answering 429 Too Many Requests: {limit_spent}; "
                                f"try again later or lower {pacing_setting}")
    if exc.server_error:
        return DestinationError(f"{service} is unavailable (server errors: {exc}); try again later")
    return DestinationError(f"can't reach {service} at {url} ({exc}); check {url_setting} and the network")


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
    ``dropped`` names the fields left out of ``payload`` for their invalid values.
    """

    key: str
    identity: str
    payload: Any
    dropped: tuple[DroppedField, ...] = ()


class Records(Sequence[Record]):
    """Records column-wise: record ``i`` is ``keys[i]``, ``identities[i]``, ``payloads[i]``.

    What the engine hands ``upsert``. Indexing or iterating gives :class:`Record` objects, so
    any ``upsert`` works with it; reading the columns is cheaper (no object per record).
    """

    __slots__ = ("keys", "identities", "payloads")

    def __init__(self, keys: list[str], identities: list[str], payloads: Sequence[Any]) -> None:
        self.keys, self.identities, self.payloads = keys, identities, payloads

    @classmethod
    def of(cls, records: Sequence[Record]) -> Records:
        """``records`` column-wise (themselves when they already are)."""
        if isinstance(records, Records):
            return records
        return cls([r.key for r in records], [r.identity for r in records], [r.payload for r in records])

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> Records: ...

    def __getitem__(self, index: int | slice) -> Record | Records:
        if isinstance(index, slice):
            return Records(self.keys[index], self.identities[index], self.payloads[index])
        return Record(self.keys[index], self.identities[index], self.payloads[index])

    def __iter__(self) -> Iterator[Record]:
        return map(Record, self.keys, self.identities, self.payloads)


@dataclass(frozen=True, slots=True)
class MappedBatch:
    """What ``map_batch`` makes of a batch of rows, row by row: row ``i`` is refused (``rejects[i]``
    is why) or becomes a record of ``identities[i]`` and ``payloads[i]``, without the fields
    ``dropped[i]`` names (when ``i`` is there). A refused row's entries in those lists are
    placeholders the engine ignores."""

    identities: list[Any]
    payloads: Sequence[Any]  # a list, or any sequence the destination's upsert takes
    rejects: Mapping[int, str] = field(default_factory=dict)
    dropped: Mapping[int, Sequence[DroppedField]] = field(default_factory=dict)


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


class RecordResults(Sequence[RecordResult]):
    """An answer for every record sent, column-wise: record ``i`` (``keys[i]``) was refused with
    ``refused[i]``, all others acknowledged. Iterating gives :class:`RecordResult` objects; the
    engine reads the columns (no object per record)."""

    __slots__ = ("keys", "refused")

    def __init__(self, keys: Sequence[str], refused: Mapping[int, str] | None = None) -> None:
        self.keys, self.refused = keys, refused or {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> RecordResult:  # type: ignore[override] - no slices needed
        return RecordResult(self.keys[index], self.refused.get(range(len(self.keys))[index]))

    def __iter__(self) -> Iterator[RecordResult]:
        refused = self.refused
        return (RecordResult(key, refused.get(index)) for index, key in enumerate(self.keys))


@dataclass(frozen=True)
class ConnectionContext:
    """A configured connection with its settings resolved (secrets included: never log it).

    In a run and a connection test every ``${env:…}``/``${file:…}`` is resolved, at any depth. ``plan``
    and ``export --dry-run`` resolve nothing and send nothing: there each setting given by reference
    is a :class:`segship.secrets.UnresolvedSecret`, which can't pass for a value. A destination gets
    its schema's defaults filled in (``Destination.connection``), whoever built the context.
    """

    name: str
    settings: Mapping[str, Any] = field(repr=False)  # holds the API key: never in a repr
    #: the connection's ``network:`` block (proxy, TLS, timeouts, retries), resolved
    network: NetworkSettings = field(default_factory=NetworkSettings, repr=False)
    #: set when the run is told to stop (Ctrl-C, SIGTERM): the HTTP clients' waits end at once
    stop: asyncio.Event | None = field(default=None, repr=False, compare=False)

    def http_client(self, base_url: str, headers: Mapping[str, str], **options: Any) -> HttpClient:
        """An :class:`~segship.http.HttpClient` that goes where this connection's ``network:`` says
        (proxy, TLS, timeouts, retries) and stops waiting when the run stops; ``options`` are
        HttpClient's own (``rate_limit``, ``concurrency``, ``rate_limit_headers``, ``retry`` …)."""
        return HttpClient(base_url, headers, network=self.network, stop=self.stop, **options)


@dataclass(frozen=True)
class ExportContext:
    """The export a destination instance serves: its settings and mapping as configured (a
    destination reads them from ``Destination.export``, its schemas' defaults filled in)."""

    name: str
    settings: Mapping[str, Any]
    mapping: Mapping[str, Any]
    segments: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class IdentityRule:
    """How a destination makes a member's identity from a segment column, as data: the engine finds
    keys whose identities collide (one profile at the destination for two members) in bulk, in
    DuckDB, before anything is mapped.

    ``normalisation`` is how the destination compares identities: ``exact``; ``trim`` (whitespace
    around it ignored, as Python's ``str.strip``); ``lower`` (trimmed, and compared
    case-insensitively). A normalised identity that is empty, longer than ``max_length``
    characters or doesn't fully match ``pattern`` (RE2 syntax) is one the mapping refuses: it
    collides with nothing. ``name`` is what the destination calls it, for messages (``email``,
    ``external_id``).
    """

    column: str
    normalisation: Literal["exact", "trim", "lower"] = "exact"
    pattern: str | None = None
    name: str = "identity"
    max_length: int | None = None


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
    #: Connection settings that tell one instance of the destination (an account, a workspace)
    #: from another without asking it (Braze: the REST endpoint). Never a secret: ``plan`` reads
    #: them. With the destination's name, and the connection's name unless ``observes_instance``,
    #: they make the instance members are acknowledged in: pointing an export at another one
    #: moves its members there (see docs/engine.md, "Moves").
    instance_settings: ClassVar[tuple[str, ...]] = ()
    #: True when the destination can say which account a connection's credentials reach
    #: (``observe_instance``; Brevo): that account, not the connection's name, identifies the
    #: instance, so a renamed connection or a rotated key on the same account moves nobody.
    observes_instance: ClassVar[bool] = False

    def __init__(self, connection: ConnectionContext, export: ExportContext | None = None) -> None:
        # the schemas' defaults, filled in before the destination reads a setting: a plugin never
        # restates them in Python (a subclass reads self.connection and self.export after this)
        self.connection = replace(connection, settings=with_defaults(self.connection_schema, connection.settings))
        self.export = export if export is None else replace(
            export, settings=with_defaults(self.export_settings_schema, export.settings),
            mapping=with_defaults(self.mapping_schema, export.mapping))

    # -- declared facts -------------------------------------------------------------------

    @classmethod
    def check_export(cls, connection_settings: Mapping[str, Any], export_settings: Mapping[str, Any],
                     mapping: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        """Checks beyond the JSON Schemas, made by `segship validate` (no secrets, no network)."""
        return ()

    @classmethod
    def target(cls, export_settings: Mapping[str, Any]) -> dict[str, Any]:
        """The export's target: its ``target_settings``, with the schema's defaults for those not set."""
        settings = with_defaults(cls.export_settings_schema, export_settings)
        return {name: settings.get(name) for name in cls.target_settings}

    @classmethod
    def instance_setting(cls, name: str, value: Any) -> Any:
        """An instance setting's value as it identifies the instance; override to normalise what
        names the same instance in several ways (Braze: an endpoint's trailing slash)."""
        return value

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

    @classmethod
    def identity_rule(cls, mapping: Mapping[str, Any]) -> IdentityRule | None:
        """How the mapping makes a member's identity (its column and the destination's comparison), so
        that keys sharing one are found before sending (``identity_conflicts``); None, the default:
        identities are not checked. It must agree with ``map``: two rows whose identities are equal
        under the rule are mapped to one identity."""
        return None

    @classmethod
    def counts_members(cls) -> bool:
        """Whether the destination can count the members its target holds (``count_members``)."""
        return cls.count_members is not Destination.count_members

    @classmethod
    def lists_members(cls) -> bool:
        """Whether the destination can list the members its target holds (``list_members``)."""
        return cls.list_members is not Destination.list_members

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

    async def observe_instance(self) -> dict[str, Any]:
        """Ask the destination which account the connection's credentials reach (only called when
        ``observes_instance``): a small JSON-able dict naming it, never a secret (Brevo:
        ``{"organization_id": …}``). Raise DestinationError when the answer doesn't say.

        The engine asks once per change of the connection's settings, key included (it keeps a
        salted fingerprint of them), so an unchanged run still makes no request.
        """
        raise NotImplementedError(f"{type(self).__name__} sets observes_instance without observe_instance")

    @abstractmethod
    def map(self, row: Mapping[str, Any], changed_columns: frozenset[str] | None = None) -> Record:
        """Apply the mapping rules to a segment row.

        ``changed_columns`` is None for a new member (send everything) or the source
        columns whose values changed since the destination last acknowledged the row; the
        record must have every field those columns feed (the engine keeps the fields dropped
        for a column until a record maps that column again).
        Raise RowRejected with a reason for a row that can't be sent (its identity is unusable);
        leave out a field whose value is invalid and name it in ``Record.dropped``.
        """

    def map_batch(self, rows: pa.RecordBatch, changed: Sequence[frozenset[str] | None] | None = None) -> MappedBatch:
        """Apply the mapping rules to a batch of segment rows (the mapped columns only).

        ``changed`` is None when every row is a new member, otherwise ``changed[i]`` is what
        ``map`` gets as ``changed_columns`` for row ``i``. This default calls ``map`` row by row;
        an override must give, for every row, exactly the payload, identity and dropped fields
        ``map`` gives, or the same reject.
        """
        identities: list[Any] = []
        payloads: list[Any] = []
        rejects: dict[int, str] = {}
        dropped: dict[int, Sequence[DroppedField]] = {}
        for index, row in enumerate(rows.to_pylist()):
            try:
                record = self.map(row, None if changed is None else changed[index])
            except RowRejected as exc:
                rejects[index] = exc.reason
                identities.append(None)
                payloads.append(None)
            else:
                identities.append(record.identity)
                payloads.append(record.payload)
                if record.dropped:
                    dropped[index] = record.dropped
        return MappedBatch(identities, payloads, rejects, dropped)

    @abstractmethod
    async def upsert(self, records: Sequence[Record]) -> Sequence[RecordResult]:
        """Send joins and changes; return one result per record (any order), a list or a RecordResults.

        The engine passes a :class:`Records`; read its columns (``Records.of(records)``) to avoid
        an object per record.
        """

    @abstractmethod
    async def remove(self, members: Sequence[Member]) -> Sequence[RecordResult]:
        """Take leavers out of the segment or list (the profile is not deleted); one result each."""

    async def count_members(self) -> int | None:
        """How many members the export's target holds at the destination (a Brevo list's contacts), or
        None when it can't tell. Optional: a run whose state holds none of the export's members asks
        it (after ``check_connection``) and stops before sending if the target holds any (lost state;
        ``--allow-empty-state``). The default can't tell."""
        return None

    def list_members(self) -> AsyncIterator[Sequence[str]]:
        """The identities of every member the export's target holds, a page at a time (an async
        generator; called after ``check_connection``). Optional: ``segship state rebuild`` rebuilds
        the export's state from it. The default can't list them."""
        raise DestinationError(f"{self.name} can't list the members of a target")

    async def finish(self) -> None:
        """Release what prepare or check_connection opened; called exactly once, even after errors."""
