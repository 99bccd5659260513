"""One Dagster schedule per scheduled export, on its cron, targeting its asset."""

from __future__ import annotations

from dagster import AssetKey, Definitions
from segship_dagster import segship_assets, segship_schedules


def test_one_schedule_per_export_with_a_cron_schedule(config_dir):
    schedules = segship_schedules(config_dir)
    assert [(s.name, s.cron_schedule) for s in schedules] == [("segship_vip_braze_schedule", "15 * * * *")]
    defs = Definitions(assets=segship_assets(config_dir), schedules=schedules)
    job = defs.resolve_job_def(defs.resolve_schedule_def("segship_vip_braze_schedule").job_name)
    assert job.asset_layer.selected_asset_keys == {AssetKey(["segship", "vip-braze"])}
