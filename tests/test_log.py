"""Logging: a resolved secret never reaches console or JSON logs; personal data, and nothing else, is masked
unless log_pii."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
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

from .conftest import clean_env, segship_script

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


#: What segship logs that is nobody's personal data: the mask must leave every one as it is.
NOT_PERSONAL = [
    # timestamps and dates: offsets, Z, fractions, the schedule's next run, an HTTP date
    "2026-12-06T03:38:00+00:00", "next=2026-12-06T03:38:00+00:00", "2026-12-06T03:38:00Z",
    "2026-12-06T03:38:00.123456Z", "2026-12-06T03:38:00.123-05:00", "2026-12-06T03:38:00+05:30",
    "2026-12-06 03:38:00+01:00", "20261206T033800+0000", "2026-12-06", "03:38:00", "UTC+05:30",
    "Sun, 06 Dec 2026 03:38:00 GMT",
    # addresses and ports
    "http://127.0.0.1:8080", "could not connect to http://127.0.0.1:1: Connection refused", "127.0.0.1:54321",
    "10.0.0.1:5432", "192.168.100.200", "[::1]:8080", "http://[::1]:8080/v3", "2001:db8::1",
    "fe80::1ff:fe23:4567:890a", "port 54321",
    # a URL's user is a login, not an address; a version pin is no address either
    "postgresql://segship@db.example.com:5432/state", "duckdb@1.1.3",
    # ids, durations, counts
    "run_id=123456789", "run 42 of export vip-brevo", "12.345s", "seconds=0.274", "delay=25.712",
    "1733456789", "1733456789.123", "1733456789123", "bytes=2147483648", "1,048,576 bytes", "104857600",
    "550e8400-e29b-41d4-a716-446655440000", "segment 3c4a9e52-0000-4000-8000-000000000001", "list_id=12345678",
    "process_id=4155550100", "+293 add, -12 remove", "1.5e+10", "+12345 rows",
    # answers
    "HTTP/1.1 200 OK", "HTTP 503", "GET /v3/contacts/lists/12345678 failed after 8 attempts (HTTP 503)",
]


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_the_mask_leaves_what_is_not_personal_data(text: str) -> None:
    assert mask_pii(text) == text


#: Personal data as it may be written, with what the mask makes of it.
PERSONAL = [
    ("jane.doe@example.com", "j***@***"),
    ("Jane.Doe+news@mail.example.co.uk", "J***@***"),
    ("mailto:jane@example.com", "mailto:j***@***"),
    ("+33612345678", "***phone***"),             # E.164
    ("+33 6 12 34 56 78", "***phone***"),        # France, as people write it
    ("+33 (0)6 12 34 56 78", "***phone***"),     # with the trunk prefix in parentheses
    ("+1 (202) 555-0143", "***phone***"),        # United States
    ("+1-555-010-9999", "***phone***"),          # a fictional number is still someone's entry
    ("+44 20 7946 0958", "***phone***"),         # United Kingdom
    ("+49 30 901820", "***phone***"),            # Germany
    ("+81 3-1234-5678", "***phone***"),          # Japan
    ("+55 11 91234-5678", "***phone***"),        # Brazil
    ("tel:+14155550100", "tel:***phone***"),
    ("https://crm.example.com?email=jane@example.com", "https://crm.example.com?email=j***@***"),
]


@pytest.mark.parametrize(("personal", "masked"), PERSONAL)
def test_the_mask_hides_emails_and_phone_numbers_in_any_text(personal: str, masked: str) -> None:
    line = f"at 2026-12-06T03:38:00+00:00 from http://127.0.0.1:8080 {personal}, 12.345s"
    assert mask_pii(line) == f"at 2026-12-06T03:38:00+00:00 from http://127.0.0.1:8080 {masked}, 12.345s"


@FORMATS
def test_logs_keep_what_is_not_personal_data(logs, json_format: bool) -> None:
    fields = {f"value{index}": text for index, text in enumerate(NOT_PERSONAL)}
    text = logs(lambda log: log.info("export.finished", **fields, detail=" | ".join(NOT_PERSONAL)),
                json_format=json_format)
    if json_format:
        event = json.loads(text)
        assert {name: event[name] for name in fields} == fields
        assert event["detail"] == " | ".join(NOT_PERSONAL)
    else:
        assert " | ".join(NOT_PERSONAL) in text
        assert "***" not in text


@FORMATS
def test_logs_hide_every_kind_of_personal_data(logs, json_format: bool) -> None:
    fields = {f"value{index}": personal for index, (personal, _) in enumerate(PERSONAL)}
    text = logs(lambda log: log.info("row.refused", **fields), json_format=json_format)
    for personal, _ in PERSONAL:
        assert personal not in text
    if json_format:
        event = json.loads(text)
        assert [event[name] for name in fields] == [masked for _, masked in PERSONAL]


@FORMATS
def test_a_members_identity_is_masked_by_its_field_name(logs, json_format: bool) -> None:
    # a Braze external_id is a customer id no pattern can tell from any other id: its field says what it is
    def emit(log) -> None:
        log.info("member.removed", key="C00042", identity="C00042", list_id=12345678)
        log.info("members.removed", identities=["C00042", "jane.doe@example.com"], count=2, batch={"identity": "C7"})
        log.info("member.unknown", identity=None)

    text = logs(emit, json_format=json_format)
    assert "jane.doe" not in text and "C7" not in text
    if json_format:
        one, many, unknown = (json.loads(line) for line in text.splitlines())
        assert one["identity"] == "***identity***" and one["key"] == "C00042" and one["list_id"] == 12345678
        assert many["identities"] == ["***identity***", "***identity***"] and many["count"] == 2
        assert many["batch"] == {"identity": "***identity***"}
        assert unknown["identity"] is None
    else:
        assert "identity=***identity***" in text and "key=C00042" in text


@FORMATS
def test_log_pii_shows_identities(logs, json_format: bool) -> None:
    text = logs(lambda log: log.info("member.removed", identity="C00042"), json_format=json_format, log_pii=True)
    assert "C00042" in text and "***" not in text


@pytest.mark.parametrize("text", [
    "Authorization: Bearer abc.def.ghi",
    "{'authorization': 'Bearer abc.def.ghi'}",
    "api-key=abc.def.ghi",
    '"X-Api-Key": "abc.def.ghi"',
    "postgresql://segship:abc.def.ghi@db.example.com:5432/state",
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


# -- the CLI end to end: what it logs of time and place comes out whole ------------------------------------

SCHEDULED = """
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: customer_id, sql: "SELECT * FROM crm"}
connections:
  brevo:
    type: brevo
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}", base_url: "${env:BREVO_BASE_URL}"}
exports:
  vip-brevo:
    display_name: VIP to Brevo
    connection: brevo
    segments: [vip]
    settings: {list_id: 3}
    mapping: {email: email}
    schedule: '0 0 1 1 *'
