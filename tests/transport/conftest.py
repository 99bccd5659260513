"""Fixtures of the transport's tests: where company networks take segship, on 127.0.0.1.

- a private CA and its certificates (``trustme``): the server's for 127.0.0.1, a client's,
  and a CA nobody uses, as PEM files;
- both sandboxes served over HTTPS with that CA, optionally asking for a client certificate;
- a real forward proxy (``proxy.py`` from PyPI, basic auth, CONNECT), a child process;
- :class:`RawServer`: a server in a thread of its own that answers whatever bytes a test
  writes (hostile answers), so the real CLI or an HttpClient can be pointed at it;
- :class:`Project`: a config for both destinations whose ``network:`` block a test writes,
  and the real CLI, run in an environment without proxy or CA variables unless given.
"""

from __future__ import annotations

import asyncio
import csv
import os
import ssl
import subprocess
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from segship_braze.sandbox import BrazeSandbox
from segship_braze.sandbox import RunningBrazeSandbox as BrazeHandle
from segship_sendinblue.sandbox import BrevoSandbox
from segship_sendinblue.sandbox import RunningBrevoSandbox as BrevoHandle

from ..conftest import CliResult, clean_env, segship_script
from ..process_memory import high_water_kb

BRAZE_KEY = "braze-transport-key-0123456789abcdef"
BREVO_KEY = "xkeysib-transport-0123456789abcdef"
PROXY_USER, PROXY_PASSWORD = "segship", "pr0xy-Passw0rd-9f3c"
LIST_ID = 3
#: what in the environment would change where requests go or whom they trust
NETWORK_VARIABLES = ("https_proxy", "http_proxy", "no_proxy", "all_proxy", "ssl_cert_file", "ssl_cert_dir")


# -- certificates ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    """PEM files: the CA, the server's certificate (key included), a client's certificate and key, another CA."""

    ca: Path
    server: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def server_context(self, *, client_certificate_required: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server, self.server_key)
        if client_certificate_required:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.ca)
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    client = authority.issue_cert("segship-client.example.com")
    paths = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem",
                folder / "client.key", folder / "other-ca.pem")
    authority.cert_pem.write_to_path(str(paths.ca))
    for blob in server.cert_chain_pems:
        blob.write_to_path(str(paths.server), append=True)
    server.private_key_pem.write_to_path(str(paths.server_key))
    for blob in client.cert_chain_pems:
        blob.write_to_path(str(paths.client_cert), append=True)
    client.private_key_pem.write_to_path(str(paths.client_key))
    trustme.CA().cert_pem.write_to_path(str(paths.other_ca))
    return paths


# -- sandboxes over HTTPS ------------------------------------------------------------------------------

@dataclass
class Sandboxes:
    braze: BrazeHandle
    brevo: BrevoHandle


@contextmanager
def https_sandboxes(context: ssl.SSLContext) -> Iterator[Sandboxes]:
    """Both sandboxes on 127.0.0.1 over HTTPS with ``context``, without rate limits."""
    with BrazeHandle(BrazeSandbox(api_key=BRAZE_KEY), ssl_context=context) as braze, \
            BrevoHandle(BrevoSandbox(api_key=BREVO_KEY, process_delay=0.01), ssl_context=context) as brevo:
        yield Sandboxes(braze, brevo)


@pytest.fixture
def sandboxes(pki: Pki) -> Iterator[Sandboxes]:
    """Both sandboxes over HTTPS with a certificate of the private CA."""
    with https_sandboxes(pki.server_context()) as running:
        yield running


# -- a forward proxy ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ForwardProxy:
    port: int
    log: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, password: str = PROXY_PASSWORD) -> str:
        return f"http://{PROXY_USER}:{password}@{self.address}"

    def tunnels(self) -> list[str]:
        """The ``host:port`` of each CONNECT the proxy served."""
        return [line.split(" CONNECT ", 1)[1].split(" ", 1)[0] for line in self.log.read_text().splitlines()
                if " CONNECT " in line]


