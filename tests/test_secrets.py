"""Secret references: ``${env:VAR}`` and ``${file:PATH}`` resolved only when needed, and redaction."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest

from segship.config import load_config
from segship.config.validate import resolve_connection_settings
from segship.plugins import build_plugins
from segship.secrets import (
    MASK,
    SECRET_FILE_MAX_BYTES,
    Redactor,
    SecretResolutionError,
    has_reference,
    is_reference,
    redactor,
    resolve,
)

WHERE = "segship.yaml:7:16"


def unique_secret() -> str:
    """A value no other test uses: the process-wide redactor remembers every secret it is given."""
    return f"secret-{uuid.uuid4().hex}"


@pytest.mark.parametrize(("value", "expected"), [
    ("${env:BRAZE_API_KEY}", True),
    ("  ${env:BRAZE_API_KEY}\n", True),
    ("${file:secrets/braze.key}", True),
    ("${file:/run/secrets/key}", True),
    ("Bearer ${env:KEY}", False),               # a reference inside a literal is not a reference
    ("${env:A}${env:B}", False),
    ("${vault:secret/braze}", False),
    ("$BRAZE_API_KEY", False),
    ("{env:BRAZE_API_KEY}", False),
    ("a1b2c3d4-e5f6", False),
    (42, False),
    (None, False),
])
def test_is_reference(value: object, expected: bool) -> None:
    assert is_reference(value) is expected


def test_has_reference() -> None:
    assert has_reference("https://${env:HOST}/v3")
    assert not has_reference("https://api.brevo.com/v3")
    assert not has_reference(["${env:X}"])


def test_env_reference_resolves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSHIP_TEST_KEY", "value-from-env")
    assert resolve("${env:SEGSHIP_TEST_KEY}", tmp_path, where=WHERE) == "value-from-env"
    assert resolve("${env: SEGSHIP_TEST_KEY }", tmp_path, where=WHERE) == "value-from-env"


def test_references_inside_a_string_resolve_each(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSHIP_TEST_HOST", "127.0.0.1")
    monkeypatch.setenv("SEGSHIP_TEST_PORT", "8080")
    assert resolve("http://${env:SEGSHIP_TEST_HOST}:${env:SEGSHIP_TEST_PORT}/v3", tmp_path,
                   where=WHERE) == "http://127.0.0.1:8080/v3"


def test_unset_variable_is_an_error_naming_the_variable_and_the_place(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    monkeypatch.delenv("SEGSHIP_TEST_UNSET", raising=False)
    with pytest.raises(SecretResolutionError) as error:
        resolve("${env:SEGSHIP_TEST_UNSET}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == f"{WHERE}: environment variable SEGSHIP_TEST_UNSET is not set"


def test_empty_variable_is_an_error_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SEGSHIP_TEST_EMPTY", "")
    with pytest.raises(SecretResolutionError, match=r"^segship.yaml:7:16: environment variable SEGSHIP_TEST_EMPTY is set but empty$"):
        resolve("${env:SEGSHIP_TEST_EMPTY}", tmp_path, where=WHERE, secret=True)


def test_empty_reference_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretResolutionError, match=r"^segship.yaml:7:16: empty \$\{env:\} reference$"):
        resolve("${env:}", tmp_path, where=WHERE)


def test_file_reference_is_relative_to_the_config_folder_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "braze.key").write_text("  value-from-file\n")
    assert resolve("${file:secrets/braze.key}", tmp_path, where=WHERE) == "value-from-file"
    assert resolve(f"${{file:{tmp_path / 'secrets' / 'braze.key'}}}", Path("/"), where=WHERE) == "value-from-file"


def test_file_reference_expands_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".braze").write_text("value-from-home\n")
    assert resolve("${file:~/.braze}", Path("/nowhere"), where=WHERE) == "value-from-home"


def test_missing_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SecretResolutionError) as error:
        resolve("${file:secrets/missing.key}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == (f"{WHERE}: can't read secret file {tmp_path / 'secrets' / 'missing.key'}: "
                                "No such file or directory")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty.key").write_text("\n")
    with pytest.raises(SecretResolutionError, match=r"secret file .*empty.key is empty$"):
        resolve("${file:empty.key}", tmp_path, where=WHERE, secret=True)


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "key.fifo")
    outcome: list[BaseException | str] = []

    def resolve_fifo() -> None:
        try:
            outcome.append(resolve("${file:key.fifo}", tmp_path, where=WHERE, secret=True))
        except SecretResolutionError as error:
            outcome.append(error)

    reader = threading.Thread(target=resolve_fifo, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked in open(): a writer opening and closing the FIFO releases it
        os.close(os.open(tmp_path / "key.fifo", os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("resolving ${file:} of a FIFO waited for a writer")
    assert [str(error) for error in outcome] == [
        f"{WHERE}: secret file {tmp_path / 'key.fifo'} is a FIFO (named pipe), not a regular file; write the "
        "secret into a file"]


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_refused_before_a_byte_is_read(device: str, tmp_path: Path) -> None:
    with pytest.raises(SecretResolutionError) as error:
        resolve(f"${{file:{device}}}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == f"{WHERE}: secret file {device} is a device, not a regular file; write the secret into a file"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    with pytest.raises(SecretResolutionError) as error:
        resolve("${file:secrets}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == (f"{WHERE}: secret file {tmp_path / 'secrets'} is a directory, not a regular file; "
                                "write the secret into a file")


def test_a_file_over_the_limit_is_refused_without_showing_its_content(tmp_path: Path) -> None:
    content = unique_secret()
    (tmp_path / "big.key").write_text(content + "x" * (SECRET_FILE_MAX_BYTES - len(content) + 1))
    with pytest.raises(SecretResolutionError) as error:
        resolve("${file:big.key}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == (f"{WHERE}: secret file {tmp_path / 'big.key'} is larger than 1,048,576 bytes "
                                "(1,048,577); a secret file holds one key, token or URL")
    assert content not in str(error.value)


def test_a_file_of_exactly_the_limit_resolves(tmp_path: Path) -> None:
    (tmp_path / "pem.key").write_text("k" * SECRET_FILE_MAX_BYTES)
    assert len(resolve("${file:pem.key}", tmp_path, where=WHERE)) == SECRET_FILE_MAX_BYTES == 1024 * 1024


def test_a_file_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "binary.key").write_bytes(b"\xff\xfe\x00secret")
    with pytest.raises(SecretResolutionError) as error:
        resolve("${file:binary.key}", tmp_path, where=WHERE, secret=True)
    assert str(error.value) == f"{WHERE}: secret file {tmp_path / 'binary.key'} is not UTF-8 text"


def test_a_resolved_secret_is_redacted_from_then_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = unique_secret()
    monkeypatch.setenv("SEGSHIP_TEST_SECRET", secret)
    assert redactor.redact(f"sending with {secret}") == f"sending with {secret}"  # not known yet
    resolve("${env:SEGSHIP_TEST_SECRET}", tmp_path, where=WHERE, secret=True)
    assert redactor.redact(f"sending with {secret}!") == f"sending with {MASK}!"


def test_a_resolved_non_secret_is_not_redacted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1/{uuid.uuid4().hex}"
    monkeypatch.setenv("SEGSHIP_TEST_ENDPOINT", endpoint)
    resolve("${env:SEGSHIP_TEST_ENDPOINT}", tmp_path, where=WHERE, secret=False)
    assert redactor.redact(endpoint) == endpoint


def test_redactor_masks_every_known_value_longest_first() -> None:
    local = Redactor()
    local.add("abcd1234")
    local.add("abcd1234-long-suffix")
    local.add("xyz")  # too short to redact without masking ordinary words
    assert local.redact("a=abcd1234-long-suffix b=abcd1234 c=xyz") == "a=*** b=*** c=xyz"
    assert local.redact("nothing here") == "nothing here"


# -- through the config: resolution happens when a run needs it ----------------------------------------

CONFIG = """\
version: 1
connections:
  braze:
    type: braze
    display_name: Braze
    settings:
      api_key: ${env:SEGSHIP_TEST_BRAZE_KEY}
      rest_endpoint: ${env:SEGSHIP_TEST_BRAZE_ENDPOINT}
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SEGSHIP_TEST_BRAZE_KEY", raising=False)
    monkeypatch.delenv("SEGSHIP_TEST_BRAZE_ENDPOINT", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "segship.yaml").write_text(CONFIG)
    plugins = build_plugins()
    return load_config(Path("segship.yaml"), plugins), plugins  # loads fine: nothing is resolved yet


