"""The HTTP client destinations share: pacing, retries, rate-limit headers, stats, over one transport per run.

Requests go out through :mod:`segship.transport` (aiohttp's client: the connection's proxy
or the environment's, TLS always verified, timeouts, answers capped in size). Retries follow
slack_sdk's HTTP retry handlers: 429 and 5xx, dropped connections and timeouts are retried
with exponential backoff plus jitter, within the policy's attempts and seconds; what trying
again can't fix (an untrusted certificate, a proxy refusing the credentials, a malformed or
oversized answer) fails at once. A wait the destination states (``Retry-After``, or its
rate-limit reset header on a 429) is honoured and pauses every request of the run, not just
the one that was refused; one longer than the retry budget left fails the request at once,
naming the wait. Each retry is logged at info (``http.retry``: the attempt of how many, the
cause, the wait before the next), so a run never waits in silence. Every wait ends at once when the run is told to stop (Ctrl-C, SIGTERM). No
redirect is followed: a 3xx is an error naming where it pointed, so no key ever follows one
to another host. Request headers are never logged.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import orjson
import structlog
from yarl import URL

from segship.errors import SegshipError
from segship.network import DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_SECONDS, NetworkSettings
from segship.ratelimit import Pacer, RateLimit
from segship.secrets import UnresolvedSecret, holds_unresolved
from segship.transport import Transport, TransportError

#: What a destination plugin imports from here (``RateLimit`` is re-exported from ``segship.ratelimit``).
__all__ = ["HttpClient", "HttpResponse", "HttpStats", "RateLimit", "RateLimitHeaders", "RequestInterrupted",
           "RetriesExhausted", "RetryPolicy"]

log = structlog.get_logger("segship.http")


@dataclass
class HttpStats:
    """What a run's requests cost; added to the run report."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    bytes_sent: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RateLimitHeaders:
    """Names of a destination's rate-limit headers and how its reset header counts."""

    remaining: str
    reset: str
    reset_is_epoch: bool  # Braze: epoch seconds; Brevo: seconds from now
    #: pause every request until the reset when an answer says the budget is spent (before any
    #: 429); a 429 always pauses everyone until the reset
    pause_when_spent: bool = True


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = DEFAULT_MAX_ATTEMPTS
    base_delay: float = 0.5
    max_delay: float = 60.0           # ceiling of our own backoff
    max_stated_wait: float = 300.0    # ceiling of a wait the destination states (reset, Retry-After)
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    max_seconds: float = DEFAULT_MAX_SECONDS  # no retry starts later than this after the first attempt

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: never zero, never in lockstep."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


class RetriesExhausted(SegshipError):
    """A request still failed after every retry; the records it carried are not acknowledged."""

    def __init__(self, message: str, last_status: int | None = None) -> None:
        super().__init__(message)
        self.last_status = last_status  # None: the connection failed, no answer

    @property
    def throttled(self) -> bool:
        return self.last_status == 429

    @property
    def server_error(self) -> bool:
        return self.last_status is not None and self.last_status >= 500


class SecretNotResolved(SegshipError):
    """A request was to carry a setting this command did not resolve (an
    :class:`~segship.secrets.UnresolvedSecret`: ``plan`` and ``--dry-run`` send nothing); not sent."""


class RequestInterrupted(Exception):
    """The run was told to stop (Ctrl-C, SIGTERM) while a request waited to be sent or retried;
    the records it carried are not acknowledged and are sent again by the next run."""


