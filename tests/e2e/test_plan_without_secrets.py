"""What runs on a pull request (`validate`, `plan`, `export --dry-run`) never resolves a connection's secret.

CI has no destination keys, and a plan's output (a pull request's comment) is public to
everyone who can read the repository: a key read there could be printed there.
"""

from __future__ import annotations

import pytest

ENV_KEY, FILE_KEY = "braze-env-key-canary-51c9e0", "brevo-file-key-canary-0a77d3"

CONFIG = """\
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: customer_id, sql: "SELECT * FROM crm"}
connections:
  braze:
    type: braze
    display_name: Braze
    usable_by: [admins]
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: "${env:BRAZE_URL}"}
  brevo:
    type: brevo
    display_name: Brevo
    usable_by: [admins]
    data_privacy_consent: true
    settings: {api_key: "${file:keys/brevo.key}"}
exports:
  vip-braze:
    display_name: VIP to Braze
    connection: braze
    segments: [vip]
    settings: {segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}
    mapping: {customer_id: customer_id, email: email}
  vip-brevo:
    display_name: VIP to Brevo
    connection: brevo
    segments: [vip]
    settings: {list_id: 3}
    mapping: {email: email}
"""
PULL_REQUEST_COMMANDS = (("validate",), ("plan",), ("plan", "--format", "markdown"), ("plan", "--format", "json"),
                         ("export", "--all", "--dry-run"))


@pytest.mark.parametrize("secrets", ["absent", "present"])
def test_validate_and_plan_never_read_a_connections_secret(write_config, segship, secrets):
    write_config({"segship.yaml": CONFIG,
                  "profiles.csv": "customer_id,email\nC1,one@example.com\nC2,two@example.com\n"})
    env = {}
    if secrets == "present":  # read, they could be printed: nothing resolved them, so nothing would redact them
        env = {"BRAZE_API_KEY": ENV_KEY, "BRAZE_URL": "http://127.0.0.1:9"}
        write_config({"keys/brevo.key": FILE_KEY})
    for command in PULL_REQUEST_COMMANDS:  # absent, resolving one would fail (exit 2)
        result = segship(*command, env=env)
        assert result.exit_code == 0, result
        assert ENV_KEY not in result.output and FILE_KEY not in result.output, result
        if command == ("plan", "--format", "markdown"):
            assert "| `vip-braze` | 2 | 2 | 0 | 0 | 0 | 0 | 0 | changes |" in result.stdout