@pytest.fixture(scope="session")
def forward_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    """proxy.py on a free port of 127.0.0.1, asking for basic auth; stopped after the session."""
    folder = tmp_path_factory.mktemp("proxy")
    port_file, log = folder / "port", folder / "proxy.log"
    process = subprocess.Popen(
        [os.fspath(segship_script().parent / "python"), "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
         "--port-file", str(port_file), "--basic-auth", f"{PROXY_USER}:{PROXY_PASSWORD}", "--num-workers", "1",
         "--num-acceptors", "1", "--log-file", str(log), "--log-level", "INFO"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert process.poll() is None and time.monotonic() < deadline, "proxy.py did not start"
            time.sleep(0.05)
        yield ForwardProxy(int(port_file.read_text().split()[0]), log)
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- hostile servers -------------------------------------------------------------------------------------

Answer = Callable[[asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """An asyncio server on 127.0.0.1 in a thread of its own: each connection's first request is
    read, then ``answer(writer, number)`` (``number`` counts requests from 0) writes whatever it
    likes; the connection is closed after it. ``with RawServer(answer) as server: server.url``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.heads: list[bytes] = []  # each request's line and headers, as sent
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="raw-server", daemon=True)
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            number, self.requests = self.requests, self.requests + 1
            await self.answer(writer, number)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up on the answer, as it should
        except asyncio.CancelledError:
            pass  # the server is stopping: an answer still dripping to a client that left ends here
        finally:
            writer.close()

    def __enter__(self) -> RawServer:
        self._thread.start()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()  # answers still dripping to a client that left

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def answer_with(head: bytes, body: bytes = b"") -> Answer:
    """A fixed answer: ``head`` (status line and headers, without the blank line) and ``body``."""

    async def answer(writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(head + b"\r\n" + (b"Content-Length: %d\r\n" % len(body) if b"ength:" not in head else b"")
                     + b"\r\n" + body)

    return answer


# -- a project and the CLI -------------------------------------------------------------------------------

CONFIG = """
version: 1
sources:
  crm: {{type: duckdb, path: profiles.csv}}
segments:
  everyone: {{source: crm, key: customer_id, sql: "SELECT * FROM crm"}}
connections:
  braze:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings: {{api_key: "${{env:BRAZE_API_KEY}}", rest_endpoint: "${{env:BRAZE_URL}}"}}
{braze_network}
  brevo:
    type: brevo
    display_name: Brevo
    data_privacy_consent: true
    settings: {{api_key: "${{env:BREVO_API_KEY}}", base_url: "${{env:BREVO_URL}}", process_poll_interval: 0.05}}
{brevo_network}
exports:
  to-braze:
    display_name: To Braze
    connection: braze
    segments: [everyone]
    settings: {{segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}}
    mapping: {{customer_id: customer_id, email: email}}
  to-brevo:
    display_name: To Brevo
    connection: brevo
    segments: [everyone]
    settings: {{list_id: {list_id}}}
    mapping: {{email: email}}
"""


@dataclass
class Run(CliResult):
    """One CLI run, with its wall seconds and its own peak RSS (MB; 0 where /proc doesn't say)."""

    seconds: float = 0.0
    peak_rss_mb: float = 0.0


@dataclass
class Project:
    """A config folder in tmp for both destinations, its profiles, and the real CLI."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def configure(self, braze_url: str, brevo_url: str, *, network: str = "", brevo_network: str | None = None,
                  rows: int = 20) -> None:
        """Point the connections at these URLs; ``network`` is YAML below ``network:`` (both connections
        unless ``brevo_network`` says otherwise for Brevo's)."""

        def block(text: str) -> str:
            return "    network:\n" + textwrap.indent(textwrap.dedent(text).strip(), " " * 6) if text.strip() else ""

        (self.root / "segship.yaml").write_text(CONFIG.format(
            braze_network=block(network), brevo_network=block(network if brevo_network is None else brevo_network),
            list_id=LIST_ID))
        with (self.root / "profiles.csv").open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["customer_id", "email"])
            writer.writerows((f"C{i:04d}", f"user{i}@example.com") for i in range(1, rows + 1))
        self.env.update({"BRAZE_URL": braze_url, "BREVO_URL": brevo_url, "BRAZE_API_KEY": BRAZE_KEY,
                         "BREVO_API_KEY": BREVO_KEY})

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {name: value for name, value in clean_env().items() if name.lower() not in NETWORK_VARIABLES}
        return {**env, **self.env, **(extra or {})}

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([str(segship_script()), *args], cwd=self.root, env=self.environment(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def cli(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> Run:
        """``segship ARGS``, watched until it exits for its own peak RSS.

        The peak is the process's ``VmHWM`` (its memory's high-water mark since ``exec``), read
        as it runs: ``ru_maxrss`` would also count the test process's memory, which a child
        shares until it execs."""
        stdout, stderr = self.root / "stdout.txt", self.root / "stderr.txt"
        started = time.monotonic()
        peak_kb = 0
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen([str(segship_script()), *args], cwd=self.root, env=self.environment(env),
                                       stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            while process.poll() is None:
                peak_kb = max(peak_kb, high_water_kb(process.pid))
                if time.monotonic() - started > timeout:
                    process.kill()
                    process.wait()
                    raise TimeoutError(f"segship {' '.join(args)} ran over {timeout:g} s: {stderr.read_text()}")
                time.sleep(0.01)
        return Run(list(args), process.returncode, stdout.read_text(), stderr.read_text(),
                   time.monotonic() - started, peak_kb / 1024)



@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)