class HttpClient:
    """Requests to one base URL (or to absolute URLs when it is ``""``); one transport per run,
    opened by the first request, closed by ``close``.

    ``network`` (a connection's ``network:`` block, see :class:`segship.network.NetworkSettings`)
    chooses the proxy, TLS, timeouts and, unless ``retry`` is given, the retry budget;
    ``timeout``, if given, bounds each attempt instead (seconds, connecting included). When
    ``stop`` is set, every wait ends at once with :class:`RequestInterrupted`.
    :meth:`segship.destination.ConnectionContext.http_client` passes the connection's both.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], *, rate_limit: RateLimit,
                 concurrency: int = 8, rate_limit_headers: RateLimitHeaders | None = None,
                 retry: RetryPolicy | None = None, timeout: float | None = None,
                 network: NetworkSettings | None = None, stop: asyncio.Event | None = None) -> None:
        network = network or NetworkSettings()
        headers = {name: str(value) if isinstance(value, UnresolvedSecret) else value
                   for name, value in headers.items()}
        # built all the same, as a dry run builds its destination: only a request is refused
        self._unresolved = holds_unresolved(str(base_url)) or any(map(holds_unresolved, headers.values()))
        self.base_url = str(base_url).rstrip("/")
        self.pacer = Pacer(rate_limit, sleep=self._sleep)
        self.concurrency = concurrency
        self.rate_limit_headers = rate_limit_headers
        self.retry = retry or RetryPolicy(attempts=network.max_attempts, max_seconds=network.max_seconds)
        self._transport = Transport(network, _checked(headers), concurrency, timeout)
        self._stop = stop
        self._stopped: asyncio.Future[Any] | None = None  # done when ``stop`` is set; made in the running loop
        self.stats = HttpStats()

    async def close(self) -> None:
        if self._stopped is not None:
            self._stopped.cancel()
            self._stopped = None
        await self._transport.close()

    async def request(self, method: str, path: str, *, json: Any = None,
                      body: bytes | bytearray | memoryview | None = None,
                      params: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Send a request, retrying as the policy says; return the first answer not to retry.

        The body is ``json`` encoded, or ``body`` as given (JSON bytes a destination built itself).
        ``headers`` go with this request besides the client's (a signature of its body).
        Raises :class:`RetriesExhausted` (no usable answer: retries spent, or none could help,
        or a redirect) or :class:`RequestInterrupted`.
        """
        if json is not None and body is not None:
            raise TypeError("give json or body, not both")
        if headers is not None:
            _check(headers)
        if self._unresolved or (headers is not None and any(map(holds_unresolved, headers.values()))):
            raise SecretNotResolved(f"{method} {path} was not sent: its URL or headers hold a setting given by "
                                    "reference that this command did not resolve (plan and --dry-run resolve "
                                    "no secret and send nothing)")
        if json is not None:
            body = orjson.dumps(json)
        body_bytes = memoryview(body).nbytes if body is not None else 0
        url = _target(self.base_url + path)
        if params:
            url = url.extend_query(params)
        retry = self.retry
        # what errors name: the path without its query (a signed link's signature is in the query)
        shown = path.split("?", 1)[0]
        started = time.monotonic()
        last_problem = ""
        last_status: int | None = None
        for attempt in range(1, retry.attempts + 1):
            await self.pacer.acquire()
            self.stats.requests += 1
            self.stats.bytes_sent += body_bytes
            try:
                response = HttpResponse(*await self._transport.send(method, url, body, headers))
            except TransportError as exc:
                self.stats.connection_errors += 1
                if not exc.retryable:
                    raise RetriesExhausted(f"{method} {shown} failed: {exc}") from None
                last_problem, last_status = str(exc), None
                delay = retry.backoff(attempt)
            else:
                status = response.status
                if 300 <= status < 400:
                    raise RetriesExhausted(f"{method} {shown} failed: {_redirect(response, url)}", status)
                stated_wait = self._observe_rate_limit(response)
                if status not in retry.retry_statuses:
                    return response
                if status == 429:
                    self.stats.throttled += 1
                else:
                    self.stats.server_errors += 1
                last_problem, last_status = f"HTTP {status}", status
                delay = retry.backoff(attempt)
                # a reset header says when the budget refills: a wait only for a 429; Retry-After always
                if stated_wait and (status == 429 or "Retry-After" in response.headers):
                    left = retry.max_seconds - (time.monotonic() - started)
                    if stated_wait > left:
                        raise RetriesExhausted(
                            f"{method} {shown} failed: HTTP {status}, and the destination asks to wait "
                            f"{stated_wait:,.0f} s, more than the {max(left, 0):,.0f} s the retry budget has left "
                            "(network.retries.max_seconds)", status)
                    delay = max(delay, min(stated_wait, retry.max_stated_wait))
                    if status == 429:
                        self.pacer.hold(delay)  # everyone waits, not just this request
            if attempt == retry.attempts:
                break
            if time.monotonic() - started + delay > retry.max_seconds:
                last_problem += f"; the retry budget of {retry.max_seconds:g} s is spent"
                break
            self.stats.retries += 1
            # at info: an operator watching a run sees why it waits; the path without its query (a
            # signed link's signature is in the query), never a header or a body
            log.info("http.retry", method=method, path=url.path, attempt=attempt, max_attempts=retry.attempts,
                     cause=last_problem, wait=round(delay, 3))
            await self._sleep(delay)
        raise RetriesExhausted(f"{method} {shown} failed after {attempt} attempt{'s' if attempt > 1 else ''} "
                               f"({last_problem})", last_status)

    async def _sleep(self, seconds: float) -> None:
        """``asyncio.sleep``, ended at once by the run's stop (raising RequestInterrupted)."""
        stop = self._stop
        if stop is None:
            await asyncio.sleep(seconds)
            return
        if not stop.is_set():
            if self._stopped is None:
                self._stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait((self._stopped,), timeout=seconds)
        if stop.is_set():
            raise RequestInterrupted("the run is stopping: a request waiting to be sent was not sent")

    def _observe_rate_limit(self, response: HttpResponse) -> float:
        """Seconds the destination asks us to wait (0 if none); pauses pacing when the budget is spent."""
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            return retry_after
        names = self.rate_limit_headers
        if names is None:
            return 0.0
        reset = _seconds(response.headers.get(names.reset))
        if reset is None:
            return 0.0
        wait = max(0.0, reset - time.time()) if names.reset_is_epoch else reset
        remaining = _seconds(response.headers.get(names.remaining))
        if names.pause_when_spent and remaining is not None and remaining <= 0 and response.status != 429:
            # a reset further off than any wait is not a pause: the next request's 429 says how long
            if wait <= self.retry.max_stated_wait:
                self.pacer.hold(wait)
        return wait


