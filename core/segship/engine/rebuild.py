"""``segship state rebuild``: an export's membership in state, rebuilt from what its destination lists.

Lost state (a deleted file, a runner's empty disk) leaves the export's target holding members
segship no longer knows: a run would send every member as new and never remove those who left
(a run stops first: ``engine/safeguards.py``). A destination that lists its target's members
(``Destination.list_members``) and says how it compares identities (``identity_rule``) lets
segship rebuild the membership, writing state only, in one transaction:

- a listed identity that a segment row has (compared as the destination compares them; the
  lowest key where several rows do) becomes that key's member, of unknown row hash: the next
  run sends its row again whole, and the profile ends as the row says;
- a listed identity no segment row has becomes a member under a key of its own (``listed:``
  and a digest of the identity, so no email shows in a plan or a pull-request comment), which
  the next run removes, within the removal safeguard;
- what state knows stays: an identity a member holds is left as it is, and one whose row's key
  is a member already (with another identity) is removed by the next run, unless a staying
  member holds it then (run step 9).

Nothing is sent: ``segship plan EXPORT`` shows what the next run does with what was found.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from segship.config import Config
from segship.config.validate import resolve_connection_settings
from segship.destination import ConnectionContext, Destination
from segship.engine.instances import known_instance, observe
from segship.engine.snapshot import Snapshot
from segship.engine.state import StateStore
from segship.engine.warehouse_state import WarehouseState, planned_state
from segship.errors import SegshipError
from segship.plugins import Plugins

#: The keys of members found only at the destination: this and the start of the identity's SHA-256.
LISTED_KEY_PREFIX = "listed:"


class RebuildError(SegshipError):
    """The export's destination can't list its members (or say how it compares identities)."""

    outcome = "invalid"


@dataclass
class Rebuilt:
    """What a rebuild found: every identity listed was known to state, matched a row, or none."""

    listed: int = 0    # identities the destination listed
    known: int = 0     # held by a member state knew
    members: int = 0   # a segment row has it: its key's member now (row re-sent by the next run)
    leavers: int = 0   # no segment row (or its key is a member already): removed by the next run


def listed_key(identity: str) -> str:
    """The key of a member only the destination knows: stable, so a second rebuild finds it again."""
    return LISTED_KEY_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]


async def rebuild_membership(config: Config, export_name: str, plugins: Plugins, state: StateStore) -> Rebuilt:
    """Rebuild the export's membership in state from its destination (the export's run lock held)."""
    export = config.exports[export_name]
    connection = config.connections[export.connection]
    cls = plugins.destination(connection.type)
    if not cls.lists_members() or cls.identity_rule(export.mapping) is None:
        raise RebuildError(f"{config.where('exports', export_name, 'connection')}: export {export_name!r} goes to "
                           f"{cls.name}, which can't list the members of its target: its state can't be rebuilt "
                           "from the destination")
    with state.export_lock(export_name):
        # members a warehouse planner keeps are rebuilt there (the segments are read as they are locally)
        state = planned_state(config, plugins, export_name, state, write=True)
        try:
            destination = cls(ConnectionContext(connection.name, resolve_connection_settings(config, connection.name,
                                                                                             plugins)),
                              export.context())
            snapshot = Snapshot(config, export, plugins, cls.source_columns(export.mapping))
            try:
                await destination.check_connection()
                instance = await _instance(state, export_name, destination)
                matched = snapshot.keys_of_identities(
                    [identity async for page in destination.list_members() for identity in page])
            finally:
                await destination.finish()
                snapshot.close()
            target = state.target_id(export_name, cls.target(export.settings), record=True, instance=instance,
                                     connection=connection.name)
            return _record(state, export_name, target, matched)
        finally:
            if isinstance(state, WarehouseState):
                state.close()


async def _instance(state: StateStore, export: str, destination: Destination) -> dict[str, Any]:
    """The destination instance listed, recorded as a run records it (``engine/run.py``): the members
    found are in the export's target there."""
    instance = known_instance(destination, state.recorded_instance(export))
    if instance is None:
        instance, credentials = await observe(destination)
        state.record_instance(export, instance, credentials)
    return instance


def _record(state: StateStore, export: str, target: int, matched: list[tuple[str, str | None]]) -> Rebuilt:
    """Write what the listing found into state: members of unknown row hash, in the export's target."""
    rebuilt = Rebuilt(listed=len(matched))
    held = state.identities_held(export, [identity for identity, _ in matched], target)
    keys = [key for identity, key in matched if key is not None and identity not in held]
    in_state = set(state.details(export, keys))
    members: list[tuple[str, str]] = []
    taken: set[str] = set()
    for identity, key in matched:
        if identity in held:
            rebuilt.known += 1
        elif key is not None and key not in in_state and key not in taken:
            taken.add(key)
            members.append((key, identity))
        else:
            members.append((listed_key(identity), identity))
            rebuilt.leavers += 1
    rebuilt.members = len(members) - rebuilt.leavers
    state.add_unknown_members(export, members, target)
    return rebuilt
