"""HttpClient over its transport (aiohttp's client), against small real servers on 127.0.0.1 (random ports).

aiohttp servers where a web framework's habits are the point (keep-alive, chunked and
compressed answers, Connection: close, HEAD, redirects); raw asyncio servers where the test
needs bytes no framework sends (a kept-alive connection closed without an answer, a body that
runs until the server closes). TLS with a certificate made for the test by ``openssl``.
Proxies, private CAs and hostile answers are in ``tests/transport/``.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from segship.http import HttpClient, RequestInterrupted, RetriesExhausted, RetryPolicy
from segship.ratelimit import RateLimit

SECRET = "sk-test-0123456789abcdef"  # stands for an API key: must never show in an error
ONCE = RetryPolicy(attempts=1)
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)


def client(base_url: str, *, retry: RetryPolicy = ONCE, concurrency: int = 4, timeout: float = 10.0,
           headers: dict[str, str] | None = None) -> HttpClient:
    return HttpClient(base_url, headers or {"Authorization": f"Bearer {SECRET}"}, rate_limit=RateLimit(10_000, 1),
                      concurrency=concurrency, retry=retry, timeout=timeout)


@asynccontextmanager
async def opened(http: HttpClient) -> AsyncIterator[HttpClient]:
    """The client, closed when the block ends (its stats stay readable)."""
    try:
        yield http
    finally:
        await http.close()


@asynccontextmanager
async def serve(routes: list[web.RouteDef], *, ssl_context: ssl.SSLContext | None = None,
                host: str = "127.0.0.1") -> AsyncIterator[tuple[str, list[int]]]:
    """An aiohttp server; yields its base URL and the client port of every request it got (one per connection)."""
    peers: list[int] = []

    @web.middleware
    async def record_peer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        peers.append(request.transport.get_extra_info("peername")[1])
        return await handler(request)

    app = web.Application(middlewares=[record_peer])
    app.add_routes(routes)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if ssl_context else 'http'}://{host}:{port}", peers
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
                     ) -> AsyncIterator[str]:
    """An asyncio server that hands each connection (and its number, from 0) to ``handle``."""
    count = 0

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        number, count = count, count + 1
        try:
            await handle(reader, writer, number)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed the connection
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head and body (the client always sends Content-Length with a body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


# -- connections -------------------------------------------------------------------------------------

async def test_requests_reuse_one_kept_alive_connection() -> None:
    async def length(request: web.Request) -> web.Response:
        return web.json_response({"got": len(await request.read())})

    async with serve([web.post("/track", length)]) as (url, peers):
        async with opened(client(url)) as http:
            for _ in range(5):
                response = await http.request("POST", "/track", json={"attributes": [1, 2, 3]})
                assert response.status == 200 and response.json() == {"got": 22}
    assert len(peers) == 5 and len(set(peers)) == 1


async def test_no_more_connections_than_the_concurrency_and_one_request_at_a_time_on_each() -> None:
    in_flight = most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response({})

    async with serve([web.get("/slow", slow)]) as (url, peers):
        async with opened(client(url, concurrency=3)) as http:
            answers = await asyncio.gather(*(http.request("GET", "/slow") for _ in range(20)))
    assert [a.status for a in answers] == [200] * 20
    assert most == 3 and len(set(peers)) == 3


async def test_a_kept_alive_connection_the_server_closed_is_replaced() -> None:
    # the server answers one request per connection, then closes the connection unanswered when
    # the next request comes: what a server does that closed an idle connection as it was reused
    async def one_answer_per_connection(reader, writer, number: int) -> None:
        await read_request(reader)
        writer.write(OK_ANSWER)
        await writer.drain()
        await read_request(reader)

    async with raw_server(one_answer_per_connection) as url:
        async with opened(client(url, retry=FAST)) as http:
            for _ in range(4):
                assert (await http.request("POST", "/track", json={})).status == 200
    # each closed connection costs one retry, on a new connection: a POST is not resent blindly
    assert http.stats.connection_errors == http.stats.retries == 3


async def test_a_new_connection_closed_unanswered_is_a_connection_error_with_backoff() -> None:
    async def never_answer(reader, writer, number: int) -> None:
        await read_request(reader)

    async with raw_server(never_answer) as url:
        async with opened(client(url, retry=FAST)) as http:
            with pytest.raises(RetriesExhausted, match="closed the connection") as raised:
                await http.request("POST", "/track", json={})
    assert raised.value.last_status is None
    assert http.stats.connection_errors == 3 and http.stats.retries == 2


async def test_connection_close_from_the_server_is_honoured() -> None:
    async def closing(request: web.Request) -> web.Response:
        response = web.json_response({"n": 1})
        response.force_close()
        return response

    async with serve([web.get("/once", closing)]) as (url, peers):
        async with opened(client(url)) as http:
            for _ in range(3):
                response = await http.request("GET", "/once")
                assert response.status == 200 and response.headers["connection"].lower() == "close"
    assert len(set(peers)) == 3 and http.stats.connection_errors == 0


async def test_an_answer_that_times_out_is_a_connection_error_and_its_connection_is_not_reused() -> None:
    async def slow_first(request: web.Request) -> web.Response:
        if request.query.get("slow"):
            await asyncio.sleep(1)  # past the client's 0.3 s; not longer, the server's shutdown waits for it
        return web.json_response({})

    async with serve([web.get("/wait", slow_first)]) as (url, peers):
        async with opened(client(url, timeout=0.3)) as http:
            started = time.monotonic()
            with pytest.raises(RetriesExhausted, match=r"no complete answer .* within 0.3 s"):
                await http.request("GET", "/wait", params={"slow": "1"})
            assert time.monotonic() - started < 0.9
            assert (await http.request("GET", "/wait")).status == 200
    assert http.stats.connection_errors == 1
    assert len(set(peers)) == 2  # the timed-out connection was dropped, not given the next request


async def test_an_unreachable_server_is_a_connection_error() -> None:
    async with raw_server(lambda reader, writer, number: asyncio.sleep(0)) as url:
        pass  # the port is free again: nothing listens there
    async with opened(client(url, retry=FAST)) as http:
        with pytest.raises(RetriesExhausted, match="could not connect to http://127.0.0.1"):
            await http.request("GET", "/anything")
    assert http.stats.connection_errors == 3


# -- answers --------------------------------------------------------------------------------------

async def test_chunked_and_compressed_answers_are_read_whole_and_decoded() -> None:
    document = {"rows": [{"email": f"user{n}@example.com"} for n in range(2000)]}

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        if request.query.get("coding"):
            response.enable_compression(web.ContentCoding(request.query["coding"]))  # even unasked
        await response.prepare(request)
        text = web.json_response(document).body
        for start in range(0, len(text), 1000):
            await response.write(text[start:start + 1000])
        await response.write_eof()
        return response

    async def deflated(request: web.Request) -> web.Response:
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # raw deflate, as some servers send it
        body = raw.compress(b'{"raw":true}') + raw.flush()
        return web.Response(body=body, headers={"Content-Encoding": "deflate", "Content-Type": "application/json"})

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"gzip":true}'), headers={"Content-Encoding": "gzip"})

    async with serve([web.get("/chunked", chunked), web.get("/deflated", deflated),
                      web.get("/gzipped", gzipped)]) as (url, peers):
        async with opened(client(url)) as http:
            for coding in ("", "gzip", "deflate"):
                response = await http.request("GET", "/chunked", params={"coding": coding} if coding else None)
                assert response.headers.get("Transfer-Encoding") == "chunked"
                assert response.json() == document, coding
            assert (await http.request("GET", "/deflated")).json() == {"raw": True}
            assert (await http.request("GET", "/gzipped")).json() == {"gzip": True}
    assert len(set(peers)) == 1  # every answer was framed right: one connection served them all


async def test_an_answer_without_length_runs_until_the_server_closes() -> None:
    async def until_close(reader, writer, number: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n\r\nemail\r\na@example.com\r\n")
        await writer.drain()

    async with raw_server(until_close) as url:
        async with opened(client(url)) as http:
            for _ in range(2):  # the second on a new connection: the first ended with the answer
                response = await http.request("GET", "/report.csv")
                assert response.status == 200 and response.body == b"email\r\na@example.com\r\n"


async def test_a_connection_that_sent_more_than_the_answer_is_not_reused() -> None:
    connections = 0

    async def answer_twice(reader, writer, number: int) -> None:
        nonlocal connections
        connections += 1
        while True:
            await read_request(reader)
            writer.write(OK_ANSWER + OK_ANSWER)
            await writer.drain()

    async with raw_server(answer_twice) as url:
        async with opened(client(url)) as http:
            for _ in range(3):
                assert (await http.request("GET", "/track")).json() == {"ok": True}
    assert connections == 3 and http.stats.connection_errors == 0


async def test_answer_headers_are_case_insensitive() -> None:
    async def limited(request: web.Request) -> web.Response:
        return web.json_response({}, headers={"retry-after": "0", "X-RateLimit-Reset": "12"})

    async with serve([web.get("/limited", limited)]) as (url, peers):
        async with opened(client(url)) as http:
            response = await http.request("GET", "/limited")
    assert response.status == 200 and response.headers.get("Retry-After") == "0"
    assert response.headers["x-ratelimit-reset"] == "12"


async def test_a_redirect_is_an_error_naming_where_it_points_and_the_key_never_follows_it() -> None:
    keys_elsewhere: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        keys_elsewhere.append(request.headers.get("Authorization"))
        return web.json_response({})

    async with serve([web.route("*", "/steal", elsewhere)], host="localhost") as (other, _):
        async def moved(request: web.Request) -> web.Response:
            return web.Response(status=int(request.query["status"]),
                                headers={"Location": f"{other}/steal?signature=abc"})

        async def moved_here(request: web.Request) -> web.Response:
            return web.Response(status=301, headers={"Location": "/elsewhere"})

        async with serve([web.route("*", "/moved", moved), web.get("/here", moved_here)]) as (url, peers):
            async with opened(client(url, retry=FAST)) as http:
                for status in (301, 302, 303, 307, 308):
                    with pytest.raises(RetriesExhausted, match=f"HTTP {status}, a redirect to {other}") as raised:
                        await http.request("POST", "/moved", json={}, params={"status": str(status)})
                    assert raised.value.last_status == status and "signature" not in str(raised.value)
                with pytest.raises(RetriesExhausted, match=f"a redirect to {url};"):
                    await http.request("GET", "/here")
    assert keys_elsewhere == [] and len(peers) == 6  # each answered once: not followed, not retried
    assert http.stats.requests == 6 and http.stats.retries == 0


async def test_an_exhausted_request_is_named_without_its_query() -> None:
    """A signed link (Brevo's report) carries its signature in the query: errors never repeat it."""
    async def failing(request: web.Request) -> web.Response:
        return web.Response(status=503)

    async with serve([web.get("/report.csv", failing)]) as (url, _):
        async with opened(client(url, retry=FAST)) as http:
            with pytest.raises(RetriesExhausted, match=r"GET /report.csv failed after 3 attempts \(HTTP 503\)") as raised:
                await http.request("GET", "/report.csv?X-Signature=s3cr3t")
    assert "s3cr3t" not in str(raised.value)


async def test_a_head_request_is_answered_without_a_body() -> None:
    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Content-Length": "1000", "Content-Type": "text/csv"})

    async with serve([web.head("/report.csv", head), web.get("/ok", ok)]) as (url, _):
        async with opened(client(url)) as http:
            response = await http.request("HEAD", "/report.csv")
            assert response.status == 200 and response.body == b"" and response.headers["Content-Length"] == "1000"
            assert (await http.request("GET", "/ok")).status == 200


# -- requests -------------------------------------------------------------------------------------

async def test_a_pre_encoded_body_and_params_are_sent_as_given() -> None:
    seen: list[tuple[str, bytes, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.raw_path, await request.read(), request.headers["Authorization"]))
        return web.json_response({})

    async with serve([web.post("/track", echo)]) as (url, _):
        async with opened(client(url)) as http:
            body = b'{"attributes":[{"external_id":"1"}]}'
            await http.request("POST", "/track", body=memoryview(body))
            await http.request("POST", "/track?a=1", body=bytearray(body), params={"q": "a b&c", "é": "ü"})
            with pytest.raises(TypeError):
                await http.request("POST", "/track", body=body, json={})
    assert seen == [("/track", body, f"Bearer {SECRET}"),
                    ("/track?a=1&q=a+b%26c&%C3%A9=%C3%BC", body, f"Bearer {SECRET}")]
    assert http.stats.bytes_sent == 2 * len(body) and http.stats.requests == 2


async def test_absolute_urls_reach_another_server_without_the_base_one() -> None:
    async def report(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.host} {request.headers.get('api-key')}")

    async with serve([web.get("/report.csv", report)]) as (first, _), \
            serve([web.get("/report.csv", report)], host="localhost") as (second, _):
        async with opened(HttpClient("", {}, rate_limit=RateLimit(10, 1.0), concurrency=1, retry=ONCE)) as http:
            for url in (first, second, first):
                response = await http.request("GET", f"{url}/report.csv")
                assert response.body.decode() == f"{url.split('//')[1]} None"


async def test_a_requests_own_headers_go_with_it_beside_the_clients() -> None:
    seen: list[tuple[str | None, str | None]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Authorization"), request.headers.get("X-Signature")))
        return web.json_response({})

    async with serve([web.post("/members", echo)]) as (url, _):
        async with opened(client(url)) as http:
            await http.request("POST", "/members", body=b"{}", headers={"X-Signature": "sha256=ab"})
            await http.request("POST", "/members", body=b"{}")
            with pytest.raises(ValueError) as raised:
                await http.request("POST", "/members", body=b"{}", headers={"X-Signature": f"{SECRET}\r\nX: 1"})
    assert SECRET not in str(raised.value)
    assert seen == [(f"Bearer {SECRET}", "sha256=ab"), (f"Bearer {SECRET}", None)]


def test_a_header_with_a_line_break_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValueError) as raised:
        client("http://127.0.0.1:1", headers={"api-key": f"{SECRET}\r\nX-Injected: 1"})
    assert SECRET not in str(raised.value)


async def test_connection_errors_carry_no_header_or_body() -> None:
    async def never_answer(reader, writer, number: int) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up and closes

    problems: list[BaseException] = []
    async with raw_server(never_answer) as url:
        for base, timeout in ((url, 0.2), ("http://127.0.0.1:1", 5.0)):  # a timeout, a refused connection
            async with opened(client(base, timeout=timeout, retry=FAST)) as http:
                try:
                    await http.request("POST", "/track", json={"key": SECRET})
                except RetriesExhausted as exc:
                    problems.append(exc)
    assert len(problems) == 2
    for problem in problems:
        text = "".join(traceback.format_exception(problem))
        assert SECRET not in text and "Bearer" not in text


# -- TLS --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for localhost (the key beside it, in one PEM file)."""
    path = tmp_path_factory.mktemp("tls") / "localhost.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(path), "-out", str(path)],
                   check=True, capture_output=True, timeout=60)
    return path


