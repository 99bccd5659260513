"""One Dagster schedule per segship export that has a cron ``schedule``, materializing its asset."""

from __future__ import annotations

from dagster import AssetSelection, ScheduleDefinition

from segship_dagster.assets import ConfigLike, load, op_name
from segship_dagster.translator import SegshipTranslator


def segship_schedules(config: ConfigLike, *, translator: SegshipTranslator | None = None,
                      execution_timezone: str | None = None) -> list[ScheduleDefinition]:
    """A schedule per scheduled export, on the export's own cron expression.

    ``execution_timezone`` (an IANA name) is Dagster's; without it Dagster evaluates cron in
    UTC, while `segship schedule` uses the machine's local time.
    """
    loaded = load(config)
    translator = translator or SegshipTranslator()
    return [
        ScheduleDefinition(name=f"{op_name(export.name)}_schedule", cron_schedule=export.schedule,
                           target=AssetSelection.assets(translator.get_asset_key(export)),
                           execution_timezone=execution_timezone,
                           description=f"segship export {export.name} ({export.display_name}) on {export.schedule}")
        for export in loaded.exports.values() if export.schedule
    ]
