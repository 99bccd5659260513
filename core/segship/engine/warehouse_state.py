"""segship's state for an export whose members a warehouse planner keeps, and moving them there and back.

:class:`WarehouseState` is the state store the engine sees for such an export: every concern is
segship's own state store's (locks, runs, targets, stale identities, rejects, the in-flight
journal, alerts), but the members, which are :class:`~segship.engine.warehouse_members.WarehouseMembers`
in the warehouse's planner schema. Two databases, so each write that touches both is ordered to
be safe when a run is killed between them, and the warehouse's half is idempotent:

- a group of answered batches (``commit_upserts``): first segship's state records what the
  answer leaves behind (identities replaced or left in a moved member's old target, refused
  rows), keeping the group in flight; then the warehouse upserts the acknowledged members (one
  transaction); then segship's state clears the group's in-flight record and its keys' rejects.
  Killed after the first step, the group is still in flight: the next run folds it in
  (``settle_in_flight``) and sends its rows again; killed after the second, folding it finds its
  members as sent and changes nothing. Identities to remove are never lost: they are recorded
  before the members that replace them.
- folding in batches left in flight (``settle_in_flight``): unknown members are added in the
  warehouse (if absent), then segship's state records the stale identities and clears the records.
- changed settings: the warehouse's members are marked for a re-send before segship's state
  records the settings.
- removals: the warehouse deletes the leavers, then segship's state settles their rejects.

Where an export's members are is segship's state's to say (``members_location``): the planner
configured on the export's source is where they should be, and :func:`planned_state` moves them
on the first run that finds them elsewhere. To the warehouse: copied (replacing any there), then
state records the location and drops its own copy in one transaction; back: state takes them and
forgets the location in one transaction, then the warehouse's copy is deleted. Either way a run
killed in between finds the location unchanged and copies again. A plan (or a dry run) moves
nothing: it plans against segship's state's members staged in the warehouse session, or reads the
warehouse's members from the local planner. The hashes are the same on both sides, so a switch
re-sends nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from segship.destination import Member
from segship.engine.hashing import HASH_VERSION
from segship.engine.planners import dialect_for
from segship.engine.snapshot import WAREHOUSE_DIGEST, PlanError, Snapshot
from segship.engine.state import DroppedFields, LoggedChanges, MembersDigest, MembersLocation, Rejected, StateStore
from segship.engine.state.sql.members import acknowledged_batch
from segship.engine.warehouse_members import MEMBER_SCHEMA, WarehouseMembers

if TYPE_CHECKING:
    from segship.config import Config, ExportConfig
    from segship.plugins import Plugins

log = structlog.get_logger("segship.engine")

NOTHING = acknowledged_batch([])


class WarehouseState:
    """segship's state store with one export's members in a warehouse (see the module's docstring);
    anything else is the store's own. ``plans``: the warehouse plans the export (else the local
    planner reads the members from there: the planner was just switched off, and this is a plan)."""

    def __init__(self, state: StateStore, members: WarehouseMembers, *, plans: bool, writes: bool = False) -> None:
        self.state, self.members, self.plans, self.writes = state, members, plans, writes
        # what the rows being sent had acknowledged before: (column hashes, identity, target) by key,
        # streamed out with them (the planning session streams: it can't be asked meanwhile)
        self._previous: dict[str, tuple[bytes | None, str, int]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.state, name)

    def remember_previous(self, rows: pa.RecordBatch, key: str, hashes: str, identity: str, target: str) -> None:
        """Keep what the rows' members had acknowledged (those that are members), until committed or looked up."""
        known = rows.filter(pc.is_valid(rows.column(identity)))
        self._previous.update(zip(known.column(key).to_pylist(), zip(
            known.column(hashes).to_pylist(), known.column(identity).to_pylist(), known.column(target).to_pylist(),
            strict=True), strict=True))

    # -- members ---------------------------------------------------------------------------------------

    def hash_version(self, export: str) -> int:
        return HASH_VERSION  # the warehouse's hashes are made by this version's SQL

    def members_digest(self, export: str) -> MembersDigest | None:
        """The warehouse's digest of the members (of its own kind: :meth:`WarehouseMembers.members_digest`)."""
        return self.members.members_digest() if self.plans else None

    def record_members_digest(self, export: str, digest: MembersDigest) -> None:
        """Nothing: the engine's digest sums the local planner's mixes; the warehouse sums its own (:meth:`close`)."""

    def has_members(self, export: str) -> bool:
        return self.members.has_members()

    def acknowledged(self, export: str) -> pa.RecordBatchReader:
        return self.members.acknowledged()

    def reconcile_settings(self, export: str, fingerprint: str, columns: Sequence[str],
                           earlier_fingerprint: str | None = None) -> bool:
        if self.state.settings_changed(export, fingerprint, columns, earlier_fingerprint):
            self.members.forget_hashes()  # first: a run killed before state records the settings re-sends all the same
        return self.state.reconcile_settings(export, fingerprint, columns, earlier_fingerprint)

    def details(self, export: str, keys: Sequence[str]) -> dict[str, tuple[bytes | None, str]]:
        found = {key: self._previous.pop(key)[:2] for key in keys if key in self._previous}
        missing = [key for key in keys if key not in found]
        if missing:  # not streamed (``plan --verbose``): asked of the warehouse
            found.update((key, (hashes, identity)) for key, (hashes, identity, _) in self.members.by_keys(missing).items())
        return found

    def members_by_target(self, export: str, keys: Sequence[str]) -> dict[int, list[Member]]:
        found: dict[int, list[Member]] = {}
        for key, (_, identity, target) in sorted(self.members.by_keys(list(keys)).items()):
            found.setdefault(target, []).append(Member(key, identity))
        return found

    def identities_held(self, export: str, identities: Iterable[str], target: int,
                        excluding: Iterable[str] = ()) -> set[str]:
        return self.members.identities_held(list(dict.fromkeys(identities)), target, list(dict.fromkeys(excluding)))

    def commit_upserts(self, export: str, acknowledged: Any, stale: Iterable[tuple[str, str]],
                       rejected: Iterable[Rejected | tuple[str, str]], *, target: int = 1, moving: bool = False,
                       in_flight: int | None = None, dropped: DroppedFields | None = None,
                       write_members: bool = True, log: LoggedChanges | None = None) -> None:
        acknowledged = acknowledged_batch(acknowledged)
        stale, rejected = list(stale), list(rejected)
        left: dict[int, list[tuple[str, str]]] = {}  # a moved member's identity, in its old target
        for key in acknowledged.column("key").to_pylist():
            previous = self._previous.pop(key, None)
            if moving and previous is not None and previous[2] != target:
                left.setdefault(previous[2], []).append((key, previous[1]))
        if stale or rejected:
            self.state.commit_upserts(export, NOTHING, stale, rejected, target=target)
        for old, pairs in left.items():
            self.state.commit_upserts(export, NOTHING, pairs, [], target=old)
        # a row sent carries its digest (WAREHOUSE_DIGEST) and is acknowledged with the column hashes it was sent
        # with: its member keeps that digest (rows acknowledged otherwise, e.g. folded in from the in-flight
        # journal, have none: the next run hashes them)
        digests = acknowledged.column(WAREHOUSE_DIGEST) if WAREHOUSE_DIGEST in acknowledged.schema.names else None
        self.members.acknowledge(acknowledged, target, digests)
        # the fields the records left out are state's, as their rejects are: settled with the group
        self.state.commit_upserts(export, acknowledged, [], [], target=target, in_flight=in_flight, dropped=dropped,
                                  write_members=False, log=log)

    def commit_removals(self, export: str, removed: Iterable[Member], rejected: Iterable[tuple[str, str]],
                        stale: bool, target: int = 1, log: LoggedChanges | None = None) -> None:
        removed = list(removed)
        if not stale and removed:
            self.members.delete([member.key for member in removed])
        self.state.commit_removals(export, removed, rejected, stale, target, log)

    def add_unknown_members(self, export: str, members: Sequence[tuple[str, str]], target: int) -> int:
        known = self.members.by_keys([key for key, _ in members])
        self.members.add_unknown([(key, identity, target) for key, identity in members if key not in known])
        return sum(1 for key, _ in members if key not in known)

    def forget_target(self, export: str, target: int) -> int:
        self.members.delete(target=target)
        return self.state.forget_target(export, target)

    def settle_in_flight(self, export: str) -> int:
        records = self.state.in_flight_records(export)
        if not records:
            return 0
        sent: dict[str, tuple[str, int]] = {}  # key -> (identity, target), the last batch's
        for _, target, keys, identities in records:
            sent.update((key, (identity, target)) for key, identity in zip(keys, identities, strict=True))
        known = {key: (identity, target) for key, (_, identity, target) in self.members.by_keys(list(sent)).items()}
        self.members.add_unknown([(key, identity, target) for key, (identity, target) in sent.items()
                                  if key not in known])
        left: dict[int, list[tuple[str, str]]] = {}
        for key, (identity, target) in sent.items():
            if key in known and known[key] != (identity, target):
                left.setdefault(target, []).append((key, identity))
        for flight, target, _, _ in records:
            self.state.commit_upserts(export, NOTHING, left.pop(target, []), [], target=target, in_flight=flight)
        return len(sent)

    def close(self) -> None:
        """Close the warehouse's sessions; a run first records the digests of unchanged members whose
        digest was not their row's, then the members' digest (a pass over them, when this run wrote to them)."""
        try:
            if self.writes:
                self.members.record_digests()
                self.members.record_members_digest()
        except PlanError as exc:  # the run's own outcome matters more: the next run hashes those rows again
            log.warning("warehouse.digests_not_recorded", error=str(exc))
        finally:
            self.members.close()


