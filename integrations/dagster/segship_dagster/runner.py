"""Running one export in the Dagster process, through segship's engine, as `segship export` does."""

from __future__ import annotations

import logging

from segship import event_loop
from segship.config import Config
from segship.engine.report import RunReport
from segship.engine.run import ExportRun, RunOptions
from segship.engine.state import open_state
from segship.plugins import get_plugins

from segship_dagster.log_bridge import events_to


def run_export(config: Config, export: str, step_log: logging.Logger) -> RunReport:
    """Run ``export`` now and return its report; segship's events go to ``step_log``.

    Raises ``StateError`` (``SecretResolutionError`` for an unset ``state.url``) when the state can't
    be opened; never raises for a run that went wrong (the report says how). The state lock
    refuses a second run of the same export at once, from Dagster or the CLI, as a failed run.
    """
    with events_to(step_log):
        state = open_state(config)
        try:
            return event_loop.run(ExportRun(config, export, get_plugins(), state, RunOptions()).run())
        finally:
            state.close()
