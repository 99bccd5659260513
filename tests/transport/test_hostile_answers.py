"""Hostile answers, each from a small server on 127.0.0.1: none hangs past its timeout, none grows
memory past a cap, none is retried when retrying can't help, none prints a traceback or a key,
and no member is acknowledged without an answer.

HttpClient meets each one directly (memory traced with tracemalloc); then the real CLI exports
to Braze through each, with its peak RSS measured and state checked.
"""

from __future__ import annotations

import asyncio
import socket
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from segship.http import HttpClient, RateLimitHeaders, RetriesExhausted, RetryPolicy
from segship.network import NetworkSettings
from segship.ratelimit import RateLimit
from segship.transport import _problem

from .conftest import BRAZE_KEY, Answer, RawServer, answer_with

MiB = 2**20
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
BRAZE_HEADERS = RateLimitHeaders("X-RateLimit-Remaining", "X-RateLimit-Reset", reset_is_epoch=True,
                                 pause_when_spent=False)
BREVO_HEADERS = RateLimitHeaders("x-sib-ratelimit-remaining", "x-sib-ratelimit-reset", reset_is_epoch=False)
SUCCESS = b'{"message":"success","attributes_processed":0,"errors":[]}'


# -- the hostile answers ----------------------------------------------------------------------------------

