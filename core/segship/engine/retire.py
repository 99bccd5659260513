"""Retiring an export (``segship retire``): its members removed from the destination, then its state forgotten.

An export deleted from the config leaves its members where its runs put them (a Brevo list, a
Braze segment), and no run removes them any more: state is all that still knows them. Retiring
rebuilds the export's destination from state: what its last run built it from
(``StateStore.recorded_destination``: the connection's name, the export's settings and mapping)
and the target each member is in (``StateStore.targets``, as moves left them). The connection
itself comes from the config, under the name state recorded (its key and endpoint: state holds
no secret). Every member and every identity left to remove is then removed as a run removes
leavers (``ExportRun``'s removal path: paced, batched, committed as answered, stopped cleanly
by Ctrl-C), and the export's state is forgotten once nothing is left. A retirement stopped or
refused part-way keeps in state what is still to remove: running it again goes on.

Retiring is deliberate and removes everyone, so no removal safeguard applies; the export's
absence from the config (a reviewed change, whose plan lists the retired export) is the
confirmation, and ``--dry-run`` tells what would be removed, with no connection opened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from segship.config import Config, ExportConfig
from segship.config.model import Safeguards
from segship.destination import Destination, Member
from segship.engine.report import RunReport
from segship.engine.run import ExportRun, Progress, RunOptions
from segship.engine.state import StateStore
from segship.engine.targets import TargetDestinations
from segship.engine.warehouse_state import WarehouseState, planned_state
from segship.errors import SegshipError
from segship.log import redact_text
from segship.plugins import Plugins

log = structlog.get_logger("segship.engine")


@dataclass(frozen=True)
class RetiredExport:
    """An export state still holds members of (or identities to remove), which the config no longer has."""

    name: str
    members: int
    stale_identities: int


def retired_exports(config: Config, state: StateStore) -> list[RetiredExport]:
    """The exports gone from the config that left someone in their destination (``segship plan`` lists them)."""
    return [RetiredExport(row["export"], row["members"], row["stale_identities"]) for row in state.summary()
            if row["export"] not in config.exports and (row["members"] or row["stale_identities"])]


class RetireError(SegshipError):
    """The export can't be retired as things are (the message says what to change)."""


class RetireUsageError(RetireError):
    """Retiring this export needs a change to the config or the command line."""

    outcome = "invalid"


def retiring_export(config: Config, name: str, plugins: Plugins, state: StateStore) -> ExportConfig:
    """The export as its last run had it, rebuilt from state, through the connection of that name in the config."""
    if name in config.exports:
        raise RetireUsageError(f"export {name!r} is still in the config: delete it there first (its next run would "
                               "send every member again); `segship retire` is for an export that is gone")
    recorded = state.recorded_destination(name)
    if recorded is None:
        if not state.summary(name):
            raise RetireUsageError(f"no state for export {name!r}: nothing to retire")
        raise RetireError(f"state doesn't say which connection export {name!r} was sent through (its last run was "
                          f"made by an older segship): put the export back in the config, run `segship export "
                          f"{name}` once (an unchanged run sends nothing), delete it again, then retire it")
    connection = config.connections.get(recorded.connection)
    if connection is None:
        raise RetireUsageError(f"export {name!r} was sent through connection {recorded.connection!r}, which is no "
                               f"longer in the config: add it back (type {recorded.type}, with its key) to retire "
                               f"{name!r}")
    cls = plugins.destination(connection.type)
    if cls is None or cls.name != recorded.type:
        raise RetireUsageError(f"connection {recorded.connection!r} is of type {connection.type!r} now, but export "
                               f"{name!r} was sent through it as a {recorded.type} connection: retiring it needs the "
                               "connection its members were sent through")
    return ExportConfig(name, name, recorded.connection, (), recorded.settings, recorded.mapping, None,
                        Safeguards(max_removed_fraction=None))


