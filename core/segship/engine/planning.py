"""An export's plan against state: settings reconciled, hashes of an older segship converted, the diff.

Shared by ``segship plan`` and a run (the same answer for both); only a real run writes state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from segship import __version__
from segship.config import Config, ExportConfig
from segship.destination import Destination
from segship.engine.hash_conversion import convert_hashes
from segship.engine.hashing import HASH_VERSION
from segship.engine.report import ExportPlan
from segship.engine.instances import assumed_instance
from segship.engine.snapshot import EXAMPLES, Snapshot, changed_columns, export_fingerprint
from segship.engine.state import StateStore
from segship.engine.targets import EarlierInstances
from segship.engine.warehouse_state import WarehouseState, planned_state, snapshot_for
from segship.plugins import Plugins


def mapping_fingerprint(plugins: Plugins, cls: type[Destination], fingerprint: str) -> str:
    """What a row segship's mapping refused depends on besides the row: the export's settings and
    mapping (``fingerprint``), and the code of the rules (segship's and the destination plugin's
    versions: an upgrade may take what an older one refused)."""
    material = f"{fingerprint} segship {__version__} {cls.name} {plugins.destination_version(cls.name)}"
    return hashlib.sha256(material.encode()).hexdigest()


def plan_export(config: Config, name: str, plugins: Plugins, state: StateStore, *,
                changed_fields: bool = False) -> ExportPlan:
    """What a run of export ``name`` would do now (``segship plan``): resolves no secret, writes nothing.
    With ``changed_fields``, the plan names the changed columns of its example updates."""
    export = config.exports[name]
    connection = config.connections[export.connection]
    cls = plugins.destination(connection.type)
    columns = cls.source_columns(export.mapping)
    # resolves no secret: the account is taken to be the one the last run found
    instances = EarlierInstances(config, plugins, connection.name,
                                 assumed_instance(cls, connection, state.recorded_instance(name)), known=False)
    # an export whose source plans in the warehouse: its members are there (engine/warehouse_state.py)
    state = planned_state(config, plugins, name, state, write=False)
    snapshot = snapshot_for(config, export, plugins, columns, state)
    try:
        plan = plan_against_state(snapshot, state, cls, export, columns, instances, full_resync=False, write=False)
        if changed_fields and plan.examples.get("update"):
            keys = plan.examples["update"]
            before = state.details(name, keys)
            for reader in snapshot.rows_to_send(keys=keys):
                for row in reader.read_all().to_pylist():
                    key = row["__segship_key"]
                    changed = changed_columns(columns, before[key][0], row["__segship_column_hashes"])
                    plan.changed_fields[key] = sorted(changed) if changed is not None else ["(all: settings changed)"]
        return plan
    finally:
        snapshot.close()
        if isinstance(state, WarehouseState):
            state.close()


def plan_against_state(snapshot: Snapshot, state: StateStore, cls: type[Destination], export: ExportConfig,
                       columns: Sequence[str], instances: EarlierInstances, *, full_resync: bool,
                       write: bool) -> ExportPlan:
    """Build the snapshot and diff it against what the destination acknowledged (read meanwhile).

    When state has a digest of the members (``StateStore.members_digest``: recorded by a
    plan that found nothing to do or by a run that completed, dropped by any write since)
    and the segments are read in the engine's DuckDB (``Snapshot.reads_state_after``), state is
    read only if the members don't sum to it, after them. A single streamed segment's digest
    is by bucket (``engine/buckets.py``): only the buckets that differ from it are hashed, and
    state's rows of those buckets read (after the segment) and diffed. With ``write``, batches
    a killed run sent and never saw answered are folded into the members first
    (``StateStore.settle_in_flight``), changed settings mark every member for a re-send, a
    new target is recorded, hashes state made with an older hash version are converted
    (each in one transaction, before anything is sent), and a plan with nothing to do
    records the digest; without it, the plan tells what a run would do and writes nothing
    (batches left in flight are not counted). A changed target is not a changed setting:
    its members move (``plan.moves``), and so does a changed destination instance
    (``instances.instance``, see ``engine/instances.py``): the target is its settings in that
    instance, recorded when the instance is known (not only assumed). Members left in an instance
    the config can't reach are ``plan.left_behind``. Keys sharing a destination identity stop the
    diff, or all but the lowest are left out (``identity_conflicts``: ``engine/snapshot.py``).
    Rows refused before are sent again, but those segship's mapping refused as they are, under
    the same mapping (:func:`mapping_fingerprint`).
    """
    name = export.name
    if write:
        state.settle_in_flight(name)  # batches a killed run sent and never saw answered
    fingerprint = export_fingerprint(cls.name, export, columns, cls.target_settings)
    # the fingerprint of segship before moves, target included: the same settings, not a change
    earlier = export_fingerprint(cls.name, export, columns) if cls.target_settings else None
    if write:
        settings_changed = state.reconcile_settings(name, fingerprint, columns, earlier)
    else:
        settings_changed = state.settings_changed(name, fingerprint, columns, earlier)
    target = cls.target(export.settings)
    # an instance only assumed (its account not asked yet) is not recorded: the run asks, then records
    target_id = state.target_id(name, target, record=write and instances.known, instance=instances.instance,
                                connection=instances.connection)
    # changed settings re-send everyone: there is nothing to convert
    convert = not settings_changed and state.hash_version(name) < HASH_VERSION
    full = full_resync or settings_changed
    has_members = state.has_members(name)
    refusals = state.refusals(name)
    # rows hashed to compare with what was acknowledged, and with the rows segship's mapping refused
    row_hashes = not full and (has_members or refusals.num_rows > 0)
    # a digest of state can spare reading it: when the members sum to it, every one is unchanged
    recorded = state.members_digest(name) if row_hashes and not convert else None
    # state is read while the segments are hashed, on another core, unless the digest may spare it and
    # the segments are read on every core anyway, or it is by bucket (only the buckets that differ are
    # read, after the segment); hashes of an older version are converted first
    overlap = not convert and (recorded is None or not snapshot.reads_state_after(recorded))
    # keys sharing an identity: a plan the digest may spare reads identities only if it doesn't (read
    # in place, they cost a pass over one column; streamed, they come with the rows)
    identities = recorded is None or overlap
    converted = 0
    with ThreadPoolExecutor(1, thread_name_prefix="segship-acknowledged") as reader:
        reading = reader.submit(snapshot.read_acknowledged, state.acknowledged(name)) if overlap else None
        snapshot.build(row_hashes=row_hashes, identities=identities, recorded=recorded, target=target_id)
        if reading is not None:
            reading.result()
        elif convert:
            converted = convert_hashes(snapshot, state, name, write=write)
    plan = snapshot.unchanged_plan(recorded, target_id) if recorded is not None else None
    if plan is None:
        if not overlap and not convert:
            snapshot.read_acknowledged(state.acknowledged(name))
        # a full re-send maps every row again, those segship's mapping refused too
        snapshot.read_rejects(refusals, None if full else mapping_fingerprint(snapshot.plugins, cls, fingerprint))
        plan = snapshot.plan(full_resync=full, target=target_id)
        if write and not plan.to_send and not plan.remove:  # state holds the members: summed up for next time
            state.record_members_digest(name, snapshot.tally.digest())
    plan.full_resync, plan.settings_changed, plan.hashes_converted = full_resync, settings_changed, converted
    plan.stale_identities = state.count_stale_identities(name)
    plan.left_out = len(snapshot.left_out)
    if snapshot.left_out:
        plan.examples["left out"] = snapshot.left_out[:EXAMPLES]
    plan.empty_state_check = not has_members and cls.counts_members()
    plan.target, plan.instance, plan.connection = target, instances.instance, instances.connection
    if cls.observes_instance and not write:  # (a run asked the destination already, and recorded the connection)
        previous = state.target_instances(name).get(target_id)
        if previous is not None and previous.connection not in (None, instances.connection):
            plan.previous_connection = previous.connection
    if plan.move or plan.remove or plan.stale_identities:
        _describe_earlier_targets(plan, snapshot, state, instances)
    return plan


def _describe_earlier_targets(plan: ExportPlan, snapshot: Snapshot, state: StateStore,
                              instances: EarlierInstances) -> None:
    """The plan's moves, from each earlier target (and its instance when it is another), and what
    would be left in instances the config can't reach."""
    name = plan.export
    earlier, places = state.targets(name), state.target_instances(name)
    moving, leaving = snapshot.counts_by_target("move"), snapshot.counts_by_target("remove")

    def source(target_id: int) -> dict[str, Any]:
        return instances.source(earlier.get(target_id, {}), places.get(target_id), list(plan.target))

    plan.moves = [{**source(target_id), "members": count} for target_id, count in moving.items()]
    for target_id, place in sorted(places.items()):
        if not instances.elsewhere(place):
            continue
        left = moving.get(target_id, 0) + leaving.get(target_id, 0) + state.count_stale_identities(name, target_id)
        problem = instances.problem(place) if left else None
        if problem is not None:
            plan.left_behind.append({**source(target_id), "members": left, "reason": problem})
