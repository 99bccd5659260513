"""One client's HTTP connections, through aiohttp's client: a request out, its whole answer in.

One job: the wire. A :class:`Transport` owns one ``aiohttp.ClientSession`` per run (made at
the first request, closed by ``close``) whose ``TCPConnector`` keeps at most ``limit``
connections, TLS always verified. It sends a request through the connection's proxy, or
the environment's, and reads the answer whole within the timeouts and a size cap. Pacing,
retries and rate-limit headers are :class:`segship.http.HttpClient`'s.

Whatever goes wrong becomes a :class:`TransportError` whose message names the origin (or
the proxy's host) and what happened, never a header, a path, a body or a credential, and
says whether trying again can help: a certificate, a refused TLS handshake, a proxy that
refuses the credentials, a name DNS says doesn't exist, an oversized or malformed answer
can't be helped by retrying; a refused or dropped connection, a timeout can.

Proxies come from the connection's ``network.proxy``, else from ``HTTPS_PROXY``/``HTTP_PROXY``
and ``NO_PROXY`` as curl and requests read them, once per origin and run. The session does not
use aiohttp's ``trust_env``: it would read ``~/.netrc`` too and add its credentials to
requests that carry their own key, and it looks the proxy up on a thread for every request.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from segship import __version__
from segship.network import NetworkSettings, Proxy

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

#: The largest answer read: segship's destinations answer with small JSON (a Brevo import
#: report is a few MB at most); anything larger is a wrong host or a hostile one.
MAX_ANSWER_BYTES = 16 * 2**20
USER_AGENT = f"segship/{__version__}"
#: the answers segship reads are small JSON: compressing them costs both sides CPU and saves
#: nothing, so none is asked for; one compressed anyway is decoded, within MAX_ANSWER_BYTES
ACCEPT_ENCODING = "identity"
#: How long a connection asking whether a server refuses this client's TLS waits for its alert, which
#: follows the handshake within a round trip; a server that says nothing is waiting for a request
TLS_REFUSAL_SECONDS = 2.0

Answer = tuple[int, "CIMultiDictProxy[str]", bytes]  # status, headers (case-insensitive), body


class TransportError(Exception):
    """No usable answer; the message is safe to show, ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Transport:
    """The connections of one :class:`~segship.http.HttpClient`: ``send`` a request, get its ``Answer``."""

    def __init__(self, network: NetworkSettings, headers: Mapping[str, str], limit: int,
                 timeout: float | None = None) -> None:
        self._network = network
        self._headers = {"User-Agent": USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING, **headers}
        self._limit = limit
        total = timeout if timeout is not None else network.connect_timeout + network.read_timeout
        # ``total`` bounds an attempt whatever the server does (a drip of one byte a second
        # resets sock_read's timer, not total's); waiting for a free connection is in it
        self.timeout = aiohttp.ClientTimeout(total=total, sock_connect=min(network.connect_timeout, total),
                                             sock_read=min(network.read_timeout, total))
        self._session: aiohttp.ClientSession | None = None
        # a context of our own: aiohttp's default one is made at import, before SSL_CERT_FILE may be set
        self._context = network.tls or ssl.create_default_context()
        self._probed: set[URL] = set()  # origins asked whether they refuse this client's TLS (_tls_refusal)
        self._proxies: dict[tuple[str, str | None, int | None], tuple[Proxy | None, dict[str, str] | None]] = {}

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def send(self, method: str, url: URL, body: bytes | bytearray | memoryview | None,
                   headers: Mapping[str, str] | None = None) -> Answer:
        """The whole answer to one request (with ``headers`` besides the client's); raises :class:`TransportError`."""
        session = self._session or self._open()
        proxy, proxy_headers = self._proxy(url)
        sent = self._headers if headers is None else {**self._headers, **headers}
        try:
            return await self._exchange(session, method, url, body, sent, proxy, proxy_headers)
        except TransportError:
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            problem = _problem(exc, url, proxy, self.timeout)
            if problem.retryable and _broken_after_connecting(exc) and url.scheme == "https" and proxy is None:
                refusal = await self._tls_refusal(url)
                if refusal is not None:
                    raise _tls_problem(url, refusal) from None
            raise problem from None

    async def _tls_refusal(self, url: URL) -> str | None:
        """:func:`tls_refusal` of ``url``'s origin, asked once per origin."""
        if url.origin() in self._probed:
            return None
        self._probed.add(url.origin())
        return await tls_refusal(url, self._context, self.timeout.sock_connect or TLS_REFUSAL_SECONDS)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._limit, limit_per_host=0, ssl=self._context)
        # no session headers: aiohttp adds those to a proxy's CONNECT too (an Authorization header
        # as Proxy-Authorization), which would hand the key to the proxy; they go with each request
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self.timeout, trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)  # no cookie from an answer is kept
        return self._session

    async def _exchange(self, session: aiohttp.ClientSession, method: str, url: URL,
                        body: bytes | bytearray | memoryview | None, headers: Mapping[str, str],
                        proxy: Proxy | None, proxy_headers: dict[str, str] | None) -> Answer:
        # no redirect is followed: HttpClient refuses them (a key must not follow one elsewhere)
        response = await session.request(method, url, data=body, headers=headers, allow_redirects=False,
                                         proxy=proxy.url if proxy is not None else None, proxy_headers=proxy_headers)
        try:
            if response.status < 200:
                # 1xx interim answers are aiohttp's business; one that reaches here is a switch of
                # protocols nobody asked for
                raise TransportError(f"{url.origin()} answered HTTP {response.status} {response.reason or ''}"
                                     .rstrip() + ", which no API request asks for", retryable=False)
            answer = await _read(response, url)
        except BaseException:
            response.close()  # what is left of the answer is not read: the connection is dropped
            raise
        response.release()
        return response.status, response.headers, answer

    def _proxy(self, url: URL) -> tuple[Proxy | None, dict[str, str] | None]:
        """The proxy for ``url``'s origin, and the headers of its CONNECT (the credentials)."""
        origin = (url.scheme, url.host, url.port)
        found = self._proxies.get(origin)
        if found is None:
            proxy = self._network.proxy or _environment_proxy(url)
            headers = {"Proxy-Authorization": proxy.authorization} if proxy and proxy.authorization else None
            found = self._proxies[origin] = (proxy, headers)
        return found