async def test_https_verifies_the_certificate_against_the_trusted_ones(certificate: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate)
    async with serve([web.get("/ok", ok)], ssl_context=server_context,
                     host="localhost") as (url, peers):
        async with opened(client(url, retry=FAST)) as untrusting:
            with pytest.raises(RetriesExhausted, match="could not connect to https://localhost"):
                await untrusting.request("GET", "/ok")
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # what OpenSSL trusts, as on a host with that CA
        async with opened(client(url)) as trusting:
            for _ in range(2):
                assert (await trusting.request("GET", "/ok")).json() == {"ok": True}
    assert len(set(peers)) == 1  # kept alive over TLS too


# -- stopping ---------------------------------------------------------------------------------------

async def test_a_stop_ends_every_wait_at_once() -> None:
    async def throttled(request: web.Request) -> web.Response:
        return web.json_response({}, status=429, headers={"Retry-After": "100"})

    stop = asyncio.Event()
    async with serve([web.post("/track", throttled)]) as (url, peers):
        http = HttpClient(url, {}, rate_limit=RateLimit(10, 1.0), retry=RetryPolicy(attempts=3), stop=stop)
        async with opened(http):
            waiting = asyncio.ensure_future(http.request("POST", "/track", json={}))
            await asyncio.sleep(0.3)
            assert not waiting.done()  # waiting the 100 s it was asked to
            started = time.monotonic()
            stop.set()
            with pytest.raises(RequestInterrupted):
                await waiting
            assert time.monotonic() - started < 0.5
            with pytest.raises(RequestInterrupted):  # a request that must wait for its pace is not sent either
                await http.request("POST", "/track", json={})
    assert len(peers) == 1
