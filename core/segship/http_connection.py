"""HTTP/1.1 keep-alive connections for :class:`segship.http.HttpClient`: a request's bytes out, its answer in.

One job: connections. A :class:`ConnectionPool` opens TCP (or TLS, verified, with SNI)
connections per origin (scheme, host, port), sends one request at a time on each (no
pipelining), keeps them open between requests, and never has more than ``limit`` requests
in flight. Answers are parsed by httptools (Node's llhttp); this module only frames what
llhttp reports: status, headers, body (Content-Length, chunked, or until the server closes),
decoded when the server compressed it. Pacing, retries and rate-limit headers are
``HttpClient``'s.

Why not aiohttp's ClientSession: for a 75-profile Braze request it spent ~250-300 µs of CPU
in per-request machinery (request and response objects, timers, tasks, cookie jar, URL
objects); this pool spends well under half of it, close to a bare asyncio Protocol
(``benchmarks/http_client.py``, figures in ``benchmarks/RESULTS.md``).

A connection problem raises :class:`ConnectionFailed`, whose message names the origin and
what went wrong, never a header, a path or a body (headers hold API keys; paths may hold
signed query strings).
"""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from typing import NamedTuple
from urllib.parse import urlencode

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

#: seconds to open a connection (TCP and TLS handshakes), within the request's own timeout
CONNECT_TIMEOUT = 10.0
#: the answers segship reads are small JSON: compressing them costs both sides CPU and saves
#: nothing, so none is asked for; a server that compresses anyway is decoded (``_decoded``)
ACCEPT_ENCODING = b"identity"
USER_AGENT = f"segship/{version('segship')}".encode()

Answer = tuple[int, CIMultiDictProxy[str], bytes]  # status, headers, body


class ConnectionFailed(Exception):
    """No usable answer: the connection could not be opened, broke, timed out, or the answer was malformed."""


class _StaleConnection(ConnectionFailed):
    """A kept-alive connection was closed by the server before any byte of the answer arrived."""


class Origin(NamedTuple):  # a tuple: hashed in C, as it is twice a request (the idle connections' key)
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's request goes: its origin, the Host header, and the request line's path and query."""

    origin: Origin
    host_header: bytes
    path: bytes

    def with_params(self, params: Mapping[str, str]) -> Target:
        separator = b"&" if b"?" in self.path else b"?"
        return Target(self.origin, self.host_header, self.path + separator + urlencode(params).encode())


@lru_cache(maxsize=256)
def target(url: str) -> Target:
    """Parse (and percent-encode, as aiohttp did, with yarl) an absolute http or https URL."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("only absolute http:// and https:// URLs can be requested")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise ValueError("credentials in a URL are not sent; use a header")
    port = parsed.port if parsed.port is not None else (443 if parsed.scheme == "https" else 80)
    return Target(Origin(parsed.scheme, parsed.raw_host, port), parsed.host_port_subcomponent.encode("ascii"),
                  parsed.raw_path_qs.encode("ascii"))


def header_block(headers: Mapping[str, str]) -> bytes:
    """Headers as request lines (``Name: value\\r\\n`` each), with segship's User-Agent and Accept-Encoding.

    A name or value holding a line break would split the request (header injection): refused,
    without repeating the value (it may be a key)."""
    lines = [b"User-Agent: " + USER_AGENT, b"Accept-Encoding: " + ACCEPT_ENCODING]
    for name, value in headers.items():
        if not name or ":" in name or any(c in name + value for c in "\r\n\0"):
            raise ValueError("a request header's name or value holds a line break, or its name is malformed")
        lines.append(f"{name}: {value}".encode())  # UTF-8, as aiohttp sent them
    return b"\r\n".join(lines) + b"\r\n"


def request_bytes(method: str, target: Target, headers: bytes,
                  body: bytes | bytearray | memoryview | None) -> bytes:
    """The whole request, ready to write: request line, Host, ``headers``, Content-Length, body."""
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n%s" % (method.encode("ascii"), target.path, target.host_header, headers)
    if body is None:
        # aiohttp's habit, and what servers expect: a POST/PUT/PATCH without a body says so
        return head + (b"Content-Length: 0\r\n\r\n" if method in ("POST", "PUT", "PATCH") else b"\r\n")
    return b"".join((head, b"Content-Length: %d\r\n\r\n" % memoryview(body).nbytes, body))


