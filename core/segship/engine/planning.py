"""An export's plan against state: settings reconciled, hashes of an older segship converted, the diff.

Shared by ``segship plan`` and a run (the same answer for both); only a real run writes state.
"""

from __future__ import annotations

from collections.abc import Sequence

from segship.engine.hashing import HASH_VERSION
from segship.engine.report import ExportPlan
from segship.engine.snapshot import Snapshot
from segship.engine.state import StateStore


def plan_against_state(snapshot: Snapshot, state: StateStore, export: str, *, fingerprint: str,
                       columns: Sequence[str], full_resync: bool, write: bool) -> ExportPlan:
    """Build the snapshot and diff it against what the destination acknowledged.

    With ``write``, changed settings mark every member for a re-send, and hashes state made
    with an older hash version are converted (one transaction, before anything is sent);
    without it, the plan tells what a run would do and writes nothing.
    """
    if write:
        settings_changed = state.reconcile_settings(export, fingerprint, columns)
    else:
        settings_changed = state.settings_changed(export, fingerprint, columns)
    # changed settings re-send everyone: there is nothing to convert
    legacy = not settings_changed and state.hash_version(export) < HASH_VERSION
    snapshot.build(legacy_hashes=legacy)
    converted = 0
    if legacy:
        table = snapshot.convert_legacy_hashes(state.stored_hashes(export))
        if write:
            state.convert_hashes(export, table, HASH_VERSION)
        converted = table.num_rows
    plan = snapshot.plan(state.acknowledged(export), full_resync=full_resync or settings_changed)
    plan.full_resync, plan.settings_changed, plan.hashes_converted = full_resync, settings_changed, converted
    plan.stale_identities = state.count_stale_identities(export)
    return plan
