"""The Dagster component: a defs.yaml naming a segship config loads its assets and schedules."""

from __future__ import annotations

import shutil

import yaml
from dagster import AssetKey
from dagster.components.testing import create_defs_folder_sandbox


def test_a_defs_yaml_loads_the_assets_checks_deps_and_schedules(config_dir):
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "exports"
        folder.mkdir(parents=True)
        shutil.copy(config_dir / "segship.yaml", folder / "segship.yaml")
        (folder / "defs.yaml").write_text(yaml.safe_dump({
            "type": "segship_dagster.SegshipComponent",
            "attributes": {"config": "segship.yaml", "deps": {"vip-braze": ["marts/vip_customers"]}},
        }))
        with sandbox.build_all_defs() as defs:
            vip = defs.resolve_assets_def(AssetKey(["segship", "vip-braze"]))
            (spec,) = vip.specs
            assert [dep.asset_key for dep in spec.deps] == [AssetKey(["marts", "vip_customers"])]
            assert [check.name for check in vip.check_specs] == ["segship_rejects"]
            assert [schedule.name for schedule in defs.schedules] == ["segship_vip_braze_schedule"]