@lru_cache(maxsize=256)
def _target(url: str) -> URL:
    """An absolute http or https URL, parsed (and percent-encoded) once."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError("only absolute http:// and https:// URLs can be requested")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise ValueError("credentials in a URL are not sent; use a header")
    return parsed


def _checked(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers, with JSON's content type and accept unless given."""
    _check(headers)
    return {"Content-Type": "application/json", "Accept": "application/json", **headers}


def _check(headers: Mapping[str, str]) -> None:
    """A name or value holding a line break would split the request (header injection): refused,
    without repeating the value (it may be a key)."""
    for name, value in headers.items():
        if not name or ":" in name or any(c in name + value for c in "\r\n\0"):
            raise ValueError("a request header's name or value holds a line break, or its name is malformed")


def _redirect(response: HttpResponse, url: URL) -> str:
    """Why a redirect is an error, naming where it points (its origin only: the rest may be signed)."""
    location = response.headers.get("Location")
    if not location:
        return f"{url.origin()} answered HTTP {response.status} without a Location"
    try:
        target = url.join(URL(location))
        where = str(target.origin()) if target.absolute else "?"
    except ValueError:
        where = "an invalid URL"
    return (f"{url.origin()} answered HTTP {response.status}, a redirect to {where}; segship follows no redirect "
            "(its key must never follow one to another host): set the URL the redirect names in the "
            "connection's settings")


def _seconds(value: str | None) -> float | None:
    """A header's number of seconds: finite, never negative; None when absent or not a number."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _retry_after(value: str | None) -> float | None:
    """``Retry-After``: seconds, or an HTTP date (RFC 9110)."""
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo is not None else None