def test_connection_settings_resolve_at_run_time(config, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, plugins = config
    secret = unique_secret()
    monkeypatch.setenv("SEGSHIP_TEST_BRAZE_KEY", secret)
    monkeypatch.setenv("SEGSHIP_TEST_BRAZE_ENDPOINT", "http://127.0.0.1:9999")
    settings = resolve_connection_settings(loaded, "braze", plugins)
    assert settings == {"api_key": secret, "rest_endpoint": "http://127.0.0.1:9999"}
    assert redactor.redact(secret) == MASK
    assert loaded.connections["braze"].settings["api_key"] == "${env:SEGSHIP_TEST_BRAZE_KEY}"


def test_an_unset_key_at_run_time_names_the_variable_and_its_place(config, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, plugins = config
    monkeypatch.setenv("SEGSHIP_TEST_BRAZE_ENDPOINT", "http://127.0.0.1:9999")
    with pytest.raises(SecretResolutionError) as error:
        resolve_connection_settings(loaded, "braze", plugins)
    assert str(error.value) == "segship.yaml:7:16: environment variable SEGSHIP_TEST_BRAZE_KEY is not set"


def test_a_resolved_value_the_schema_refuses_is_an_error_at_its_place(config, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, plugins = config
    secret = unique_secret()
    monkeypatch.setenv("SEGSHIP_TEST_BRAZE_KEY", secret)
    monkeypatch.setenv("SEGSHIP_TEST_BRAZE_ENDPOINT", "https://dashboard-01.braze.com")
    with pytest.raises(SecretResolutionError) as error:
        resolve_connection_settings(loaded, "braze", plugins)
    message = str(error.value)
    assert message.startswith("segship.yaml:8:22: connections.braze.settings.rest_endpoint "
                              "(from ${env:SEGSHIP_TEST_BRAZE_ENDPOINT}) is invalid"), message
    assert secret not in message
