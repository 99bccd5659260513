"""The built-in ``email`` channel: a plain-text message over SMTP, with the standard library.

``smtplib`` runs in a worker thread (alerts are few; no dependency for them). With a username
the connection is upgraded with STARTTLS (verified against the system's CAs, or
``SSL_CERT_FILE``) before the login, and a login without STARTTLS is refused by validation: the
password would cross the network in clear. Without a username it is plain SMTP to a relay
(``localhost:25``, a cluster's mail relay), STARTTLS only if asked.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Iterable, Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from segship.destination import ConfigProblem
from segship.notifiers.contract import Alert, Notifier, NotifierError

#: Seconds for each SMTP step (connect, each command): a relay that hangs must not hold a run up.
SMTP_SECONDS = 15
SUBMISSION_PORT = 587  # with STARTTLS (RFC 6409)
RELAY_PORT = 25


class EmailNotifier(Notifier):
    name = "email"
    settings_schema = {
        "type": "object",
        "properties": {
            "smtp": {
                "type": "object",
                "description": "The SMTP server: STARTTLS and a login with username, plain SMTP to a relay without.",
                "properties": {
                    "host": {"type": "string", "minLength": 1},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                             "description": "Default 587 with STARTTLS, else 25."},
                    "starttls": {"type": "boolean",
                                 "description": "Upgrade the connection with STARTTLS; default true when username "
                                                "is set."},
                    "username": {"type": "string", "minLength": 1, "description": "Login name; may be a reference."},
                    "password": {"type": "string", "minLength": 1, "x-secret": True,
                                 "description": "Login password, by reference: ${env:SMTP_PASSWORD}."},
                },
                "required": ["host"],
                "dependentRequired": {"username": ["password"], "password": ["username"]},
                "additionalProperties": False,
            },
            "from": {"type": "string", "minLength": 1, "description": "The sender: segship@example.com."},
            "to": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1,
                   "description": "Recipients."},
        },
        "required": ["smtp", "from", "to"],
        "additionalProperties": False,
    }

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any]) -> Iterable[ConfigProblem]:
        smtp = settings.get("smtp")
        if isinstance(smtp, dict) and "username" in smtp and smtp.get("starttls") is False:
            yield ConfigProblem(("smtp", "starttls"), "a login needs STARTTLS: without it the password would "
                                                      "cross the network in clear (leave starttls out, or true)")

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._deliver, email_message(alert, self.settings["from"], self.settings["to"]))

    def _deliver(self, message: EmailMessage) -> None:
        smtp = self.settings["smtp"]
        username = smtp.get("username")
        starttls = smtp.get("starttls", username is not None)
        port = smtp.get("port", SUBMISSION_PORT if starttls else RELAY_PORT)
        try:
            with smtplib.SMTP(smtp["host"], port, timeout=SMTP_SECONDS) as server:
                if starttls:
                    server.starttls(context=ssl.create_default_context())
                if username is not None:
                    server.login(username, smtp["password"])
                server.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifierError(f"channel {self.channel!r}: SMTP {smtp['host']}:{port}: "
                                f"{type(exc).__name__}: {exc}") from None


def email_message(alert: Alert, sender: str, recipients: list[str]) -> EmailMessage:
    """The alert as a plain-text email."""
    message = EmailMessage()
    message["Subject"] = f"[segship] {'RESOLVED' if alert.status == 'resolved' else 'ALERT'}: {alert.headline}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain="segship")
    lines = [alert.message, ""]
    lines += [f"{name}: {text}" for name, text in alert.figure_lines()]
    lines += ["", f"export: {alert.export}", f"event: {alert.event} ({alert.status})"]
    if alert.run_id is not None:
        lines.append(f"run: {alert.run_id}")
    message.set_content("\n".join(lines) + "\n")
    return message
