"""``sync_log:``: its retention, its default, and what the schema refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from segship.config import ConfigError, load_config
from segship.config.model import SyncLogConfig
from segship.plugins import build_plugins

from .test_notifications import BASE


def test_the_retention_defaults_to_30_days_and_0_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "segship.yaml").write_text(BASE)
    assert load_config(tmp_path / "segship.yaml", build_plugins()).sync_log == SyncLogConfig(30)
    (tmp_path / "segship.yaml").write_text(BASE + "sync_log: {retention_days: 0}\n")
    assert load_config(tmp_path / "segship.yaml", build_plugins()).sync_log.retention_days == 0


@pytest.mark.parametrize("entry", ["{retention_days: -1}", "{retention_days: 1.5}", "{keep: 3}"])
def test_a_negative_fractional_or_unknown_setting_is_refused_in_place(tmp_path: Path, entry: str) -> None:
    (tmp_path / "segship.yaml").write_text(BASE + f"sync_log: {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "segship.yaml", build_plugins())
    assert any("sync_log" in str(issue) for issue in caught.value.issues)
