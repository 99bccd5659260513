"""Where removals go when an export has moved: a destination per target its members are in.

A destination declares which export settings name its target (``target_settings``: a
Brevo list, a Braze segment and attribute) and what tells its instances apart (see
``engine/instances.py``). State records each target an export has had, the instance it is in
and, per member, the target it was acknowledged in. Members in an earlier target are sent to
the current one as joins (state then keeps, in the same transaction, their identity to
remove from the earlier target); leavers and those identities are removed through an
instance of the destination built with the earlier target's settings: through the run's own
connection when the target is in the run's instance, else through the connection recorded
with it, once that connection proves to reach that instance still (its settings name it, and
a destination that observes its account says it is that account). An instance no connection
reaches (the connection left the config, now points elsewhere, has an unset variable, or its
destination doesn't answer) is *unreachable*: what is left there stays to remove, and each run
reports it (``left_behind``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from segship.config import Config, ExportConfig
from segship.config.validate import resolve_connection_settings
from segship.destination import ConnectionContext, Destination, ExportContext
from segship.engine.instances import OBSERVED, configured_instance, readable_instance, without_observed
from segship.engine.report import describe_instance
from segship.engine.state import TargetInstance
from segship.errors import SegshipError
from segship.plugins import Plugins

log = structlog.get_logger("segship.engine")


class InstanceUnreachable(SegshipError):
    """An earlier target's instance can't be reached: what is left there stays to remove."""


class EarlierInstances:
    """The instance a plan or run is against (``instance``, through ``connection``; ``known``, or
    assumed as the last run found it: see ``engine/instances.py``), and whether an earlier target's
    is another one and can be reached."""

    def __init__(self, config: Config, plugins: Plugins, connection: str, instance: Mapping[str, Any], *,
                 known: bool) -> None:
        self.config, self.plugins = config, plugins
        self.connection, self.instance, self.known = connection, dict(instance), known

    def elsewhere(self, place: TargetInstance | None) -> bool:
        """Whether a target is in another instance (one recorded before instances is in this one)."""
        return place is not None and place.instance is not None and place.instance != self.instance

    def source(self, settings: Mapping[str, Any], place: TargetInstance | None,
               order: Sequence[str]) -> dict[str, Any]:
        """An earlier target as plans and reports name it: ``from`` (its settings, those named in
        ``order`` first: the export's target settings), and when it is in another instance
        ``from_instance`` and ``from_connection``."""
        if not self.elsewhere(place):
            return {"from": {setting: settings.get(setting) for setting in order}}
        ordered = {setting: settings[setting] for setting in order if setting in settings}
        return {"from": {**ordered, **settings}, "from_instance": place.instance, "from_connection": place.connection}

    def problem(self, place: TargetInstance) -> str | None:
        """Why the connection recorded with an instance elsewhere can't reach it, as far as the config
        tells without a secret (None: it may; a run checks the rest)."""
        name = place.connection
        connection = self.config.connections.get(name) if name is not None else None
        if connection is None:
            return f"connection {name!r} is no longer in the config"
        if name == self.connection:
            return f"connection {name!r} now reaches another instance: {describe_instance(self.instance, name)}"
        cls = self.plugins.destination(connection.type)
        if cls is None:
            return f"connection {name!r} is of type {connection.type!r}, which no installed plugin provides"
        now = readable_instance(cls, connection)
        if now is not None and now != without_observed(place.instance or {}):
            return f"connection {name!r} now reaches another instance: {describe_instance(now, name)}"
        return None


class TargetDestinations:
    """The run's destination for its current target, and one per earlier target, made when needed."""

    def __init__(self, current: Destination, current_id: int, export: ExportConfig,
                 earlier: Mapping[int, Mapping[str, Any]], places: Mapping[int, TargetInstance],
                 instances: EarlierInstances) -> None:
        self.current, self.current_id = current, current_id
        self.export = export
        self.earlier, self.places = earlier, places
        self.instances = instances
        self._made: dict[int, Destination] = {}
        self._unreachable: dict[int, InstanceUnreachable] = {}
        self._turned_away: list[Destination] = []  # built to ask an instance, which was another: closed

    def elsewhere(self, target_id: int) -> bool:
        """Whether the target is in another instance than the run's."""
        return self.instances.elsewhere(self.places.get(target_id))

    def source(self, target_id: int) -> dict[str, Any]:
        """An earlier target as reports name it (see ``EarlierInstances.source``)."""
        return self.instances.source(self.earlier.get(target_id, {}), self.places.get(target_id),
                                     type(self.current).target_settings)

    async def get(self, target_id: int) -> Destination:
        """The destination serving ``target_id``; InstanceUnreachable when it is in an instance no
        connection reaches now."""
        if target_id == self.current_id:
            return self.current
        if target_id in self._unreachable:
            raise self._unreachable[target_id]
        if target_id not in self._made:
            settings = {**self.export.settings, **self.earlier.get(target_id, {})}
            if not self.elsewhere(target_id):
                self._made[target_id] = type(self.current)(self.current.connection, self.export.context(settings))
            else:
                try:
                    self._made[target_id] = await self._reach(self.places[target_id], target_id)
                except InstanceUnreachable as exc:
                    self._unreachable[target_id] = exc
                    raise
        return self._made[target_id]

    async def _reach(self, place: TargetInstance, target_id: int) -> Destination:
        """A destination for a target in another instance, through the connection recorded with it."""
        problem = self.instances.problem(place)
        if problem is not None:
            raise InstanceUnreachable(problem)
        name = str(place.connection)
        recorded = place.instance or {}
        connection = self.instances.config.connections[name]
        cls = self.instances.plugins.destination(connection.type)
        try:
            settings = resolve_connection_settings(self.instances.config, name, self.instances.plugins)
        except SegshipError as exc:  # an unset variable, a secret file gone: says which, never a value
            raise InstanceUnreachable(str(exc)) from None
        configured = configured_instance(cls, name, settings)
        if configured != without_observed(recorded):
            raise InstanceUnreachable(f"connection {name!r} now reaches another instance: "
                                      f"{describe_instance(configured, name)}")
        target = self.earlier.get(target_id, {})
        # another destination type: its settings besides the target's, and its mapping, are gone (a
        # removal needs neither)
        context = self.export.context({**self.export.settings, **target}) if cls is type(self.current) else \
            ExportContext(self.export.name, dict(target), {}, self.export.segments)
        destination = cls(ConnectionContext(name, settings), context)
        if cls.observes_instance:
            try:
                observed = await destination.observe_instance()
            except SegshipError as exc:
                await self._turn_away(destination)
                raise InstanceUnreachable(f"connection {name!r}: {exc}") from None
            if observed != recorded.get(OBSERVED):
                await self._turn_away(destination)
                raise InstanceUnreachable(f"connection {name!r} now reaches another instance: "
                                          f"{describe_instance({**configured, OBSERVED: observed}, name)}")
        return destination

    def http_stats(self) -> dict[str, int]:
        """Requests of every destination, the earlier targets' included."""
        total = self.current.http_stats.as_dict()
        for destination in [*self._made.values(), *self._turned_away]:
            for name, value in destination.http_stats.as_dict().items():
                total[name] = total.get(name, 0) + value
        return total

    async def finish(self) -> None:
        """Close the earlier targets' destinations (the run closes its own)."""
        for destination in self._made.values():
            await self._close(destination)

    async def _turn_away(self, destination: Destination) -> None:
        self._turned_away.append(destination)
        await self._close(destination)

    @staticmethod
    async def _close(destination: Destination) -> None:
        try:
            await destination.finish()
        except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
            log.warning("destination.finish_failed", error=str(exc))