# -- which planner, and moving members ------------------------------------------------------------------

def planner_of(config: Config, export: ExportConfig) -> MembersLocation | None:
    """The planner schema of the export's source, when it has one (every segment must come from it)."""
    sources = sorted({config.segments[name].source for name in export.segments})
    planned = [name for name in sources if isinstance(config.sources[name].options.get("planner"), dict)]
    if not planned:
        return None
    if len(sources) > 1:
        raise PlanError(f"{config.where('exports', export.name)}: export {export.name!r} has segments from sources "
                        f"{', '.join(map(repr, sources))}, and {planned[0]!r} has a warehouse planner: a planner plans "
                        "an export whose segments all come from its source")
    return MembersLocation(planned[0], str(config.sources[planned[0]].options["planner"]["schema"]))


def open_members(config: Config, plugins: Plugins, location: MembersLocation, export: str) -> WarehouseMembers:
    """The export's members in the planner schema ``location`` names (opened when first asked)."""
    if location.source not in config.sources:
        raise PlanError(f"export {export!r}: its members are kept in the planner schema {location.schema!r} of "
                        f"source {location.source!r}, which the config no longer has; restore the source (its "
                        "members are moved back into state on the next run)")
    source_config = config.sources[location.source]
    dialect, cls = dialect_for(source_config.type), plugins.source(source_config.type)
    if dialect is None or cls is None:
        raise PlanError(f"{config.where('sources', location.source)}: a warehouse planner needs a source of a type "
                        f"whose SQL it speaks (postgres), not {source_config.type!r}")
    return WarehouseMembers(dialect, cls(source_config.context()), location.schema, export)


