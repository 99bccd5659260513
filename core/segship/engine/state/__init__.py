"""Run state: what each destination acknowledged, runs and rejects, behind one contract.

Per export and key, state keeps the hash of the row the destination last acknowledged,
per-column hashes (to send only changed attributes) and the identity the destination
knows the profile by (to remove it after it has left the segment: for Brevo that is the
email, so state holds personal data; keep it where the data it was made from is kept).
Nothing is written before the destination acknowledges it, and each group of answered
batches is committed in one transaction, so a run killed at any moment loses nothing.

The engine uses :class:`StateStore` without knowing where state lives; :func:`open_state`
picks the backend from the config: ``state.path``, a SQLite file (the embedded default,
``sqlite.py``), or ``state.url``, a PostgreSQL database shared by every machine that runs
the exports (``postgres.py``). The SQL they share is in the ``sql`` package, a module per
concern. The contract is split the same way: one abstract base per concern (members,
targets, batches in flight, rejects, dropped fields, runs, alerts, the sync log, the destination each export was last
sent through, administration, transfer), which
:class:`StateStore` combines, so callers hold one store and call ``state.<method>``.

One run per export at a time: SQLite holds an OS file lock, PostgreSQL a session-level
advisory lock; both die with the process, so a run killed with -9 frees its export at once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Union

from segship.errors import SegshipError

if TYPE_CHECKING:
    import pyarrow as pa

    from segship.config import Config
    from segship.destination import Member

#: A member's per-column hashes as the engine makes them: opaque to state (bytes, 8 a column; or
#: the comma-joined decimal text of hash version 1, kept until the export's hashes are converted).
ColumnHashes = bytes | str
#: Acknowledged rows: (key, row hash, column hashes, identity) tuples, or those columns of an Arrow
#: record batch (``ACKNOWLEDGED_COLUMNS``: what the engine commits, with no Python object per row).
Acknowledged = Union[Iterable[tuple[str, int, ColumnHashes | None, str]], "pa.RecordBatch"]  # pa is imported lazily
ACKNOWLEDGED_COLUMNS = ("key", "row_hash", "column_hashes", "identity")
#: The sync log's actions; state keeps each as its place here (``add`` and ``update``, the most
#: frequent, as 0 and 1, which take no byte in a SQLite record). Never reordered: stored codes.
SYNC_LOG_ACTIONS = ("add", "update", "remove", "move", "refused", "dropped_field")
#: A commit's sync log changes: an Arrow record batch of these columns (``LoggedChanges``).
SYNC_LOG_COLUMNS = ("key", "identity", "action", "fields", "reason")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class MembersDigest(NamedTuple):
    """An export's members summed up: how many, and a sum over them of a 64-bit mix of (key, row
    hash, target) modulo 2**64 (as a signed 64-bit integer), by the hash function ``kind`` names.

    State keeps one per export once the engine knows it (``record_members_digest``) and drops it
    with any write to the export's members, so one that is there is of the members as they are:
    a plan whose members sum to it is unchanged without reading state (see ``engine/planning.py``).
    """

    kind: str
    members: int
    digest: int
    #: by bucket of their keys, for a bucketed kind (``engine/buckets.py``; then ``digest`` is 0)
    buckets: bytes | None = None


class TargetInstance(NamedTuple):
    """Where a target is: the destination instance (account, workspace) its members were
    acknowledged in (``engine/instances.py``; None: recorded before instances were, adopted by
    the export's next run), and the connection that last reached it."""

    instance: dict[str, Any] | None
    connection: str | None


class MembersLocation(NamedTuple):
    """Where an export's members are when not in state: the planner schema of a warehouse source
    (``planner: {schema: …}``; see ``engine/warehouse_state.py``)."""

    source: str
    schema: str


class RecordedInstance(NamedTuple):
    """The instance an export's last run was against, and the salted fingerprint of the connection
    settings its account was observed with (None: the destination observes none)."""

    instance: dict[str, Any]
    credentials: str | None


class RecordedDestination(NamedTuple):
    """What an export's last run built its destination from, kept so that the export can be retired once
    it is gone from the config (``segship retire``): the connection's name (its settings, secrets
    included, stay in the config), the destination type (the plugin's name) and the export's settings
    and mapping as they were (no secret: secrets live in connections)."""

    connection: str
    type: str
    settings: dict[str, Any]
    mapping: dict[str, Any]


class OpenAlert(NamedTuple):
    """A condition of an export that an alert was sent for and that has not cleared yet."""

    event: str                  # failed, safeguard, rejects, drop, stale (segship.alerts)
    opened_at: str              # ISO time, UTC
    run_id: int | None          # the run that opened it; None when the scheduler's check did (stale)
    message: str
    figures: dict[str, Any]


class Rejected(NamedTuple):
    """A row refused, as a commit records it: by the destination (``row_hash`` None: sent again next
    run), or by segship's mapping rules, with the hash of the row they refused and the fingerprint
    of the mapping that refused it (deterministic: not mapped again while both stay as they were).
    A plain (key, reason) pair is a destination's refusal."""

    key: str
    reason: str
    row_hash: int | None = None
    mapping: str | None = None


@dataclass
class DroppedFields:
    """What a commit's acknowledged records left out for their invalid values, and which of the
    members' earlier dropped fields they replace: a record mapped whole replaces every one of its
    member's (``whole``: their keys), a change only those of the columns it mapped (``remapped``:
    (key, column) pairs; a column left unchanged holds the value, and so the problem, it had)."""

    whole: Sequence[str] | pa.Array = ()
    remapped: Sequence[tuple[str, str]] = ()
    fields: Sequence[tuple[str, str, str]] = ()  # (key, column, reason)


class LoggedChanges(NamedTuple):
    """What a commit writes to the sync log, in its transaction: the run's id and a record batch of
    ``SYNC_LOG_COLUMNS``: key, identity (None: the same as the key; ``""``: not known), action (its
    code, the place in ``SYNC_LOG_ACTIONS``, int32), fields (comma-joined: an update's changed
    columns, a dropped field) and reason (refused, dropped field). Built by ``engine/sync_log.py``."""

    run_id: int
    changes: pa.RecordBatch


class StateError(SegshipError):
    """State can't be used (locked by another run, written by a newer segship, unreachable)."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def export_lock_key(export: str) -> int:
    """A stable signed 64-bit number for an export's run lock (the same on every machine and Python)."""
    return int.from_bytes(hashlib.sha256(f"segship export {export}".encode()).digest()[:8], "big", signed=True)


class MemberStore(ABC):
    """Members: what the destination acknowledged of each key, the settings and hash version their hashes
    were made with, the digest that lets an unchanged plan skip reading them, and committing answers."""

    @abstractmethod
    def acknowledged(self, export: str) -> pa.RecordBatchReader:
        """(key, row_hash, target) of every member the destination acknowledged, streamed for the bulk diff."""

    @abstractmethod
    def members_digest(self, export: str) -> MembersDigest | None:
        """The digest recorded of the export's members, if one is and no write to them followed."""

    @abstractmethod
    def record_members_digest(self, export: str, digest: MembersDigest) -> None:
        """Record the digest of the export's members as they are now (the engine computed it: the
        run holds the export's lock). Every later write to the members drops it, in its transaction."""

    @abstractmethod
    def reconcile_settings(self, export: str, fingerprint: str, columns: Sequence[str],
                           earlier_fingerprint: str | None = None) -> bool:
        """Record the settings a run uses; if they changed, mark every member for a full re-send.

        Done in one transaction before sending, so a run killed afterwards still re-sends
        what it didn't reach. Returns True when the settings changed. ``earlier_fingerprint``
        is the same settings as an older segship fingerprinted them: found, it is replaced.
        Changed settings leave no hash to convert: the export's hash version becomes the current one.
        """

    @abstractmethod
    def settings_changed(self, export: str, fingerprint: str, columns: Sequence[str],
                         earlier_fingerprint: str | None = None) -> bool:
        """Whether a run would re-send everyone for changed settings (read only: plan, dry run)."""

    @abstractmethod
    def has_members(self, export: str) -> bool: ...

    @abstractmethod
    def hash_version(self, export: str) -> int:
        """The version of the hash functions that made the export's hashes
        (``segship.engine.hashing.HASH_VERSION``; a new export: the current one)."""

    @abstractmethod
    def stored_hashes(self, export: str) -> pa.Table:
        """(key, row_hash, column_hashes as text) of every member as stored, to convert hashes of
        version 1 (decimal text column hashes) to the current version."""

    @abstractmethod
    def convert_hashes(self, export: str, converted: pa.Table, version: int) -> None:
        """Replace members' hashes with ``converted`` (key, row_hash, column_hashes) made by ``version``,
        in one transaction with the export's hash version."""

    @abstractmethod
    def details(self, export: str, keys: Sequence[str]) -> dict[str, tuple[ColumnHashes | None, str]]:
        """key -> (column_hashes, identity) for the given keys."""

    @abstractmethod
    def identities_held(self, export: str, identities: Iterable[str], target: int,
                        excluding: Iterable[str] = ()) -> set[str]:
        """Which of ``identities`` a member holds in ``target``, members with a key in ``excluding`` aside.

        A removal must not take out a profile that a staying member still maps to (two
        keys with one email, a swapped email): such identities are forgotten, not removed.
        """

    @abstractmethod
    def commit_upserts(self, export: str, acknowledged: Acknowledged,
                       stale: Iterable[tuple[str, str]], rejected: Iterable[Rejected | tuple[str, str]], *,
                       target: int = 1, moving: bool = False, in_flight: int | None = None,
                       dropped: DroppedFields | None = None, write_members: bool = True,
                       log: LoggedChanges | None = None) -> None:
        """One transaction per group of answered batches: acknowledged rows (now in ``target``), identities
        they replaced there, rejects, the fields they left out; the group is no longer in flight
        (``record_in_flight``'s id). When ``moving``, a member acknowledged before in another target
        leaves its identity there to remove (a stale identity of that target). Without ``write_members`` (a
        warehouse planner wrote them where it keeps them), the acknowledged rows only settle their keys'
        rejects and dropped fields. When ``moving``, its ``add`` in ``log`` is written as a ``move``;
        ``log``: the group's changes for the sync log (``SyncLogStore``), in ``target``."""

    @abstractmethod
    def commit_removals(self, export: str, removed: Iterable[Member], rejected: Iterable[tuple[str, str]],
                        stale: bool, target: int = 1, log: LoggedChanges | None = None) -> None:
        """Acknowledged removals: leavers leave the members (their rejects and dropped fields with them);
        stale identities leave ``target``'s list; ``log``: their changes for the sync log, in ``target``."""

    @abstractmethod
    def members_location(self, export: str) -> MembersLocation | None:
        """Where the export's members are, when a warehouse planner keeps them (None: here)."""

    @abstractmethod
    def move_members_out(self, export: str, location: MembersLocation) -> None:
        """The export's members now live at ``location`` (copied there already): record it and drop them
        here, in one transaction."""

    @abstractmethod
    def take_members_back(self, export: str, members: Iterable[pa.RecordBatch]) -> None:
        """The export's members come back from where ``members_location`` says: replace them here with
        ``members`` (batches of ``ACKNOWLEDGED_COLUMNS`` and ``target``) and forget the location, in one
        transaction."""

    @abstractmethod
    def add_unknown_members(self, export: str, members: Sequence[tuple[str, str]], target: int) -> int:
        """(key, identity) of members the destination holds in ``target`` though state didn't know them
        (``segship state rebuild``), added in one transaction, of unknown row hash: the next run sends a
        member's row again whole, or removes it once it is no longer in the segment. A key that is a
        member already is left as it is. Returns how many were added."""


class TargetStore(ABC):
    """Targets (the lists or segments an export's members were sent to, each in a destination
    instance), which members are in which, the identities left in a target to remove from it (a
    member's old identity, a moved member's), and the instance each export last ran against."""

    @abstractmethod
    def target_id(self, export: str, target: dict[str, Any], *, record: bool, instance: dict[str, Any] | None = None,
                  connection: str | None = None) -> int:
        """The id of the export's target: settings naming a list or segment, in ``instance`` (None: as
        recorded before instances); a new one gets the next id, recorded when ``record``, with the
        ``connection`` reaching it. The first target recorded is 1: where earlier members are.

        A target recorded before instances (its instance NULL) is the same target in any instance
        until a run records one: then every such target of the export adopts it (they were all
        reached through the export's connection, which reaches ``instance`` now). Recording a
        known target with another ``connection`` (a renamed one, on the same account) keeps that one.
        """

    @abstractmethod
    def targets(self, export: str) -> dict[int, dict[str, Any]]:
        """Every target the export has had: id -> its settings."""

    @abstractmethod
    def target_instances(self, export: str) -> dict[int, TargetInstance]:
        """Every target the export has had: id -> the instance it is in and the connection reaching it."""

    @abstractmethod
    def recorded_instance(self, export: str) -> RecordedInstance | None:
        """The instance the export's last run was against, if one was recorded."""

    @abstractmethod
    def record_instance(self, export: str, instance: dict[str, Any], credentials: str | None) -> None:
        """Record the instance a run is against (before it plans) and the fingerprint of the settings
        that observed it."""

    @abstractmethod
    def members_by_target(self, export: str, keys: Sequence[str]) -> dict[int, list[Member]]:
        """The members with the given keys, by the target they were acknowledged in."""

    @abstractmethod
    def stale_identities(self, export: str) -> dict[int, list[Member]]:
        """target -> identities to remove from it."""

    @abstractmethod
    def count_stale_identities(self, export: str, target: int | None = None) -> int:
        """Identities left to remove from the export's targets (``target``'s only, when given)."""

    @abstractmethod
    def forget_target(self, export: str, target: int) -> int:
        """Stop tracking what is in a target (``segship state forget --left-in``): its identities left
        to remove, and its members (one still in the segment joins the export's target again, whole).
        Nothing is removed from the destination. Returns how many identities were forgotten."""


class InFlightStore(ABC):
    """Batches in flight: sent, their answer not yet committed."""

    @abstractmethod
    def record_in_flight(self, export: str, keys: Sequence[str], identities: Sequence[str], target: int) -> int:
        """Before a group of batches is sent: its (key, identity) pairs, sent to ``target``; returns the
        group's id for ``commit_upserts``. A batch the destination applied but whose commit never
        came (a run killed in flight) is known this way: ``settle_in_flight`` folds it in next time."""

    @abstractmethod
    def in_flight_records(self, export: str) -> list[tuple[int, int, list[str], list[str]]]:
        """(id, target, keys, identities) of each group of the export still in flight, in the order sent."""

    @abstractmethod
    def settle_in_flight(self, export: str) -> int:
        """Batches sent and never answered: their keys that are no member become members of unknown
        row hash (0: sent again while in the segment, removed once they leave); a member's other
        identity or target there becomes a stale identity. Returns how many keys were folded in."""


class DestinationStore(ABC):
    """The destination each export was last sent through (``RecordedDestination``), for ``segship retire``."""

    @abstractmethod
    def record_destination(self, export: str, destination: RecordedDestination) -> None:
        """Keep what this run of ``export`` builds its destination from (written only when it changed)."""

    @abstractmethod
    def recorded_destination(self, export: str) -> RecordedDestination | None:
        """What the export's last run built its destination from; None before a run of this version."""


class RejectStore(ABC):
    """Rows refused (recorded by the commits): by the destination, retried until accepted or gone; by
    segship's mapping rules, kept with the row's hash and the mapping's fingerprint, so a
    plan knows in bulk which are still refused. Each keeps the run since which it is refused for
    its kind of reason (its reason without the row's values): a reject whose kind is this run's is new."""

    @abstractmethod
    def forget_rejects(self, export: str, keys: Iterable[str]) -> None:
        """Drop rejects of rows that are no longer in the export, or were acknowledged as they are."""

    @abstractmethod
    def rejected_keys(self, export: str) -> list[str]: ...

    @abstractmethod
    def refusals(self, export: str) -> pa.Table:
        """(key, origin, row_hash, fingerprint, since_run) of every reject, for the bulk plan: ``origin``
        is "mapping" (segship's mapping rules refused the row of ``row_hash``, the mapping's
        fingerprint then ``fingerprint``) or "destination"."""

    @abstractmethod
    def new_rejects(self, export: str, run_id: int) -> int:
        """How many rejects run ``run_id`` recorded for the first time or for a new kind of reason."""

    @abstractmethod
    def rejects(self, export: str, limit: int | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        """The rejects, latest first; ``reason``: only those whose reason holds that text (any case)."""

    @abstractmethod
    def count_rejects(self, export: str, reason: str | None = None) -> int: ...

    @abstractmethod
    def rejects_by_kind(self, export: str, examples: int = 3) -> list[dict[str, Any]]:
        """Per kind of reason, most first: its count, origin, the earliest run since which, example keys."""


class DroppedFieldStore(ABC):
    """Fields left out of acknowledged members' records for their invalid values (recorded by the
    commits), kept until a record maps the column again or the member leaves."""

    @abstractmethod
    def dropped_fields_by_kind(self, export: str, examples: int = 3) -> list[dict[str, Any]]:
        """Per column and kind of reason, most first: how many members, example keys."""


class RunStore(ABC):
    """Runs: one at a time per export, and their history."""

    @abstractmethod
    def export_lock(self, export: str) -> AbstractContextManager[None]:
        """Hold the export's run lock for a with-block, or raise StateError at once if another run holds it."""

    @abstractmethod
    def start_run(self, export: str, dry_run: bool) -> int:
        """Record a run; a run still 'running' here was killed, since we hold the export's lock."""

    @abstractmethod
    def finish_run(self, run_id: int, outcome: str, report: dict[str, Any]) -> None: ...

    @abstractmethod
    def runs(self, export: str | None = None, limit: int = 20) -> list[dict[str, Any]]: ...

    @abstractmethod
    def last_success(self, export: str, before: int | None = None) -> dict[str, Any] | None:
        """The export's latest run that delivered (``succeeded``, or ``rejects``: it finished, some rows
        refused), dry runs aside; the latest before run ``before`` when given. As ``runs`` gives a run."""

    @abstractmethod
    def count_runs(self, export: str | None = None) -> int: ...


class AlertStore(ABC):
    """Alerts: the conditions of each export that are open (an alert was sent when each started), so
    that the next is sent only when one clears. Opening and resolving are each one statement that
    tells whether it changed anything, so two processes never both send the same alert."""

    @abstractmethod
    def open_alerts(self, export: str) -> dict[str, OpenAlert]:
        """The export's open alerts by event."""

    @abstractmethod
    def open_alert(self, export: str, alert: OpenAlert) -> bool:
        """Record ``alert`` as open; False (nothing written) when its event is open for the export already."""

    @abstractmethod
    def resolve_alert(self, export: str, event: str) -> OpenAlert | None:
        """Forget the export's open alert of ``event`` and return it; None when none was open."""


class SyncLogStore(ABC):
    """The member-level sync log: what each run did to each member it changed (``SYNC_LOG_ACTIONS``),
    written by the commits (``LoggedChanges``, in their transaction), kept for the config's
    ``sync_log.retention_days`` and pruned by runs. An unchanged member writes nothing. Read by
    ``segship log`` and, with SQL, through the view ``segship_sync_log`` (docs/sync-log.md)."""

    @abstractmethod
    def log_changes(self, export: str, log: LoggedChanges, target: int = 1) -> None:
        """Write changes to the sync log in a transaction of their own (those a commit doesn't carry)."""

    @abstractmethod
    def prune_sync_log(self, export: str, retention_days: int, now: datetime | None = None) -> int:
        """Delete the export's log of the runs that started more than ``retention_days`` before ``now``
        (default: the present; 0 days, a log turned off: all of it); returns how many rows went."""

    @abstractmethod
    def sync_log(self, export: str, *, key: str | None = None, identity: str | None = None,
                 run_id: int | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """The export's logged changes, newest first, at most ``limit``, and how many there are in all: a
        member's (``key``), an identity's (``identity``: rows that name it, or whose key it is when the
        identity is the key), a run's (``run_id``), or all. Each as a dict of the view's columns
        (``id, run_id, at, key, identity, action, target, fields, reason``; action by name)."""


class AdministrationStore(ABC):
    """What ``segship state show`` and ``state forget`` ask."""

    @abstractmethod
    def summary(self, export: str | None = None) -> list[dict[str, Any]]:
        """Per export: members, rejects, stale identities and the last run."""

    @abstractmethod
    def forget(self, export: str) -> bool:
        """Drop everything kept about an export (members, targets, rejects, runs); False if there was nothing."""


class TransferStore(ABC):
    """``segship state copy``: every table out of one store and into another."""

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Rows per table, to verify a copy."""

    @abstractmethod
    def read_table(self, table: str) -> Iterator[pa.RecordBatch]:
        """A table's rows in batches, for ``state copy``."""

    @abstractmethod
    def replace_all(self, tables: dict[str, Iterable[pa.RecordBatch]]) -> None:
        """Make this state hold exactly ``tables`` (a copy), in one transaction."""


class StateStore(MemberStore, TargetStore, InFlightStore, DestinationStore, RejectStore, DroppedFieldStore,
                 RunStore, AlertStore, SyncLogStore, AdministrationStore, TransferStore):
    """What the engine and the CLI need from state, whatever the backend: each concern's contract above,
    and the store itself (where it is, its schema, closing it)."""

    #: "sqlite" or "postgresql"
    backend: str

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def describe(self) -> str:
        """Where state lives, for people: a file path, or a database without its credentials."""

    @abstractmethod
    def schema_version(self) -> int: ...


def open_state(config: Config) -> StateStore:
    """The config's state: the PostgreSQL URL (``state.url``, or ``$SEGSHIP_STATE_URL`` for a config that
    sets no state: ``Config.state_url_reference``; resolved here, a secret) or the SQLite file."""
    reference = config.state_url_reference()
    if reference is not None:
        from segship.secrets import resolve

        if "state" in config.loaded.data:
            where, folder = config.where("state", "url"), config.loaded.file_of(("state",)).resolve().parent
        else:
            where, folder = f"{reference} (the config sets no state)", config.state_path.parent
        url = resolve(reference, folder, where=where, secret=True)
        if not url.startswith(POSTGRES_SCHEMES):  # never echoed: it may hold a password
            raise StateError(f"{where}: the state URL (from {reference}) must be a postgresql:// URL")
        return open_state_at(url)
    return open_state_at(config.state_path)


def open_state_at(target: str | Path, *, where: str = "the state URL") -> StateStore:
    """State at a ``postgresql://`` URL, or else a SQLite file path (``where`` names a URL's origin in errors)."""
    if isinstance(target, str) and target.startswith(POSTGRES_SCHEMES):
        from segship.engine.state.postgres import PostgresState

        return PostgresState(target)
    if isinstance(target, str) and "://" in target:
        raise StateError(f"{where} must be a postgresql:// URL or a SQLite file path")
    from segship.engine.state.sqlite import SqliteState

    return SqliteState(Path(target))
