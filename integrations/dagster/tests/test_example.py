"""The example code location loads with Dagster's own command; an invalid config says where it is wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from segship.config import ConfigError
from segship_dagster import segship_assets

EXAMPLE = Path(__file__).resolve().parent.parent / "example"


def test_the_example_passes_dagster_definitions_validate_without_any_secret(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "example")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRAZE_", "SEGSHIP_", "DAGSTER_HOME"))}
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run([str(dagster), "definitions", "validate", "-f", "example/definitions.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_an_invalid_config_raises_its_problems_with_their_place(tmp_path):
    text = (EXAMPLE / "segship.yaml").read_text().replace("connection: braze-prod", "connection: braze-staging")
    (tmp_path / "segship.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"segship.yaml:\d+:\d+: .*braze-staging"):
        segship_assets(tmp_path / "segship.yaml")
