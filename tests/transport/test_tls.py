"""TLS, always verified: both sandboxes over HTTPS with a private CA (trustme), mutual TLS, the sandbox command.

The CA is trusted through ``SSL_CERT_FILE`` or a connection's ``network.tls.ca_file``; a
certificate nobody vouches for fails the run at once (no retry can help), naming the host.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator

import pytest
from yarl import URL

from segship.transport import tls_refusal

from .conftest import BRAZE_KEY, LIST_ID, https_sandboxes


def assert_both_exported(sandboxes, run, rows: int = 20) -> None:
    assert run.exit_code == 0, run
    assert len(sandboxes.braze.users()) == rows
    assert len(sandboxes.brevo.list_contacts(LIST_ID)) == rows


@pytest.mark.parametrize("trust", ["SSL_CERT_FILE", "network.tls.ca_file"])
def test_both_destinations_over_https_with_a_private_ca(project, sandboxes, pki, trust):
    if trust == "SSL_CERT_FILE":
        project.configure(sandboxes.braze.url, sandboxes.brevo.url)
        run = project.cli("export", "--all", env={"SSL_CERT_FILE": str(pki.ca)})
    else:
        project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"tls: {{ca_file: {pki.ca}}}")
        run = project.cli("export", "--all")
    assert sandboxes.braze.url.startswith("https://") and sandboxes.brevo.url.startswith("https://")
    assert_both_exported(sandboxes, run)


@pytest.mark.parametrize("trust", ["the system's CAs", "another CA"])
def test_a_certificate_nobody_trusted_fails_at_once_naming_the_host(project, sandboxes, pki, trust):
    network = f"tls: {{ca_file: {pki.other_ca}}}" if trust == "another CA" else ""
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=network)
    run = project.cli("export", "--all")
    assert run.exit_code == 1, run
    failures = [line for line in run.stdout.splitlines() if "certificate verify failed for 127.0.0.1" in line]
    assert len(failures) == 2, run  # one line for each export
    assert "Traceback" not in run.output
    assert run.seconds < 20  # not retried: eight attempts with backoff take about a minute
    assert sandboxes.braze.stats().get("requests", 0) == sandboxes.brevo.stats().get("requests", 0) == 0


def test_mutual_tls_is_required_by_the_sandboxes_and_honoured(project, pki):
    with https_sandboxes(pki.server_context(client_certificate_required=True)) as sandboxes:
        project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"""
            tls: {{ca_file: {pki.ca}}}
            retries: {{max_attempts: 2}}
        """)
        refused = project.cli("export", "--all")
        assert refused.exit_code == 1, refused
        assert "Traceback" not in refused.output
        assert not sandboxes.braze.users() and not sandboxes.brevo.list_contacts(LIST_ID)

        # the key by reference: a file's content for Braze's connection, a variable's for Brevo's
        project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"""
            tls: {{ca_file: {pki.ca}, client_cert: {pki.client_cert}, client_key: "${{file:{pki.client_key}}}"}}
        """, brevo_network=f"""
            tls: {{ca_file: {pki.ca}, client_cert: {pki.client_cert}, client_key: "${{env:SEGSHIP_CLIENT_KEY}}"}}
        """)
        run = project.cli("export", "--all", env={"SEGSHIP_CLIENT_KEY": pki.client_key.read_text()})
        assert_both_exported(sandboxes, run)
        assert "PRIVATE KEY" not in run.output


@pytest.fixture
def certificate_asking_server(pki) -> Iterator[str]:
    """OpenSSL's own server, which requires a client certificate and sends TLS 1.3's "certificate
    required" alert when it gets none, as nginx or envoy do (asyncio's server, the sandboxes', closes
    the connection without it); its URL."""
    server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-www", "-Verify", "1",
                               "-verify_return_error", "-cert", str(pki.server), "-key", str(pki.server_key),
                               "-CAfile", str(pki.ca)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        accepting = next(line for line in server.stdout if line.startswith("ACCEPT"))  # ACCEPT 127.0.0.1:PORT
        yield "https://" + accepting.split()[-1]
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_a_server_asking_for_a_client_certificate_fails_the_run_at_once_saying_so(project, pki,
                                                                                   certificate_asking_server):
    url = certificate_asking_server
    project.configure(url, url, network=f"tls: {{ca_file: {pki.ca}}}")
    run = project.cli("connections", "test", "braze")
    assert run.exit_code == 1, run
    assert "the server asks for a client certificate, see network.tls.client_cert" in run.output
    assert run.seconds < 20 and "Traceback" not in run.output  # not retried


async def test_a_connection_that_sends_nothing_finds_what_the_server_refuses(pki, certificate_asking_server,
                                                                             sandboxes):
    """The transport asks so when a request over TLS breaks as a dropped connection: a TLS 1.3 server's
    "certificate required" alert races the request, and a server that closes with the request unread
    resets the connection, losing the alert."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    refusal = await tls_refusal(URL(certificate_asking_server), context, 5)
    assert refusal is not None and "CERTIFICATE_REQUIRED" in refusal
    assert "the server asks for a client certificate, see network.tls.client_cert" in refusal
    assert await tls_refusal(URL(sandboxes.braze.url), context, 5) is None  # waiting for a request: no refusal


def test_a_client_key_that_does_not_fit_its_certificate_is_an_error_naming_the_setting(project, sandboxes, pki,
                                                                                      tmp_path):
    other_key = tmp_path / "other.key"
    other_key.write_text(pki.server_key.read_text())
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"""
        tls: {{client_cert: {pki.client_cert}, client_key: "${{file:{other_key}}}"}}
    """)
    run = project.cli("export", "to-braze")
    assert run.exit_code == 2, run
    assert "segship.yaml:" in run.stdout and "connections.braze.network.tls.client_key: can't load the client " \
                                              "certificate" in run.stdout
    assert "PRIVATE KEY" not in run.output and "Traceback" not in run.output


def test_an_unreadable_ca_file_is_an_error_naming_the_setting(project, sandboxes):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network="tls: {ca_file: certs/missing.pem}")
    run = project.cli("connections", "test", "braze")
    assert run.exit_code == 2, run
    assert f"connections.braze.network.tls.ca_file: can't load CA certificates from {project.root}/certs/missing.pem" \
        in run.output


@pytest.mark.parametrize("plugin", ["braze", "sendinblue"])
def test_the_sandbox_command_serves_https_with_a_given_certificate(project, pki, plugin):
    sandbox = project.start("sandbox", plugin, "--port", "0", "--api-key", BRAZE_KEY, "--tls-cert", str(pki.server),
                            "--tls-key", str(pki.server_key))
    try:
        url = sandbox.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:"), url
        project.configure(url, url, network=f"tls: {{ca_file: {pki.ca}}}")
        connection = "braze" if plugin == "braze" else "brevo"
        run = project.cli("connections", "test", connection, env={"BREVO_API_KEY": BRAZE_KEY})
        assert run.exit_code == 0, run
        assert f"{connection}: ok" in run.stdout
    finally:
        sandbox.terminate()
        sandbox.communicate(timeout=10)
