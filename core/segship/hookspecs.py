"""The hooks a segship plugin may implement.

Every hook is prefixed ``segship_``, typed, and says when it is called. Registration
hooks take a ``register`` callback (as in llm) rather than returning lists, so a
plugin can register several things and the core controls what registering means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from segship.destination import Destination
    from segship.engine.report import BatchReport, ExportPlan, RunReport
    from segship.notifiers.contract import Notifier
    from segship.source import Source

hookspec = pluggy.HookspecMarker("segship")


@hookspec
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    """Called once when plugins load; call ``register(DestinationClass)`` for each destination type."""


@hookspec
def segship_register_sources(register: Callable[[type[Source]], None]) -> None:
    """Called once when plugins load; call ``register(SourceClass)`` for each source type."""


@hookspec
def segship_register_notifiers(register: Callable[[type[Notifier]], None]) -> None:
    """Called once when plugins load; call ``register(NotifierClass)`` for each notification channel type."""


@hookspec
def segship_register_commands(cli: typer.Typer, sandbox: typer.Typer) -> None:
    """Called while the CLI is built; add commands to ``cli`` or sandbox servers to ``segship sandbox``."""


@hookspec
def segship_export_started(export_name: str, plan: ExportPlan) -> None:
    """Called when a run of an export has planned and passed its safeguards, before anything is sent."""


@hookspec
def segship_batch_done(export_name: str, batch: BatchReport) -> None:
    """Called after each batch the destination answered, once its acknowledgements are committed to state."""


@hookspec
def segship_export_finished(export_name: str, report: RunReport) -> None:
    """Called when a run of an export ends, whatever its outcome, with its final report."""