class ExportRetirement(ExportRun):
    """One retirement of one export: a run that only removes, every member and identity state holds."""

    def __init__(self, config: Config, export_name: str, plugins: Plugins, state: StateStore, *, dry_run: bool,
                 progress: Progress | None = None, stop: asyncio.Event | None = None) -> None:
        export = retiring_export(config, export_name, plugins, state)
        super().__init__(replace(config, exports={**config.exports, export_name: export}), export_name, plugins,
                         state, RunOptions(dry_run=dry_run), progress, stop)

    async def run(self) -> RunReport:
        report, name = self.report, self.export.name
        started = time.monotonic()
        report.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        destination: Destination | None = None
        targets: TargetDestinations | None = None
        try:
            with self.state.export_lock(name):
                # members a warehouse planner keeps come back into state (a dry run reads them there)
                self.state = planned_state(self.config, self.plugins, name, self.state, write=not self.options.dry_run)
                if not self.options.dry_run:  # batches a killed run sent are members too
                    self.state.settle_in_flight(name)
                keys = self.state.acknowledged(name).read_all().column("key").to_pylist()
                removals = (self.state.members_by_target(name, keys), self.state.stale_identities(name))
                self._plan_removals(*removals)
                if not self.options.dry_run:
                    destination = self._destination()
                    current = self.state.target_id(name, self.cls.target(self.export.settings), record=False)
                    targets = TargetDestinations(destination, current, self.export, self.state.targets(name),
                                                 self.state.target_instances(name), self._instance(destination))
                    await self._remove_everyone(destination, targets, *removals)
                report.outcome = "rejects" if report.rejected else "failed" if report.unacknowledged else "succeeded"
                report.message = self._outcome_message()
        except BaseException as exc:  # noqa: BLE001 - every ending is reported, then re-raised if fatal
            self._fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if targets is not None:
                report.http = targets.http_stats()
                await targets.finish()  # the earlier targets' destinations
            if destination is not None:
                try:
                    await destination.finish()
                except Exception as exc:  # noqa: BLE001 - the retirement's own outcome matters more
                    log.warning("destination.finish_failed", error=str(exc))
            self.progress.finish()
            if isinstance(self.state, WarehouseState):
                self.state.close()
            report.message = redact_text(report.message)
            report.seconds = round(time.monotonic() - started, 3)
            report.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        return report

    def _plan_removals(self, leavers: dict[int, list[Member]], stale: dict[int, list[Member]]) -> None:
        """The report's plan: how many members and identities to remove, in all and from each target."""
        settings = self.state.targets(self.export.name)
        by_target = [{"target": settings.get(target, self.cls.target(self.export.settings)),
                      "members": len(leavers.get(target, ())), "stale_identities": len(stale.get(target, ()))}
                     for target in sorted({*leavers, *stale})]
        self.report.plan = {"export": self.export.name, "remove": sum(len(members) for members in leavers.values()),
                            "stale_identities": sum(len(members) for members in stale.values()),
                            "connection": self.connection.name, "targets": by_target}

    async def _remove_everyone(self, destination: Destination, targets: TargetDestinations,
                               leavers: dict[int, list[Member]], stale: dict[int, list[Member]]) -> None:
        plan = self.report.plan
        if plan["remove"] or plan["stale_identities"]:  # nothing left: no request at all
            self.progress.start(self.export.name, plan["remove"] + plan["stale_identities"])
            await self._timed("check_connection", destination.check_connection())
            await self._timed("prepare", destination.prepare())
            for is_stale, by_target in ((False, leavers), (True, stale)):
                for target, members in by_target.items():
                    if not targets.elsewhere(target):
                        await self._remove_all(await targets.get(target), target, members, stale=is_stale)
                        continue
                    # a target in another instance (the export moved there): removed through the
                    # connection that reached it, when it still can; else kept for a later retire
                    problem = await self._remove_elsewhere(targets, target, members, stale=is_stale)
                    if problem is not None:
                        self.report.unacknowledged += len(members)
                        log.warning("retire.left_behind", export=self.export.name, target=targets.source(target),
                                    count=len(members), reason=problem)
        if not self.report.rejected and not self.report.unacknowledged:
            self.state.forget(self.export.name)

    def _outcome_message(self) -> str:
        report, name = self.report, self.export.name
        if self.options.dry_run:
            return "a dry run: nothing was removed, the export's state is kept"
        if report.rejected or report.unacknowledged:
            return (f"{report.rejected + report.unacknowledged} removal(s) were refused or not answered: state keeps "
                    f"them; run `segship retire {name}` again")
        return "retired: every member was removed and the export's state is forgotten"

    def _fail(self, exc: BaseException) -> None:
        super()._fail(exc)
        if self.report.outcome == "interrupted":  # what to run to go on is retire, not export
            self.report.message = (f"interrupted: {self.report.removed} removal(s) acknowledged and saved; run "
                                   f"`segship retire {self.export.name}` again to continue")
