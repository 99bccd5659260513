"""``segship connections test NAME|--all``: the "Connect" button, against the real sandboxes."""

from __future__ import annotations

import pytest

CONFIG = """
version: 1
connections:
  braze:
    type: braze
    display_name: Braze sandbox
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: "${env:BRAZE_URL}"}
  brevo-bad-key:
    type: brevo
    display_name: Brevo, a key it refuses
    data_privacy_consent: true
    settings: {api_key: "${env:WRONG_KEY}", base_url: "${env:BREVO_URL}"}
  brevo:
    type: brevo
    display_name: Brevo sandbox
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}", base_url: "${env:BREVO_URL}"}
"""


@pytest.fixture
def env(write_config, braze_sandbox, sendinblue_sandbox) -> dict[str, str]:
    write_config({"segship.yaml": CONFIG})
    return {"BRAZE_API_KEY": braze_sandbox.api_key, "BRAZE_URL": braze_sandbox.url, "WRONG_KEY": "not-the-key",
            "BREVO_API_KEY": sendinblue_sandbox.api_key, "BREVO_URL": sendinblue_sandbox.url}


def test_all_tests_every_connection_and_fails_if_one_does(segship, env) -> None:
    result = segship("connections", "test", "--all", env=env)
    assert result.exit_code == 1, result
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["braze", "brevo"], result
    assert result.stderr.startswith("error: brevo-bad-key: "), result  # and the one after it was still tested
    assert result.stderr.count("\n") == 1, result

    fixed = segship("connections", "test", "--all", env={**env, "WRONG_KEY": env["BREVO_API_KEY"]})
    assert fixed.exit_code == 0, fixed
    assert [line.split(":")[0] for line in fixed.stdout.splitlines()] == ["braze", "brevo-bad-key", "brevo"]

    unset = segship("connections", "test", "--all", env={k: v for k, v in env.items() if k != "WRONG_KEY"})
    assert unset.exit_code == 2 and "WRONG_KEY" in unset.stderr, unset  # an unset secret is the config's


def test_one_connection_or_all_but_not_both(segship, env) -> None:
    assert segship("connections", "test", "braze", env=env).exit_code == 0
    for args in ((), ("braze", "--all")):
        result = segship("connections", "test", *args, env=env)
        assert result.exit_code == 2 and "name one connection, or use --all" in result.stderr, result
    unknown = segship("connections", "test", "nope", env=env)
    assert unknown.exit_code == 2 and "unknown connection 'nope' (connections: braze, brevo, brevo-bad-key)" \
        in unknown.stderr, unknown
