"""Validation's own costs: what it checks once however large the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from segship.config import load_config, validate
from segship.plugins import build_plugins

CONFIG = """\
version: 1
sources: {crm: {type: duckdb, path: profiles.csv}}
segments: {vip: {source: crm, key: customer_id, sql: SELECT 1}}
connections:
  braze:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: https://rest.iad-01.braze.com}
exports:
"""
EXPORT = ("  e{index}: {{display_name: Export, connection: braze, segments: [vip], mapping: {{email: email, "
          "customer_id: customer_id}}, settings: {{segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}}}}\n")


def test_a_connections_settings_are_checked_once_however_many_exports_use_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "segship.yaml").write_text(CONFIG + "".join(EXPORT.format(index=index) for index in range(50)))
    checked = []
    check = validate._validate_schema
    monkeypatch.setattr(validate, "_validate_schema", lambda instance, schema, prefix, loaded: (
        checked.append(prefix) or check(instance, schema, prefix, loaded)))
    config = load_config(tmp_path / "segship.yaml", build_plugins())
    assert len(config.exports) == 50
    assert checked.count(("connections", "braze", "settings")) == 1
    assert checked.count(("exports", "e49", "mapping")) == 1