"""


def first_line_with(text: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Start ``segship ARGS``, return the first stderr line holding ``text`` (or "" if none came), stop it."""
    process = subprocess.Popen([str(segship_script()), *args], cwd=cwd, env=clean_env(env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        return next((line for line in process.stderr if text in line), "")
    finally:
        process.kill()  # what it does next is not this test's business
        process.communicate(timeout=30)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_the_cli_logs_the_next_scheduled_run_whole(write_config, tmp_path: Path, log_format: str) -> None:
    write_config({"segship.yaml": SCHEDULED, "profiles.csv": "customer_id,email\nC1,jane.doe@example.com\n"})
    line = first_line_with("schedule.waiting", ["--log-format", log_format, "schedule"], tmp_path,
                           {"BREVO_API_KEY": "xkeysib-unused", "BREVO_BASE_URL": "http://127.0.0.1:9/v3"})
    if log_format == "json":
        waiting = json.loads(line)
        assert re.fullmatch(r"\d{4}-01-01T00:00:00[+-]\d\d:\d\d", waiting["next"]), waiting
        assert "***" not in waiting["timestamp"], waiting
    else:
        assert re.search(r"next=\d{4}-01-01T00:00:00[+-]\d\d:\d\d", line), line
        assert "***" not in line, line


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port of 127.0.0.1 bound but not listening: connecting to it is refused, and nobody else takes it."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_the_cli_logs_an_unreachable_address_whole(write_config, tmp_path: Path, refusing_port: int,
                                                   log_format: str) -> None:
    write_config({"segship.yaml": SCHEDULED, "profiles.csv": "customer_id,email\nC1,jane.doe@example.com\n"})
    address = f"http://127.0.0.1:{refusing_port}"
    line = first_line_with(f":{refusing_port}", ["--log-format", log_format, "--log-level", "debug", "export",
                                                 "vip-brevo"],
                           tmp_path, {"BREVO_API_KEY": "xkeysib-unused", "BREVO_BASE_URL": f"{address}/v3"})
    assert address in line and "***" not in line, line
    if log_format == "json":
        assert "***" not in json.loads(line)["timestamp"]
