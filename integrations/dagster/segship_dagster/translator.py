"""How a segship export appears in Dagster: its asset key, group, description, deps, check.

The one place that decides it, in the manner of dagster-dbt's and dagster-sling's
translators: subclass :class:`SegshipTranslator` and override ``get_asset_key`` (or
``get_asset_spec``) to change what the defaults say.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import AssetCheckSpec, AssetKey, AssetSpec
from segship.config import ExportConfig

REJECTS_CHECK = "segship_rejects"
GROUP = "segship"


class SegshipTranslator:
    """Asset specs for segship exports: key ``[*key_prefix, export]``, group ``segship``,
    description the export's ``display_name``."""

    def __init__(self, key_prefix: Sequence[str] = ("segship",), group_name: str = GROUP) -> None:
        self.key_prefix = tuple(key_prefix)
        self.group_name = group_name

    def get_asset_key(self, export: ExportConfig) -> AssetKey:
        return AssetKey([*self.key_prefix, export.name])

    def get_asset_spec(self, export: ExportConfig) -> AssetSpec:
        return AssetSpec(
            key=self.get_asset_key(export),
            description=export.display_name,
            group_name=self.group_name,
            kinds={"segship"},
            metadata={"segship/export": export.name, "segship/connection": export.connection,
                      "segship/segments": ", ".join(export.segments)},
        )

    def get_rejects_check_spec(self, export: ExportConfig) -> AssetCheckSpec:
        return AssetCheckSpec(REJECTS_CHECK, asset=self.get_asset_key(export),
                              description="Rows refused in the last run, by reason (`segship rejects EXPORT` "
                                          "lists them); fails, as a warning, when rows were refused for the first "
                                          "time or for a new reason.")
