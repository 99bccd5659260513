"""The HTTP client destinations share: pacing, retries, stats, over one connection pool per run.

Connections (keep-alive HTTP/1.1, http and https) are :mod:`segship.http_connection`'s.
Retries follow slack_sdk's HTTP retry handlers: 429 and 5xx (and dropped connections)
are retried with exponential backoff plus jitter; a wait the destination states
(``Retry-After`` or its rate-limit reset header) is honoured and pauses every request
of the run, not just the one that was refused. No redirect is followed: a 3xx is an
answer like any other. Request headers are never logged.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from segship.errors import SegshipError
from segship.http_connection import ConnectionFailed, ConnectionPool, header_block, request_bytes, target
from segship.ratelimit import Pacer, RateLimit

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
    attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 60.0           # ceiling of our own backoff
    max_stated_wait: float = 300.0    # ceiling of a wait the destination states (reset, Retry-After)
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))

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


class HttpClient:
    """Requests to one base URL (or to absolute URLs when it is ``""``); a connection pool per run,
    created on first use, closed by ``close``."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, rate_limit: RateLimit,
                 concurrency: int = 8, rate_limit_headers: RateLimitHeaders | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = header_block({"Content-Type": "application/json", "Accept": "application/json", **headers})
        self.pacer = Pacer(rate_limit)
        self.concurrency = concurrency
        self.rate_limit_headers = rate_limit_headers
        self.retry = retry or RetryPolicy()
        self._timeout = timeout  # seconds per attempt, from waiting for a connection to the answer's last byte
        self._pool: ConnectionPool | None = None
        self.stats = HttpStats()

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def request(self, method: str, path: str, *, json: Any = None,
                      body: bytes | bytearray | memoryview | None = None,
                      params: Mapping[str, str] | None = None) -> HttpResponse:
        """Send a request, retrying as the policy says; return the first non-retryable answer.

        The body is ``json`` encoded, or ``body`` as given (JSON bytes a destination built itself).
        """
        if json is not None and body is not None:
            raise TypeError("give json or body, not both")
        if json is not None:
            body = orjson.dumps(json)
        body_bytes = memoryview(body).nbytes if body is not None else 0
        if self._pool is None:
            self._pool = ConnectionPool(self.concurrency, self._timeout)
        pool = self._pool
        where = target(self.base_url + path)
        if params:
            where = where.with_params(params)
        request = request_bytes(method, where, self._headers, body)
        last_problem = ""
        last_status: int | None = None
        for attempt in range(1, self.retry.attempts + 1):
            await self.pacer.acquire()
            self.stats.requests += 1
            self.stats.bytes_sent += body_bytes
            try:
                # no redirects followed: a custom auth header (Brevo's api-key) would follow them anywhere
                response = HttpResponse(*await pool.send(where, request, head_only=method == "HEAD"))
            except ConnectionFailed as exc:
                self.stats.connection_errors += 1
                last_problem, last_status = str(exc), None
                delay = self.retry.backoff(attempt)
            else:
                stated_wait = self._observe_rate_limit(response)
                if response.status not in self.retry.retry_statuses:
                    return response
                if response.status == 429:
                    self.stats.throttled += 1
                else:
                    self.stats.server_errors += 1
                last_problem, last_status = f"HTTP {response.status}", response.status
                delay = self.retry.backoff(attempt)
                # a reset header says when the budget refills: a wait only for a 429; Retry-After always
                if stated_wait and (response.status == 429 or "Retry-After" in response.headers):
                    delay = max(delay, min(stated_wait, self.retry.max_stated_wait))
                    if response.status == 429:
                        self.pacer.hold(delay)  # everyone waits, not just this request
            if attempt == self.retry.attempts:
                break
            self.stats.retries += 1
            log.debug("http.retry", method=method, path=path, problem=last_problem, attempt=attempt,
                      delay=round(delay, 3))
            await asyncio.sleep(delay)
        raise RetriesExhausted(f"{method} {path} failed after {self.retry.attempts} attempts ({last_problem})",
                               last_status)

    def _observe_rate_limit(self, response: HttpResponse) -> float:
        """Seconds the destination asks us to wait (0 if none); pauses pacing when the budget is spent."""
        retry_after = _seconds(response.headers.get("Retry-After"))
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
            self.pacer.hold(wait)
        return wait


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
