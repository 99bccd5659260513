"""What every local destination emulator shares: key check, rate limit, faults, stats, serving.

A plugin's sandbox subclasses :class:`Sandbox`, adds its API routes in ``add_routes``
and names its rate-limit headers in ``rate_limit_headers``. The base serves
``/_sandbox/stats`` (GET), ``/_sandbox/faults`` (GET/POST, JSON body of
:class:`Faults` fields) and ``/_sandbox/reset`` (POST), so tests in another process
can inspect it and turn fault knobs while it runs. Besides errors, latency and dropped
connections, a fault can be an answer that is not the API's (:class:`CannedAnswer`): a
proxy's HTML page, an empty body, a body that contradicts the request.
"""

from __future__ import annotations

import asyncio
import gc
import random
import signal
import ssl
import threading
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Self

import orjson
from aiohttp import web

from segship.ratelimit import RateLimit, SlidingWindow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Requests between two freezes of what a sandbox keeps (see ``serve``): 1,000 Braze requests
#: are 75,000 users, one second at its rate limit.
FREEZE_EVERY_REQUESTS = 1_000


@dataclass
class CannedAnswer:
    """An answer given instead of the API's, as a proxy, a gateway or a broken API gives it.

    It answers the API requests to ``path`` (without the sandbox's ``api_prefix``; any method
    unless ``method``), ``count`` of them (None: every one until the faults change), before the
    key is checked: the API never sees them.
    """

    path: str
    status: int = 200
    body: str = ""                       # sent as it is
    content_type: str = "application/json"
    method: str | None = None
    count: int | None = 1

    def answers(self, method: str, path: str) -> bool:
        return path == self.path and self.method in (None, method) and self.count != 0


@dataclass
class Faults:
    """Knobs that make a sandbox misbehave the way real APIs do."""

    error_fraction: float = 0.0          # share of API requests answered with an error status
    error_statuses: tuple[int, ...] = (500,)
    latency: float = 0.0                 # seconds added to every API request
    drop_fraction: float = 0.0           # share of API requests whose connection is dropped unanswered
    seed: int | None = None
    #: answers given instead of the API's, the first that matches a request
    canned_answers: list[CannedAnswer] = field(default_factory=list)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault knobs: {sorted(unknown)}; known: {sorted(known)}")
        for name, value in values.items():
            if name == "error_statuses":
                value = tuple(value)
            elif name == "canned_answers":
                value = [CannedAnswer(**answer) for answer in value]
            setattr(self, name, value)

    def canned_answer(self, method: str, path: str) -> CannedAnswer | None:
        """The canned answer for a request (one of its ``count`` used up), or None."""
        for answer in self.canned_answers:
            if answer.answers(method, path):
                if answer.count is not None:
                    answer.count -= 1
                return answer
        return None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


