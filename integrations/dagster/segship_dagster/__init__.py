"""Dagster assets, asset checks and schedules for segship exports."""

from segship_dagster.assets import segship_assets
from segship_dagster.component import SegshipComponent
from segship_dagster.schedules import segship_schedules
from segship_dagster.translator import REJECTS_CHECK, SegshipTranslator

__all__ = ["REJECTS_CHECK", "SegshipComponent", "SegshipTranslator", "segship_assets", "segship_schedules"]
