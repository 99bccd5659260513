"""Where removals go when an export has moved: a destination per target its members are in.

A destination declares which export settings name its target (``target_settings``: a
Brevo list, a Braze segment and attribute). State records each target an export has had
and, per member, the one it was acknowledged in. Members in an earlier target are sent to
the current one as joins (state then keeps, in the same transaction, their identity to
remove from the earlier target); leavers and those identities are removed through an
instance of the destination built with the earlier target's settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from segship.config import ExportConfig
from segship.destination import Destination

log = structlog.get_logger("segship.engine")


class TargetDestinations:
    """The run's destination for its current target, and one per earlier target, made when needed."""

    def __init__(self, current: Destination, current_id: int, export: ExportConfig,
                 earlier: Mapping[int, Mapping[str, Any]]) -> None:
        self.current, self.current_id = current, current_id
        self.export = export
        self.earlier = earlier
        self._made: dict[int, Destination] = {}

    def get(self, target_id: int) -> Destination:
        if target_id == self.current_id:
            return self.current
        if target_id not in self._made:
            context = self.export.context({**self.export.settings, **self.earlier.get(target_id, {})})
            self._made[target_id] = type(self.current)(self.current.connection, context)
        return self._made[target_id]

    def http_stats(self) -> dict[str, int]:
        """Requests of every destination, the earlier targets' included."""
        total = self.current.http_stats.as_dict()
        for destination in self._made.values():
            for name, value in destination.http_stats.as_dict().items():
                total[name] = total.get(name, 0) + value
        return total

    async def finish(self) -> None:
        """Close the earlier targets' destinations (the run closes its own)."""
        for destination in self._made.values():
            try:
                await destination.finish()
            except Exception as exc:  # noqa: BLE001 - the run's own outcome matters more
                log.warning("destination.finish_failed", error=str(exc))