def huge_body(size: int, *, declared: bool) -> Answer:
    """``size`` bytes of body, with its Content-Length or running until the connection closes."""

    async def answer(writer: asyncio.StreamWriter, number: int) -> None:
        framing = b"Content-Length: %d" % size if declared else b"Connection: close"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n")
        chunk = b"x" * MiB
        for _ in range(size // MiB):
            writer.write(chunk)
            await writer.drain()

    return answer


async def endless_chunks(writer: asyncio.StreamWriter, number: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (MiB, b"x" * MiB)
    while True:
        writer.write(chunk)
        await writer.drain()


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of ``inflated`` zero bytes, ~1,000 times smaller: after a full flush deflate
    repeats itself, so one compressed MiB is repeated (the trailer's checksum is never reached)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * MiB
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + again * (inflated // MiB - 1) + compressor.flush()


def compressed(body: bytes) -> Answer:
    async def answer(writer: asyncio.StreamWriter, number: int) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), MiB):
            writer.write(body[start:start + MiB])
            await writer.drain()

    return answer


async def huge_header(writer: asyncio.StreamWriter, number: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
    chunk = b"a" * MiB
    for _ in range(200):
        writer.write(chunk)
        await writer.drain()
    writer.write(b"\r\nContent-Length: 2\r\n\r\n{}")


async def slow_drip(writer: asyncio.StreamWriter, number: int) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.1)


async def switching_protocols(writer: asyncio.StreamWriter, number: int) -> None:
    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
    await writer.drain()
    await asyncio.sleep(30)


def hostile_after_the_first(answer: Answer) -> Answer:
    """Braze's check_connection answered well, every later request with ``answer``."""
    success = answer_with(b"HTTP/1.1 201 Created\r\nContent-Type: application/json", SUCCESS)

    async def sequence(writer: asyncio.StreamWriter, number: int) -> None:
        await (success if number == 0 else answer)(writer, number)

    return sequence


OVERSIZED = {
    "100 MB with its length": huge_body(100 * MiB, declared=True),
    "100 MB until the close": huge_body(100 * MiB, declared=False),
    "endless chunks": endless_chunks,
}
MALFORMED = {
    "invalid status code": answer_with(b"HTTP/1.1 2OO OK"),
    "no status line": answer_with(b"SSH-2.0-OpenSSH_9.6"),
    "200 MB header": huge_header,
    "a header line without a colon": answer_with(b"HTTP/1.1 200 OK\r\nNot A Header"),
}


# -- HttpClient against each ------------------------------------------------------------------------------

@asynccontextmanager
async def client(answer: Answer, *, retry: RetryPolicy | None = FAST, headers: RateLimitHeaders | None = None,
                 network: NetworkSettings | None = None) -> AsyncIterator[tuple[HttpClient, RawServer]]:
    with RawServer(answer) as server:
        http = HttpClient(server.url, {"Authorization": f"Bearer {BRAZE_KEY}"}, rate_limit=RateLimit(1000, 1.0),
                          retry=retry, rate_limit_headers=headers, network=network)
        try:
            yield http, server
        finally:
            await http.close()


@asynccontextmanager
async def traced(limit_mb: float) -> AsyncIterator[None]:
    """Python's allocations in the block (both threads) never held more than ``limit_mb`` at once."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()
    assert peak < limit_mb, f"{peak:.0f} MiB held at once"


@pytest.mark.parametrize("answer", [*OVERSIZED.values(), compressed(gzip_bomb(4 * 2**30))],
                         ids=[*OVERSIZED, "4 MB of gzip making 4 GiB"])
async def test_an_oversized_answer_is_refused_and_never_held_whole(answer):
    async with client(answer) as (http, server), traced(limit_mb=64):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="sent an answer larger than 16 MiB"):
            await http.request("POST", "/users/track", json={})
    assert time.monotonic() - started < 10
    assert http.stats.requests == server.requests == 1  # the same answer again would not help


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_answer_fails_at_once_without_quoting_it(answer):
    async with client(answer) as (http, server), traced(limit_mb=64):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match=r"sent a malformed answer \((invalid status line|a line of "
                                                   r"its head is too long|an unreadable head)\)") as raised:
            await http.request("POST", "/users/track", json={})
    assert time.monotonic() - started < 10 and http.stats.requests == 1
    assert "aaaa" not in str(raised.value) and "SSH" not in str(raised.value)


async def test_an_answer_that_cannot_be_decoded_fails_at_once():
    not_gzip = answer_with(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip", b"\x1f\x8b\x08\x00 not gzip at all")
    async with client(not_gzip) as (http, _):
        with pytest.raises(RetriesExhausted, match="sent an answer that could not be decoded"):
            await http.request("GET", "/account")
    assert http.stats.requests == 1


async def test_switching_protocols_is_an_error_not_a_hang():
    async with client(switching_protocols) as (http, server):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="answered HTTP 101 Switching Protocols, which no API request"):
            await http.request("POST", "/users/track", json={})
    assert time.monotonic() - started < 5 and http.stats.requests == 1


async def test_a_slow_drip_ends_at_the_attempts_timeout():
    network = NetworkSettings(connect_timeout=1, read_timeout=1)
    async with client(slow_drip, retry=RetryPolicy(attempts=2, base_delay=0.01), network=network) as (http, _):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match=r"after 2 attempts \(no complete answer from .* within 2 s\)"):
            await http.request("GET", "/account")
    # each attempt ends connect + read seconds after it began, though a byte came every 0.1 s
    assert 4 <= time.monotonic() - started < 6


@pytest.mark.parametrize(("head", "headers"), [
    (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 86400", None),
    (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1e12", None),
    (b"HTTP/1.1 429 Too Many Requests\r\nX-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 1e12", BRAZE_HEADERS),
    (b"HTTP/1.1 429 Too Many Requests\r\nx-sib-ratelimit-remaining: 0\r\nx-sib-ratelimit-reset: 86400", BREVO_HEADERS),
], ids=["Retry-After 86,400", "Retry-After 1e12", "Braze reset 1e12", "Brevo reset 86,400"])
async def test_a_stated_wait_longer_than_the_retry_budget_fails_at_once_saying_so(head, headers):
    async with client(answer_with(head, b"{}"), headers=headers) as (http, _):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match=r"the destination asks to wait [\d,]+ s, more than the "
                                                   r"300 s the retry budget has left"):
            await http.request("POST", "/users/track", json={})
    assert time.monotonic() - started < 2 and http.stats.requests == 1


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "-inf", "soon"])
async def test_a_meaningless_stated_wait_is_ignored(value):
    head = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %s\r\nx-sib-ratelimit-reset: %s" % (
        value.encode(), value.encode())
    async with client(answer_with(head, b"{}"), headers=BREVO_HEADERS) as (http, _):
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match=r"after 3 attempts \(HTTP 503\)"):
            await http.request("GET", "/account")
    assert time.monotonic() - started < 2 and http.stats.server_errors == 3  # our own short backoff


@pytest.mark.parametrize("reset", ["86400", "1e12", "inf"])
async def test_a_spent_budget_with_an_absurd_reset_does_not_pause_everyone(reset):
    # Brevo's headers on a success: the budget is spent, it refills in a day (or never)
    head = b"HTTP/1.1 200 OK\r\nx-sib-ratelimit-remaining: 0\r\nx-sib-ratelimit-reset: " + reset.encode()
    async with client(answer_with(head, b"{}"), headers=BREVO_HEADERS) as (http, _):
        started = time.monotonic()
        for _ in range(3):
            assert (await http.request("GET", "/account")).status == 200
    assert time.monotonic() - started < 2


async def test_a_spent_budget_with_a_near_reset_pauses_everyone_until_it():
    head = b"HTTP/1.1 200 OK\r\nx-sib-ratelimit-remaining: 0\r\nx-sib-ratelimit-reset: 0.5"
    async with client(answer_with(head, b"{}"), headers=BREVO_HEADERS) as (http, _):
        await http.request("GET", "/account")
        started = time.monotonic()
        await http.request("GET", "/account")
    assert time.monotonic() - started >= 0.45


async def test_a_storm_of_server_errors_ends_within_the_retry_budget():
    storm = answer_with(b"HTTP/1.1 503 Service Unavailable", b"{}")
    network = NetworkSettings(max_attempts=100, max_seconds=1.0)
    async with client(storm, retry=None, network=network) as (http, server):
        assert http.retry.attempts == 100 and http.retry.max_seconds == 1.0
        started = time.monotonic()
        with pytest.raises(RetriesExhausted, match="the retry budget of 1 s is spent") as raised:
            await http.request("POST", "/users/track", json={})
    assert time.monotonic() - started < 1.5
    assert raised.value.server_error and 2 <= http.stats.server_errors == server.requests < 100


async def test_the_connections_max_attempts_bound_the_retries():
    storm = answer_with(b"HTTP/1.1 502 Bad Gateway", b"{}")
    network = NetworkSettings(max_attempts=2)
    with RawServer(storm) as server:
        http = HttpClient(server.url, {}, rate_limit=RateLimit(1000, 1.0), network=network)
        try:
            with pytest.raises(RetriesExhausted, match=r"after 2 attempts \(HTTP 502\)"):
                await http.request("GET", "/account")
        finally:
            await http.close()
    assert server.requests == 2


@pytest.mark.parametrize(("error", "retryable"), [(socket.EAI_NONAME, False), (socket.EAI_AGAIN, True)],
                         ids=["no such name", "resolver unavailable"])
def test_a_name_dns_says_does_not_exist_is_not_retried_a_failing_resolver_is(error, retryable):
    key = ConnectionKey("rest.iad-99.braze.com", 443, True, True, None, None, None)
    failure = aiohttp.ClientConnectorDNSError(key, OSError(error, "lookup failed"))
    problem = _problem(failure, URL("https://rest.iad-99.braze.com/users/track"), None, aiohttp.ClientTimeout())
    assert problem.retryable is retryable and "rest.iad-99.braze.com" in str(problem)
    assert "name not resolved" in str(problem)


TIMEOUT = aiohttp.ClientTimeout(total=7, sock_connect=3, sock_read=4)
KEY = ConnectionKey("rest.iad-99.braze.com", 443, True, True, None, None, None)


@pytest.mark.parametrize(("failure", "words"), [
    (aiohttp.ClientConnectorError(KEY, ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 443)")),
     "could not connect to https://rest.iad-99.braze.com: connection refused"),
    (aiohttp.ConnectionTimeoutError("Connection timeout to host"),
     "could not connect to https://rest.iad-99.braze.com: timed out after 3 s"),
    (aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
     "timed out after 4 s waiting for https://rest.iad-99.braze.com to answer"),
    (asyncio.TimeoutError(), "no complete answer from https://rest.iad-99.braze.com within 7 s"),
], ids=["refused", "connecting", "silent", "whole attempt"])
def test_a_connection_problem_says_its_cause_in_words_and_is_retried(failure, words):
    problem = _problem(failure, URL("https://rest.iad-99.braze.com/users/track"), None, TIMEOUT)
    assert str(problem) == words and problem.retryable


# -- the real CLI against each ------------------------------------------------------------------------------

CLI_ANSWERS = {
    "switching protocols": switching_protocols,
    "4 MB of gzip making 4 GiB": compressed(gzip_bomb(4 * 2**30)),
    "endless chunks": endless_chunks,
    "200 MB header": huge_header,
    "invalid status line": answer_with(b"HTTP/1.1 2OO OK"),
    "100 MB with its length": huge_body(100 * MiB, declared=True),
}


@pytest.mark.parametrize("answer", CLI_ANSWERS.values(), ids=CLI_ANSWERS.keys())
def test_an_export_meeting_a_hostile_answer_fails_cleanly_and_acknowledges_nobody(project, answer):
    with RawServer(hostile_after_the_first(answer)) as server:
        project.configure(server.url, server.url)
        run = project.cli("export", "to-braze")
    assert run.exit_code == 1, run
    assert "to-braze: failed" in run.stdout and "Traceback" not in run.output and "Exception in" not in run.output
    assert BRAZE_KEY not in run.output
    assert run.peak_rss_mb < 300, run.peak_rss_mb
    plan = project.cli("plan", "to-braze", "--format", "json")
    assert plan.exit_code == 0, plan
    assert '"add": 20' in plan.stdout  # nobody was acknowledged: all are sent again next run