class Sandbox:
    """Base of a destination emulator. ``api_key=None`` accepts any non-empty key."""

    #: Path prefix of the API routes (``/v3`` for Brevo); inspection routes are never prefixed.
    api_prefix = ""

    def __init__(self, *, api_key: str | None = None, rate_limit: RateLimit | None = None,
                 faults: Faults | None = None) -> None:
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.window = SlidingWindow(rate_limit) if rate_limit else None
        self.faults = faults or Faults()
        self._random = random.Random(self.faults.seed)
        self.stats: Counter[str] = Counter()
        # served by `serve` (the sandbox command): the process is the sandbox's, whose garbage
        # collector it tunes; not in a test's process (BackgroundSandbox)
        self.owns_process = False

    # -- what a plugin's sandbox provides --------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Add the API routes (under ``api_prefix``) and any inspection routes."""
        raise NotImplementedError

    def presented_key(self, request: web.Request) -> str | None:
        """The API key the request carries, or None."""
        raise NotImplementedError

    def accepts(self, key: str) -> bool:
        """Whether a (non-empty) key is accepted: ``api_key`` alone, or any key without one."""
        return self.api_key is None or key == self.api_key

    def auth_error(self, request: web.Request) -> web.Response:
        """The destination's answer to a missing or wrong key."""
        return json_response({"message": "Invalid API key"}, status=401)

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        """The destination's rate-limit headers."""
        return {}

    def rate_limited_response(self, headers: dict[str, str]) -> web.Response:
        return json_response({"message": "Too Many Requests"}, status=429, headers=headers)

    def error_response(self, status: int) -> web.Response:
        return json_response({"message": "Internal Server Error"}, status=status)

    def reset(self) -> None:
        """Forget all data and counters."""
        self.stats.clear()

    def extra_stats(self) -> dict[str, Any]:
        """Destination-specific figures for ``/_sandbox/stats``."""
        return {}

    # -- the shared machinery ---------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._api_middleware], client_max_size=64 * 1024 * 1024)
        app.router.add_get("/_sandbox/stats", self._get_stats)
        app.router.add_get("/_sandbox/faults", self._get_faults)
        app.router.add_post("/_sandbox/faults", self._set_faults)
        app.router.add_post("/_sandbox/reset", self._reset)
        self.add_routes(app)
        return app

    @web.middleware
    async def _api_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/_sandbox/"):
            return await handler(request)
        self.stats["requests"] += 1
        if self.owns_process and self.stats["requests"] % FREEZE_EVERY_REQUESTS == 0:
            gc.collect()  # only what came since the last freeze: no garbage is frozen with what is kept
            gc.freeze()  # what was kept so far: no full collection walks it again (see serve)
        faults = self.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.drop_fraction and self._random.random() < faults.drop_fraction:
            self.stats["dropped"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the client sees a closed connection and no answer
        if faults.canned_answers:
            canned = faults.canned_answer(request.method, request.path.removeprefix(self.api_prefix))
            if canned is not None:
                self.stats["canned_answers"] += 1
                return web.Response(body=canned.body.encode(), status=canned.status,
                                    headers={"Content-Type": canned.content_type})
        key = self.presented_key(request)
        if not key or not self.accepts(key):
            self.stats["unauthorized"] += 1
            return self.auth_error(request)
        headers: dict[str, str] = {}
        if self.window is not None:
            allowed, remaining, reset_in = self.window.try_acquire()
            headers = self.rate_limit_headers(self.window.limit.requests, remaining, reset_in)
            if not allowed:
                self.stats["rate_limited"] += 1
                return self.rate_limited_response(headers)
        if faults.error_fraction and self._random.random() < faults.error_fraction:
            status = self._random.choice(faults.error_statuses)
            self.stats[f"errors_{status}"] += 1
            if status == 429:
                return self.rate_limited_response(headers)
            return self.error_response(status)
        response = await handler(request)
        response.headers.update(headers)
        return response

    async def _get_stats(self, request: web.Request) -> web.Response:
        return json_response({**self.stats, **self.extra_stats()})

    async def _get_faults(self, request: web.Request) -> web.Response:
        return json_response(asdict(self.faults))

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            values = orjson.loads(await request.read())
            self.faults.update(values)
        except (ValueError, TypeError, AttributeError) as exc:
            return json_response({"message": str(exc)}, status=400)
        if "seed" in values:
            self._random = random.Random(self.faults.seed)
        return json_response(asdict(self.faults))

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response({"reset": True})


async def request_json(method: str, url: str, body: Any = None, *,
                       headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    """One request to a sandbox as an API client makes it, for tests: (status, headers, decoded JSON
    body, or None when it is empty). ``body`` is sent as it is when bytes, else encoded as JSON."""
    import aiohttp  # the client: a sandbox process serves, it never needs one

    data = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
    async with aiohttp.ClientSession() as session, session.request(method, url, data=data,
                                                                    headers=headers or {}) as answer:
        return answer.status, dict(answer.headers), orjson.loads(await answer.read() or b"null")


def base_url(host: str, port: int, prefix: str = "", *, tls: bool = False) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{shown}:{port}{prefix}"


async def _start(app: web.Application, host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, ssl_context=ssl_context)
    await site.start()
    bound_port = runner.addresses[0][1]
    return runner, bound_port


def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0,
          announce: Callable[[str], None] = print, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve until SIGINT/SIGTERM (over HTTPS with ``ssl_context``); the first thing announced is the base URL."""
    # A sandbox keeps what it is sent (a million users in the Braze benchmark). With CPython's
    # default thresholds, collections walk all of it again and again as it grows; young
    # garbage is still collected, and full collections still run, only rarely. What it keeps
    # is frozen again every FREEZE_EVERY_REQUESTS requests: a full collection walking a
    # million users stalled the sandbox long enough that requests paced 3.15 s apart were
    # counted within Braze's 3 s window, and answered 429.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    sandbox.owns_process = True

    async def main() -> None:
        runner, bound_port = await _start(sandbox.build_app(), host, port, ssl_context)
        announce(base_url(host, bound_port, sandbox.api_prefix, tls=ssl_context is not None))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())


class BackgroundServer:
    """Serves an aiohttp application on its own event loop in a thread: ``with BackgroundServer(make_app) as s: ...``.

    Tests use it so that code running in the test's thread (the real CLI as a subprocess, or an
    export run in-process on an event loop of its own) can talk to it while the test inspects it
    through ``call``. ``url`` is its base URL once entered (with ``prefix``); with ``ssl_context``
    it serves HTTPS.
    """

    def __init__(self, build_app: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, prefix: str = "") -> None:
        self.build_app = build_app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.prefix = prefix
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        """The URL without the prefix: where ``/_sandbox/…`` lives."""
        return self.url.removesuffix(self.prefix)

    def __enter__(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(_start(self.build_app(), self.host, self.port, self.ssl_context),
                                                  self._loop)
        self._runner, bound_port = future.result(timeout=30)
        self.url = base_url(self.host, bound_port, self.prefix, tls=self.ssl_context is not None)
        return self

    def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function`` on the server's loop (safe access to its state from the test)."""

        async def run() -> Any:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def __exit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


class BackgroundSandbox(BackgroundServer):
    """Runs a sandbox in a thread: ``with BackgroundSandbox(s) as running: ...``.

    Plugins subclass it to add readers of their own data (run through ``call``, so they are safe).
    """

    def __init__(self, sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(sandbox.build_app, host, port, ssl_context, sandbox.api_prefix)
        self.sandbox = sandbox

    @property
    def api_key(self) -> str | None:
        return self.sandbox.api_key

    def stats(self) -> dict[str, Any]:
        return self.call(lambda: {**self.sandbox.stats, **self.sandbox.extra_stats()})

    def set_faults(self, **knobs: Any) -> None:
        """Turn fault knobs through ``/_sandbox/faults``, as a test in another process would (a seed reseeds)."""
        request = urllib.request.Request(self.origin + "/_sandbox/faults", data=orjson.dumps(knobs), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def answer_instead(self, path: str, body: str = "", *, status: int = 200, content_type: str = "application/json",
                       count: int | None = None) -> None:
        """Answer the API requests to ``path`` so (``count`` of them; None: all) instead of the API
        (the ``canned_answers`` fault knob)."""
        self.set_faults(canned_answers=[{"path": path, "status": status, "body": body, "content_type": content_type,
                                         "count": count}])

    def reset(self) -> None:
        self.call(self.sandbox.reset)
