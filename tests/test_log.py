"""Logging: a resolved secret never reaches console or JSON logs; personal data is masked unless log_pii."""

from __future__ import annotations

import io
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog

from segship.log import configure_logging, mask_pii, redact_text
from segship.secrets import MASK, resolve

EMAIL = "jane.doe@example.com"
PHONE = "+33 6 12 34 56 78"


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """``logs(emit, json_format=…, log_pii=…)`` configures logging as the CLI does, runs ``emit``, returns the text."""

    def capture(emit: Callable[[structlog.typing.FilteringBoundLogger], None], **options) -> str:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        configure_logging(**options)
        emit(structlog.get_logger("segship.test"))
        return buffer.getvalue()

    yield capture
    structlog.reset_defaults()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """An API key resolved from ``${env:…}`` as a run resolves it (and so known to the redactor)."""
    # with a run of digits, which the personal-data masking would take for a phone number
    value = f"key-{uuid.uuid4().hex[:16]}-4155550100123-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SEGSHIP_TEST_LOG_KEY", value)
    assert resolve("${env:SEGSHIP_TEST_LOG_KEY}", tmp_path, where="segship.yaml:1:1", secret=True) == value
    return value


FORMATS = pytest.mark.parametrize("json_format", [False, True], ids=["console", "json"])


@FORMATS
def test_a_resolved_secret_never_appears(logs, secret: str, json_format: bool) -> None:
    def emit(log) -> None:
        log.info("request.sent", api_key=secret, headers={"Authorization": f"Bearer {secret}"},
                 url=f"https://example.com/?key={secret}", attempts=[secret, 1])
        log.warning(f"retrying with {secret}")

    text = logs(emit, json_format=json_format)
    assert secret not in text
    for piece in secret.split("-")[1:]:
        assert piece not in text, text
    assert text.count(MASK) >= 5, text


@FORMATS
def test_a_secret_in_an_exception_traceback_never_appears(logs, secret: str, json_format: bool) -> None:
    def emit(log) -> None:
        try:
            raise RuntimeError(f"401 for key {secret}")
        except RuntimeError:
            log.exception("request.failed")
        log.error("request.failed", error=RuntimeError(f"401 for key {secret}"))

    text = logs(emit, json_format=json_format)
    assert "RuntimeError" in text  # the traceback is there...
    assert secret not in text      # ...without the key


@FORMATS
def test_even_with_log_pii_a_secret_never_appears(logs, secret: str, json_format: bool) -> None:
    text = logs(lambda log: log.info("x", api_key=secret), json_format=json_format, log_pii=True)
    assert secret not in text


@FORMATS
def test_authorization_headers_are_redacted_even_when_unknown(logs, json_format: bool) -> None:
    unknown = f"tok{uuid.uuid4().hex}"
    text = logs(lambda log: log.info("request", detail=f"Authorization: Bearer {unknown}",
                                     headers=f"{{'api-key': '{unknown}'}}"), json_format=json_format)
    assert unknown not in text


@FORMATS
def test_emails_and_phones_are_masked_by_default(logs, json_format: bool) -> None:
    text = logs(lambda log: log.info("row.rejected", email=EMAIL, phone=PHONE, reason=f"{EMAIL} bounced"),
                json_format=json_format)
    assert EMAIL not in text and "jane.doe" not in text
    assert PHONE not in text and "12 34 56 78" not in text
    assert "j***@***" in text
    assert "***phone***" in text


@FORMATS
def test_log_pii_shows_emails_and_phones(logs, json_format: bool) -> None:
    text = logs(lambda log: log.info("row.rejected", email=EMAIL, phone=PHONE), json_format=json_format, log_pii=True)
    assert EMAIL in text
    assert PHONE in text


def test_json_logs_are_one_object_a_line_with_an_intact_timestamp(logs, secret: str) -> None:
    text = logs(lambda log: (log.info("one", email=EMAIL), log.warning("two", api_key=secret)), json_format=True)
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["event"] == "one" and first["email"] == "j***@***" and first["level"] == "info"
    assert second["api_key"] == MASK and second["level"] == "warning"
    assert first["timestamp"].endswith("Z") and "***" not in first["timestamp"]


def test_log_level_filters(logs) -> None:
    text = logs(lambda log: (log.debug("hidden"), log.info("hidden too"), log.warning("shown")), level="warning")
    assert "shown" in text and "hidden" not in text


@pytest.mark.parametrize(("text", "expected"), [
    ("write to jane.doe@example.com now", "write to j***@*** now"),
    ("call +1 (555) 010-9999 please", "call ***phone*** please"),
    ("id 42 and 2026 are not phones", "id 42 and 2026 are not phones"),
])
def test_mask_pii(text: str, expected: str) -> None:
    assert mask_pii(text) == expected


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abc.def.ghi",
    "{'authorization': 'Bearer abc.def.ghi'}",
    "api-key=abc.def.ghi",
    '"X-Api-Key": "abc.def.ghi"',
])
def test_redact_text_masks_auth_headers(text: str) -> None:
    redacted = redact_text(text)
    assert "abc.def.ghi" not in redacted
    assert MASK in redacted


# -- the CLI end to end: an API that echoes the key back --------------------------------------------------


class _EchoingAPI(BaseHTTPRequestHandler):
    """Answers everything 401 and, carelessly, quotes the API key it got (some APIs do)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        key = self.headers.get("api-key") or self.headers.get("Authorization", "")
        body = json.dumps({"code": "unauthorized", "message": f"Key not found: {key}"}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def echoing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_the_cli_never_prints_a_key_the_api_echoes(echoing_api: str, segship, write_config, log_format) -> None:
    key = f"xkeysib-{uuid.uuid4().hex}"
    write_config({"segship.yaml": """
        version: 1
        connections:
          brevo:
            type: sendinblue
            display_name: Brevo
            data_privacy_consent: true
            settings: {api_key: '${env:BREVO_API_KEY}', base_url: '${env:BREVO_BASE_URL}'}
        """})
    result = segship("--log-format", log_format, "--log-level", "debug", "--debug", "connections", "test", "brevo",
                     "-c", "segship.yaml", env={"BREVO_API_KEY": key, "BREVO_BASE_URL": echoing_api})
    assert result.exit_code != 0, result
    assert "401" in result.output or "unauthorized" in result.output.lower() or "key" in result.output.lower(), result
    assert key not in result.output, result
    assert key[8:20] not in result.output, result
