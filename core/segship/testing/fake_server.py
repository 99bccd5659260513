"""A programmable HTTP server on 127.0.0.1 for a destination's tests: scripted answers, faults, recorded requests.

:class:`FakeServer` answers each request with the first scripted :class:`FakeAnswer` that matches it
(``script``), else with its ``handler`` (a function of the :class:`RecordedRequest`), else by
forwarding it to ``upstream`` (a sandbox's URL: the fake server then stands in front of it and adds
faults), else 404. Every request is recorded with the time it arrived. It runs on an event loop of
its own in a thread, so a test drives a destination (or a whole export run) from its own thread::

    with FakeServer(lambda request: FakeAnswer(json={"ok": True})) as server:
        server.script(FakeAnswer(429, headers={"Retry-After": "0"}), FakeAnswer(503))
        ...                                  # the first two requests fail, the third is answered
        assert len(server.requests) == 3

The ``fake_server`` fixture of :mod:`segship.testing.pytest_plugin` gives a running one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web

from segship.sandbox import BackgroundServer

#: Headers that describe one hop's transfer, not the answer: never copied from upstream's answer.
HOP_HEADERS = frozenset({"connection", "content-length", "content-encoding", "transfer-encoding", "keep-alive"})


@dataclass(frozen=True)
class FakeAnswer:
    """One answer: ``status``, ``json`` (encoded with orjson) or raw ``body``, ``headers``; after
    ``latency`` seconds. ``drop`` closes the connection without answering (a dropped connection)."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    latency: float = 0.0
    drop: bool = False

    def response(self) -> web.Response:
        body = self.body if self.body is not None else orjson.dumps(self.json) if self.json is not None else b""
        headers = {"Content-Type": "application/json", **self.headers} if self.body is None else dict(self.headers)
        return web.Response(status=self.status, body=body, headers=headers)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake server received: ``at`` is ``time.monotonic()`` on its arrival."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class _Scripted:
    answer: FakeAnswer
    method: str | None
    path: str | None

    def matches(self, request: RecordedRequest) -> bool:
        return self.method in (None, request.method) and self.path in (None, request.path)


class FakeServer(BackgroundServer):
    """A programmable HTTP server (see the module's docstring); ``url`` is its base URL once entered.

    With ``upstream``, ``url`` has upstream's path (``…/v3`` for a Brevo sandbox) and requests
    that nothing scripted answers go on to upstream, unchanged.
    """

    def __init__(self, handler: Callable[[RecordedRequest], FakeAnswer] | None = None, *,
                 upstream: str | None = None) -> None:
        super().__init__(self._app, prefix=urlsplit(upstream).path.rstrip("/") if upstream else "")
        self.handler = handler
        self.upstream = upstream
        self._requests: list[RecordedRequest] = []
        self._script: list[_Scripted] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order of arrival (a copy)."""
        return self.call(lambda: list(self._requests))

    def script(self, *answers: FakeAnswer, method: str | None = None, path: str | None = None) -> None:
        """Answer the next requests (those to ``path`` with ``method``, when given) with ``answers``, in
        order; requests after them are answered as before."""
        entries = [_Scripted(answer, method, path) for answer in answers]
        self.call(lambda: self._script.extend(entries))

    def clear(self) -> None:
        """Forget the recorded requests and what is still scripted."""

        def clear() -> None:
            self._requests.clear()
            self._script.clear()

        self.call(clear)

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        app.on_cleanup.append(self._close_session)
        return app

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        recorded = RecordedRequest(request.method, request.path, dict(request.query), dict(request.headers),
                                   await request.read(), time.monotonic())
        self._requests.append(recorded)
        answer = self._scripted(recorded)
        if answer is None and self.handler is not None:
            answer = self.handler(recorded)
        if answer is None:
            if self.upstream is None:
                return web.Response(status=404, text=f"nothing answers {request.method} {request.path}")
            return await self._forward(request, recorded)
        if answer.latency:
            await asyncio.sleep(answer.latency)
        if answer.drop:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError  # the client sees the connection close with no answer
        return answer.response()

    def _scripted(self, request: RecordedRequest) -> FakeAnswer | None:
        for index, entry in enumerate(self._script):
            if entry.matches(request):
                del self._script[index]
                return entry.answer
        return None

    async def _forward(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        origin = self.upstream.removesuffix(self.prefix) if self.upstream else ""
        headers = {name: value for name, value in recorded.headers.items() if name.lower() not in ("host", *HOP_HEADERS)}
        async with self._session.request(recorded.method, origin + request.path_qs, headers=headers,
                                         data=recorded.body or None, allow_redirects=False) as answer:
            body = await answer.read()
            kept = {name: value for name, value in answer.headers.items() if name.lower() not in HOP_HEADERS}
            return web.Response(status=answer.status, body=body, headers=kept)

    async def _close_session(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()