def _environment_proxy(url: URL) -> Proxy | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` (either case) name for ``url``, unless ``NO_PROXY`` excludes it."""
    proxies = urllib.request.getproxies_environment()
    value = proxies.get(url.scheme)
    if not value or urllib.request.proxy_bypass_environment(url.host or "", proxies):
        return None
    try:
        return Proxy.parse(value)
    except ValueError as exc:
        raise TransportError(f"{url.scheme.upper()}_PROXY in the environment: {exc}", retryable=False) from None


async def _read(response: aiohttp.ClientResponse, url: URL) -> bytes:
    """The answer's body, decoded, at most MAX_ANSWER_BYTES of it (a larger one is not read further)."""
    length = response.content_length
    if length is not None and length > MAX_ANSWER_BYTES:
        raise _too_large(url)
    content = response.content
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.readany():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _too_large(url)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(url: URL) -> TransportError:
    return TransportError(f"{url.origin()} sent an answer larger than {MAX_ANSWER_BYTES // 2**20} MiB, more than "
                          "any API answer segship reads: is the URL right?", retryable=False)


def _problem(exc: BaseException, url: URL, proxy: Proxy | None, timeout: aiohttp.ClientTimeout) -> TransportError:
    """What ``exc`` means for a request to ``url``, in words safe to show, and whether to try again."""
    origin = url.origin()
    reach = f"could not connect to {origin}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        why = getattr(error, "verify_message", None) or getattr(error, "reason", None) or type(error).__name__
        return TransportError(f"{reach}: certificate verify failed for {exc.host} ({why}); trust its CA with "
                              "network.tls.ca_file or SSL_CERT_FILE", retryable=False)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        shown = proxy.shown if proxy is not None else "?"
        hint = ": check the proxy's user and password (network.proxy, or HTTPS_PROXY)" if exc.status == 407 else ""
        return TransportError(f"the proxy {shown} refused to open a connection to {origin} (HTTP {exc.status} "
                              f"{exc.message}){hint}", retryable=exc.status >= 500)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        shown = proxy.shown if proxy is not None else "?"
        return TransportError(f"could not connect to the proxy {shown}: {_words(exc)}", retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        if getattr(exc.os_error, "errno", None) == socket.EAI_NONAME:  # the name doesn't exist: a typo, not a blip
            return TransportError(f"{reach}: name not resolved (DNS knows no host {url.host})", retryable=False)
        return TransportError(f"{reach}: name not resolved (the DNS lookup of {url.host} failed: {_words(exc)})",
                              retryable=True)
    tls_error = _tls_error(exc)
    if tls_error is not None:
        return _tls_problem(url, tls_error)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return TransportError(f"{reach}: timed out after {timeout.sock_connect:g} s", retryable=True)
    if isinstance(exc, aiohttp.SocketTimeoutError):  # sock_read's: nothing came for that long
        return TransportError(f"timed out after {timeout.sock_read:g} s waiting for {origin} to answer",
                              retryable=True)
    if isinstance(exc, asyncio.TimeoutError):  # total's: an attempt's whole time, however the answer dripped
        return TransportError(f"no complete answer from {origin} within {timeout.total:g} s", retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"{reach}: {_words(exc)}", retryable=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{origin} closed the connection without answering", retryable=True)
    if isinstance(exc, aiohttp.ClientPayloadError):
        if isinstance(exc.__cause__, aiohttp.http_exceptions.ContentEncodingError):
            return TransportError(f"{origin} sent an answer that could not be decoded", retryable=False)
        return TransportError(f"{origin} closed the connection before the answer was complete", retryable=True)
    if isinstance(exc, aiohttp.ClientResponseError):  # the answer's head could not be parsed
        return TransportError(f"{origin} sent a malformed answer ({_malformation(exc)})", retryable=False)
    if isinstance(exc, OSError):  # ClientOSError too: reset, broken pipe
        return TransportError(f"the connection to {origin} failed: {_words(exc)}", retryable=True)
    return TransportError(f"the request to {origin} failed ({type(exc).__name__})", retryable=True)


async def tls_refusal(url: URL, context: ssl.SSLContext, connect_timeout: float) -> str | None:
    """OpenSSL's reason when ``url``'s server refuses a client of this TLS ``context`` once the
    handshake is over, asked by a connection that sends nothing; None when it says nothing.

    TLS 1.3 servers check a client certificate only after the handshake. Their "certificate
    required" alert races the request being written: a server that closes with the request unread
    resets the connection, and the client may lose the alert and see a broken connection, which
    no retry mends. With nothing sent, the alert comes alone."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            url.host, url.port, ssl=context, server_hostname=url.host), connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return _tls_error(exc)
    try:
        await asyncio.wait_for(reader.read(1), TLS_REFUSAL_SECONDS)
    except (OSError, asyncio.TimeoutError) as exc:  # ssl.SSLError is an OSError
        return _tls_error(exc)
    finally:
        writer.close()
    return None


def _tls_problem(url: URL, reason: str) -> TransportError:
    return TransportError(f"could not connect to {url.origin()}: the TLS connection failed ({reason})", retryable=False)


def _broken_after_connecting(exc: BaseException) -> bool:
    """Whether the connection broke (reset, broken pipe) once open: a TLS server may have refused the
    client after the handshake. Not a connection that could not open, nor one closed cleanly."""
    return isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)


def _words(exc: BaseException) -> str:
    """The OS's words for a connection problem (``connection refused``): never the request."""
    error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if not isinstance(error, OSError):
        return type(error).__name__
    # the errno's own words: asyncio's strerror is "Connect call failed ('127.0.0.1', 1)", which names no cause
    words = os.strerror(error.errno) if isinstance(error.errno, int) and error.errno > 0 else error.strerror
    if not words:
        return type(error).__name__
    return words[0].lower() + words[1:]


def _tls_error(exc: BaseException) -> str | None:
    """OpenSSL's reason when ``exc`` is (or was caused by) a TLS failure that will happen again.

    A TLS connection cut short (EOF) is a dropped connection, not a TLS failure."""
    seen: Any = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError) and not isinstance(seen, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            reason = seen.reason or type(seen).__name__
            if "CERTIFICATE_REQUIRED" in reason.upper():
                reason += ": the server asks for a client certificate, see network.tls.client_cert"
            return reason
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


def _malformation(exc: aiohttp.ClientResponseError) -> str:
    """The parser's complaint without the bytes it quotes (a header line may hold anything)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.http_exceptions.LineTooLong):
            return "a line of its head is too long"
        if isinstance(cause, aiohttp.http_exceptions.BadStatusLine):
            return "invalid status line"
        if isinstance(cause, aiohttp.http_exceptions.BadHttpMessage) and type(cause) is not \
                aiohttp.http_exceptions.BadHttpMessage:
            return type(cause).__name__  # InvalidHeader, TransferEncodingError, ...
        cause = cause.__cause__
    return "an unreadable head"