class ConnectionPool:
    """Keep-alive connections per origin; at most ``limit`` requests (so connections in use) at once.

    Every request must be answered within ``timeout`` seconds of its start (waiting for a free
    connection included). One watchdog timer, ticking while requests are in flight, times them
    out: a timer per request cost more than the rest of the request's bookkeeping together.
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None
        self._tick = min(1.0, timeout / 8)  # a late answer fails at most a tick after its deadline
        self._watchdog: asyncio.TimerHandle | None = None

    async def send(self, target: Target, request: bytes, *, head_only: bool = False) -> Answer:
        """Send ``request`` (from :func:`request_bytes`) and return the answer; raises :class:`ConnectionFailed`."""
        deadline = self._loop.time() + self.timeout
        origin = target.origin
        if self._slots.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                raise ConnectionFailed(f"no connection to {origin} was free within {self.timeout:g} s") from None
        else:
            await self._slots.acquire()  # returns at once
        try:
            connection = self._idle_connection(origin)
            if connection is not None:
                try:
                    return await self._exchange(connection, request, deadline, head_only)
                except _StaleConnection:
                    pass  # the server closed it while idle: once, at once, on a new connection
            connection = await self._connect(origin, deadline)
            try:
                return await self._exchange(connection, request, deadline, head_only)
            except _StaleConnection as exc:
                raise ConnectionFailed(f"{origin} closed the connection without answering") from exc
        finally:
            self._slots.release()

    async def close(self) -> None:
        """Close every connection, idle or not, and wait (briefly) until their sockets are closed."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        connections = list(self._open)
        self._idle.clear()
        for connection in connections:
            connection.abort()
        if connections:
            await asyncio.wait([connection.lost for connection in connections], timeout=5)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.reusable:
                return connection
            connection.abort()
        return None

    async def _exchange(self, connection: _Connection, request: bytes, deadline: float, head_only: bool) -> Answer:
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._tick, self._time_out_late_answers)
        try:
            answer = await connection.exchange(request, deadline, head_only)
        except BaseException:
            connection.abort()  # an answer may still be on its way: never reused (cancellation too)
            raise
        if connection.reusable:
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.abort()
        return answer

    def _time_out_late_answers(self) -> None:
        now = self._loop.time()
        waiting = False
        for connection in list(self._open):
            if connection.deadline is not None:
                if connection.deadline <= now:
                    connection.time_out(self.timeout)
                else:
                    waiting = True
        self._watchdog = self._loop.call_later(self._tick, self._time_out_late_answers) if waiting else None

    async def _connect(self, origin: Origin, deadline: float) -> _Connection:
        context = None
        if origin.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # certificates verified against the system's CAs
            context = self._ssl
        try:
            async with asyncio.timeout_at(min(deadline, self._loop.time() + CONNECT_TIMEOUT)):
                _, connection = await self._loop.create_connection(
                    lambda: _Connection(origin, self._open), origin.host, origin.port, ssl=context)
        except TimeoutError:
            raise ConnectionFailed(f"could not connect to {origin} within {CONNECT_TIMEOUT:g} s") from None
        except OSError as exc:  # refused, unreachable, name not found, TLS or certificate failure
            raise ConnectionFailed(f"could not connect to {origin}: {exc.strerror or type(exc).__name__}") from exc
        return connection


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its answer parsed by httptools as the bytes arrive."""

    def __init__(self, origin: Origin, registry: set[_Connection]) -> None:
        self.origin = origin
        self.deadline: float | None = None  # while an answer is awaited
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._head_only = False
        self._used = False        # an answer came before on it: the server may have closed it since
        self._received = False    # a byte of the current answer arrived
        self._keep_alive = False
        self._closed = False
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self._closed and self._answer is None

    def exchange(self, request: bytes, deadline: float, head_only: bool) -> asyncio.Future[Answer]:
        assert self._transport is not None and self._answer is None
        self._answer = answer = self.lost.get_loop().create_future()
        self.deadline = deadline
        self._head_only, self._received, self._keep_alive = head_only, False, False
        self._transport.write(request)
        return answer

    def time_out(self, timeout: float) -> None:
        self._fail(ConnectionFailed(f"no complete answer from {self.origin} within {timeout:g} s"))

    def abort(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.abort()  # no graceful TLS shutdown: nothing is left to say on it

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        if self._answer is None:
            self.abort()  # bytes nobody asked for: the connection can't be trusted
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"{self.origin} sent a malformed answer ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._registry.discard(self)
        if self._answer is not None:
            if self._status and self._ends_at_close():
                self.on_message_complete()  # the body was everything up to the close
            elif self._used and not self._received:
                self._fail(_StaleConnection(f"{self.origin} closed the kept-alive connection"))
            else:
                self._fail(ConnectionFailed(f"{self.origin} closed the connection before the answer was complete"))
        if not self.lost.done():
            self.lost.set_result(None)

    # -- httptools callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answer is None:
            self._keep_alive = False  # a second answer after the one asked for: never reused

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._head_only and self._status >= 200 and self._answer is not None:
            # llhttp can't be told the answer to HEAD has no body: done here, and the connection
            # closed, since its framing is lost
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:
            self._status, self._headers, self._body = 0, [], []  # an interim answer: the real one follows
            return
        if self._answer is not None and not self._answer.done():
            self._complete(keep_alive=self._parser.should_keep_alive())

    # -- the answer --------------------------------------------------------------------------------

    def _complete(self, *, keep_alive: bool) -> None:
        headers = CIMultiDict(self._headers)
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        status = self._status
        self._reset()
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if encoding and encoding != "identity":
            try:
                body = _decoded(body, encoding)
            except (zlib.error, ValueError) as exc:
                self._fail(ConnectionFailed(f"{self.origin} sent an answer that could not be decoded ({exc})"))
                return
        answer, self._answer = self._answer, None
        self._used, self._keep_alive = True, keep_alive
        answer.set_result((status, CIMultiDictProxy(headers), body))

    def _fail(self, problem: ConnectionFailed) -> None:
        self._reset()
        self._keep_alive = False
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(problem)
        self.abort()

    def _reset(self) -> None:
        self.deadline = None
        self._status, self._headers, self._body = 0, [], []

    def _ends_at_close(self) -> bool:
        """Whether the answer's body runs until the server closes (no length, not chunked)."""
        return not any(name.lower() in ("content-length", "transfer-encoding") for name, _ in self._headers)


def _decoded(body: bytes, encoding: str) -> bytes:
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)  # zlib-wrapped, as the standard says
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)  # raw deflate, as some servers send
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")
