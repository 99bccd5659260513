"""Exports through a real forward proxy (proxy.py, basic auth) to both sandboxes over HTTPS.

The proxy comes from ``HTTPS_PROXY`` or from a connection's ``network.proxy``; ``NO_PROXY``
bypasses the environment's; a proxy that refuses the credentials or is down fails the run
with one line naming the proxy, never its password.
"""

from __future__ import annotations

import base64
import socket

import pytest

from segship.http import HttpClient, RetriesExhausted, RetryPolicy
from segship.network import NetworkSettings, Proxy
from segship.ratelimit import RateLimit

from .conftest import BRAZE_KEY, BREVO_KEY, LIST_ID, PROXY_PASSWORD, PROXY_USER, RawServer, answer_with


def dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_both_exported(project, sandboxes, run, rows: int = 20) -> None:
    assert run.exit_code == 0, run
    assert len(sandboxes.braze.users()) == rows
    assert len(sandboxes.brevo.list_contacts(LIST_ID)) == rows


def test_an_export_goes_through_the_environments_proxy_to_both_destinations_over_https(
        project, sandboxes, forward_proxy, pki):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url)
    before = len(forward_proxy.tunnels())
    run = project.cli("export", "--all", env={"HTTPS_PROXY": forward_proxy.url(), "SSL_CERT_FILE": str(pki.ca)})
    assert_both_exported(project, sandboxes, run)
    tunnels = forward_proxy.tunnels()[before:]
    braze_origin, brevo_origin = (url.split("//")[1].split("/")[0] for url in (sandboxes.braze.url, sandboxes.brevo.url))
    assert {braze_origin, brevo_origin} <= set(tunnels)  # CONNECT to each: the requests went through it
    assert PROXY_PASSWORD not in run.output


def test_a_connections_proxy_overrides_the_environment_and_is_given_by_reference(
        project, sandboxes, forward_proxy, pki):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"""
        proxy: http://{PROXY_USER}:${{env:PROXY_PASSWORD}}@{forward_proxy.address}
        tls: {{ca_file: {pki.ca}}}
    """)
    before = len(forward_proxy.tunnels())
    # the environment's proxy is down and NO_PROXY names the sandboxes: the connection's wins anyway
    run = project.cli("export", "--all", env={"PROXY_PASSWORD": PROXY_PASSWORD, "NO_PROXY": "127.0.0.1",
                                              "HTTPS_PROXY": f"http://127.0.0.1:{dead_port()}"})
    assert_both_exported(project, sandboxes, run)
    assert len(forward_proxy.tunnels()) - before >= 2


def test_no_proxy_bypasses_the_environments_proxy(project, sandboxes, pki):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"tls: {{ca_file: {pki.ca}}}")
    run = project.cli("export", "--all", env={"HTTPS_PROXY": f"http://user:pw-not-used@127.0.0.1:{dead_port()}",
                                              "NO_PROXY": "localhost,127.0.0.1"})
    assert_both_exported(project, sandboxes, run)


def test_a_proxy_refusing_the_credentials_fails_at_once_naming_it_never_its_password(
        project, sandboxes, forward_proxy, pki):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"tls: {{ca_file: {pki.ca}}}")
    wrong = "wr0ng-Passw0rd-77aa"
    run = project.cli("export", "to-braze", env={"HTTPS_PROXY": forward_proxy.url(wrong)})
    assert run.exit_code == 1, run
    lines = [line for line in run.output.splitlines() if forward_proxy.address in line]
    assert len(lines) == 1, run  # one line says it
    assert f"the proxy {forward_proxy.address} refused" in lines[0] and "HTTP 407" in lines[0]
    assert wrong not in run.output and "Traceback" not in run.output
    assert run.seconds < 20  # 407 is not retried (eight attempts with backoff would take a minute)
    assert sandboxes.braze.stats().get("requests", 0) == 0


def test_a_proxy_that_is_down_fails_the_run_naming_it_never_its_password(project, sandboxes, pki):
    project.configure(sandboxes.braze.url, sandboxes.brevo.url, network=f"""
        tls: {{ca_file: {pki.ca}}}
        retries: {{max_attempts: 2}}
    """)
    port = dead_port()
    run = project.cli("export", "to-brevo", env={"HTTPS_PROXY": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{port}"})
    assert run.exit_code == 1, run
    assert f"could not connect to the proxy 127.0.0.1:{port}" in run.stdout
    assert PROXY_PASSWORD not in run.output and "Traceback" not in run.output


async def test_the_proxy_gets_its_own_credentials_and_never_the_destinations_key():
    refuse = answer_with(b"HTTP/1.1 407 Proxy Authentication Required")
    with RawServer(refuse) as proxy:
        network = NetworkSettings(proxy=Proxy.parse(f"http://{PROXY_USER}:{PROXY_PASSWORD}@{proxy.url[7:]}"))
        for headers in ({"Authorization": f"Bearer {BRAZE_KEY}"}, {"api-key": BREVO_KEY}):
            http = HttpClient("https://braze.invalid", headers, rate_limit=RateLimit(10, 1.0), network=network,
                              retry=RetryPolicy(attempts=3))
            try:
                with pytest.raises(RetriesExhausted, match=f"the proxy {proxy.url[7:]} refused .*HTTP 407") as raised:
                    await http.request("POST", "/users/track", json={})
            finally:
                await http.close()
            assert PROXY_PASSWORD not in str(raised.value) and http.stats.requests == 1  # not retried
    credentials = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode())
    assert [head.split(b"\r\n")[0] for head in proxy.heads] == [b"CONNECT braze.invalid:443 HTTP/1.1"] * 2
    for head in proxy.heads:
        assert b"Proxy-Authorization: Basic " + credentials in head
        assert BRAZE_KEY.encode() not in head and BREVO_KEY.encode() not in head