def planned_state(config: Config, plugins: Plugins, export: str, state: StateStore, *,
                  write: bool) -> StateStore | WarehouseState:
    """The state store the engine uses for ``export``: segship's own, or a :class:`WarehouseState`;
    with ``write``, the export's members are first moved to where its config plans them."""
    planner = planner_of(config, config.exports[export])
    location = state.members_location(export)
    if planner is None:
        if location is None:
            return state
        members = open_members(config, plugins, location, export)
        if not write:
            return WarehouseState(state, members, plans=False)
        try:  # switched back to the local planner: the members come home
            state.take_members_back(export, members.every_member())
            members.delete()
        finally:
            members.close()
        return state
    members = open_members(config, plugins, planner, export)
    try:
        if write:
            members.prepare()
        if location != planner:
            if location is not None:  # another planner schema had them
                earlier = open_members(config, plugins, location, export)
                try:
                    _move(members, earlier.every_member(), state, export, planner, write=write)
                    if write:
                        earlier.delete()
                finally:
                    earlier.close()
            else:
                _move(members, local_members(state, export), state, export, planner, write=write)
    except BaseException:
        members.close()
        raise
    return WarehouseState(state, members, plans=True, writes=write)


def _move(members: WarehouseMembers, batches: Iterable[pa.RecordBatch], state: StateStore, export: str,
          location: MembersLocation, *, write: bool) -> None:
    if write:
        members.replace(batches)
        state.move_members_out(export, location)
    else:
        members.stage(batches)


def local_members(state: StateStore, export: str) -> Iterator[pa.RecordBatch]:
    """The export's members in segship's state, as ``MEMBER_SCHEMA`` batches."""
    export_ids = [row["id"] for batch in state.read_table("exports") for row in batch.to_pylist()
                  if row["name"] == export]
    if not export_ids:
        return
    for batch in state.read_table("members"):
        rows = batch.filter(pc.equal(batch.column("export_id"), export_ids[0]))
        if len(rows):
            key = rows.column("key")
            yield pa.RecordBatch.from_arrays(
                [key, rows.column("row_hash"), rows.column("column_hashes").cast(pa.binary()),
                 pc.coalesce(rows.column("identity"), key), rows.column("target")], schema=MEMBER_SCHEMA)


def snapshot_for(config: Config, export: ExportConfig, plugins: Plugins, columns: Sequence[str],
                 state: StateStore | WarehouseState) -> Snapshot:
    """The plan's snapshot: in the warehouse when its planner plans the export, else the local one."""
    if isinstance(state, WarehouseState) and state.plans:
        from segship.engine.warehouse_snapshot import WarehouseSnapshot

        return WarehouseSnapshot(config, export, plugins, columns, state)  # type: ignore[return-value]
    return Snapshot(config, export, plugins, columns)
