"""A destination that can't be reached: the "Connect" button answers at once with the cause, a run says each retry.

``segship connections test`` tries each request within a short budget of its own, whatever the
connection's ``network.retries`` allow a run, so it answers within 10 s naming the cause:
refused, a name DNS doesn't know, an untrusted certificate, a server that never answers, a
storm of 5xx. A run keeps the connection's budget and logs every retry at info (the attempt of
how many, the cause, the wait before the next), in console and JSON logs, without a header,
the key or a body.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from segship_braze.sandbox import BrazeSandbox
from segship_braze.sandbox import RunningBrazeSandbox as BrazeHandle
from segship_sendinblue.sandbox import BrevoSandbox
from segship_sendinblue.sandbox import RunningBrevoSandbox as BrevoHandle

from .conftest import BRAZE_KEY, BREVO_KEY, Pki, https_sandboxes

#: what ``segship connections test`` promises: an answer within this, whatever the network does
ANSWER_SECONDS = 10


@contextmanager
def http_sandboxes() -> Iterator[tuple[BrazeHandle, BrevoHandle]]:
    with BrazeHandle(BrazeSandbox(api_key=BRAZE_KEY)) as braze, \
            BrevoHandle(BrevoSandbox(api_key=BREVO_KEY, process_delay=0.01)) as brevo:
        yield braze, brevo


@contextmanager
def silent_listener() -> Iterator[str]:
    """The URL of a port that takes connections and never answers: it listens and never accepts
    (the kernel completes the handshake, nobody reads the request)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now


@contextmanager
def destinations(cause: str, pki: Pki) -> Iterator[tuple[str, str]]:
    """The Braze and Brevo URLs at which ``cause`` happens."""
    if cause == "refused":
        yield closed_port_url(), closed_port_url()
    elif cause == "name not resolved":
        yield "http://segship-no-such-host.invalid", "http://segship-no-such-host.invalid/v3"
    elif cause == "untrusted certificate":
        with https_sandboxes(pki.server_context()) as sandboxes:
            yield sandboxes.braze.url, sandboxes.brevo.url
    elif cause == "never answers":
        with silent_listener() as url:
            yield url, url
    else:  # a storm of 503s
        with http_sandboxes() as (braze, brevo):
            for sandbox in (braze, brevo):
                sandbox.set_faults(error_fraction=1.0, error_statuses=[503])
            yield braze.url, brevo.url


CAUSES = {
    "refused": "could not connect to http://127.0.0.1:{port}: connection refused",
    # "(DNS knows no host …)", or "(the DNS lookup … failed: …)" where no resolver answers
    "name not resolved": "could not connect to http://segship-no-such-host.invalid: name not resolved (",
    "untrusted certificate": "certificate verify failed for 127.0.0.1",
    "never answers": "timed out after 4 s waiting for http://127.0.0.1:{port} to answer",
    "503 storm": "after 3 attempts (HTTP 503)",
}


@pytest.mark.parametrize("connection", ["braze", "brevo"])
@pytest.mark.parametrize("cause", CAUSES)
def test_connections_test_answers_within_10_s_naming_the_cause(project, pki, cause, connection):
    # a run's budget (the default: 8 attempts within 300 s) must not be the test's
    with destinations(cause, pki) as (braze_url, brevo_url):
        project.configure(braze_url, brevo_url)
        run = project.cli("connections", "test", connection)
    assert run.exit_code == 1, run
    assert run.seconds < ANSWER_SECONDS, run
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run  # the answer is one line...
    url = braze_url if connection == "braze" else brevo_url
    port = url.rsplit(":", 1)[-1].split("/")[0]
    assert CAUSES[cause].format(port=port) in errors[0], run  # ...naming the cause
    assert "Traceback" not in run.output
    assert BRAZE_KEY not in run.output and BREVO_KEY not in run.output


def test_connections_test_keeps_a_connections_own_shorter_budget(project):
    with http_sandboxes() as (braze, brevo):
        braze.set_faults(error_fraction=1.0, error_statuses=[503])
        project.configure(braze.url, brevo.url, network="retries: {max_attempts: 1}")
        run = project.cli("connections", "test", "braze")
        assert braze.stats()["requests"] == 1
    assert run.exit_code == 1 and "after 1 attempt (HTTP 503)" in run.stderr, run


def test_connections_test_help_names_its_budget(project):
    run = project.cli("connections", "test", "--help")
    assert run.exit_code == 0, run
    text = " ".join(run.stdout.split())
    assert "at most 3 attempts within 3 s" in text and "network.retries" in text, run


# -- a run: every retry logged at info ---------------------------------------------------------------

BODY_MARKER = "segship-busy-body-7d1e"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_run_logs_every_retry_at_info_with_attempt_cause_and_wait(project, log_format):
    with http_sandboxes() as (braze, brevo):
        braze.answer_instead("/users/track", json.dumps({"message": BODY_MARKER}), status=503, count=2)
        project.configure(braze.url, brevo.url)
        run = project.cli("--log-format", log_format, "export", "to-braze")
    assert run.exit_code == 0, run
    lines = [line for line in run.stderr.splitlines() if "http.retry" in line]
    assert len(lines) == 2, run  # two 503s, two retries, the third attempt went through
    if log_format == "json":
        retries = [json.loads(line) for line in lines]
        for number, retry in enumerate(retries, 1):
            assert retry["level"] == "info"
            assert (retry["attempt"], retry["max_attempts"], retry["cause"]) == (number, 8, "HTTP 503")
            assert retry["method"] == "POST" and retry["path"] == "/users/track"
            assert 0 < retry["wait"] <= 0.5 * 2 ** (number - 1)  # backoff with jitter, below its ceiling
    else:
        for number, line in enumerate(lines, 1):
            assert "info" in line and f"attempt={number}" in line and "max_attempts=8" in line, line
            assert "cause='HTTP 503'" in line and "wait=" in line, line
    assert BODY_MARKER not in run.stderr and BRAZE_KEY not in run.output
    assert "Bearer" not in run.stderr and "Authorization" not in run.stderr
