"""Where alerts land in the tests: a Slack-style webhook receiver and an SMTP server, both real and
on 127.0.0.1.

- :class:`WebhookReceiver`: an aiohttp server (in a thread, as the sandboxes run) that answers each
  POST as Slack's incoming webhooks do (200 ``ok``), or as told (``refuse``), and keeps what it got.
- :class:`SmtpServer`: an ``aiosmtpd`` server that keeps each message; with ``tls`` (a trustme
  certificate for 127.0.0.1) it offers STARTTLS and requires it, and a login, before any mail.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from segship.sandbox import BackgroundServer


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class WebhookApp:
    """The receiver's aiohttp app (served by :class:`segship.sandbox.BackgroundServer`)."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.answers: dict[str | None, tuple[int, str]] = {None: (200, "ok")}  # by path; None: any other

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        self.deliveries.append(Delivery(request.path, dict(request.headers), await request.read()))
        status, text = self.answers.get(request.path, self.answers[None])
        return web.Response(status=status, text=text)


class WebhookReceiver(BackgroundServer):
    """A running receiver: ``url`` is its base URL (any path is accepted)."""

    def __init__(self) -> None:
        self.app = WebhookApp()
        super().__init__(self.app.build_app)

    def deliveries(self, path: str | None = None) -> list[Delivery]:
        return self.call(lambda: [d for d in self.app.deliveries if path is None or d.path == path])

    def refuse(self, status: int, text: str, path: str | None = None) -> None:
        """Answer every POST (to ``path``) from now on so (Slack: 404 ``no_service``); ``refuse(200, "ok")``
        undoes it."""
        self.call(lambda: self.app.answers.__setitem__(path, (status, text)))

    def clear(self) -> None:
        self.call(self.app.deliveries.clear)


class _Inbox:
    """aiosmtpd's handler: keeps each message as the recipients got it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        message["X-Authenticated-As"] = login
        message["X-Over-TLS"] = str(session.ssl is not None)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


class _FreePortController(Controller):
    """aiosmtpd's controller on a port the OS picks (port 0), which it learns once listening."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpServer:
    """An SMTP server on 127.0.0.1: ``with SmtpServer() as smtp: ... smtp.messages()``."""

    def __init__(self, *, tls: Any = None, username: str = "mailer", password: str = "smtp-password-value") -> None:
        self.inbox = _Inbox()
        self.username, self.password = username, password
        options: dict[str, Any] = {}
        if tls is not None:  # a trustme.LeafCert's server context
            options = {"tls_context": tls, "require_starttls": True, "auth_require_tls": True,
                       "authenticator": self._authenticate, "auth_required": True}
        self.controller = _FreePortController(self.inbox, hostname="127.0.0.1", port=0, **options)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
            self.username, self.password)
        return AuthResult(success=ok, handled=False, auth_data=data)

    @property
    def port(self) -> int:
        return self.controller.port

    def messages(self) -> list[EmailMessage]:
        with self.inbox.lock:
            return list(self.inbox.messages)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.controller.stop()
