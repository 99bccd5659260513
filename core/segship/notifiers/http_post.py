"""What HTTP channels (Slack's incoming webhook, a webhook) share: a secret URL, a POST with aiohttp.

One short-lived session per alert: alerts are few, and a channel must not share a run's
session, its pacing or its failures. Timeouts are explicit, proxies come from the environment
(as every segship request's do), TLS is verified, and no redirect is followed: the URL is a
secret, and a redirect would carry the body elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from segship import __version__
from segship.notifiers.contract import NotifierError

#: Seconds to connect, and for the whole request: a channel that hangs must not hold a run up.
CONNECT_SECONDS = 5
TOTAL_SECONDS = 15
#: How much of a refusal's body goes into the error (Slack says why in a word: ``invalid_payload``).
ANSWER_EXCERPT = 200


def url_settings_schema(url_description: str, **more: dict[str, Any]) -> dict[str, Any]:
    """The settings schema of an HTTP channel: ``url``, a secret (it holds the channel's token), and ``more``."""
    url = {"type": "string", "minLength": 1, "x-secret": True, "description": url_description}
    return {"type": "object", "properties": {"url": url, **more}, "required": ["url"], "additionalProperties": False}


async def post_json(channel: str, url: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """POST ``body`` (JSON) to ``url``; raise NotifierError unless the answer is 2xx."""
    import aiohttp  # here, not at the top: the channels are loaded with the plugins by every command

    timeout = aiohttp.ClientTimeout(total=TOTAL_SECONDS, connect=CONNECT_SECONDS)
    sent_headers = {"Content-Type": "application/json", "User-Agent": f"segship/{__version__}", **(headers or {})}
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session, \
                session.post(url, data=body, headers=sent_headers, allow_redirects=False) as answer:
            text = await answer.text(errors="replace")
            if not 200 <= answer.status < 300:
                raise NotifierError(f"channel {channel!r} answered HTTP {answer.status}: "
                                    f"{text[:ANSWER_EXCERPT].strip() or answer.reason}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        # the URL, a resolved secret, is redacted wherever this message is logged
        raise NotifierError(f"channel {channel!r} could not be reached: {type(exc).__name__}: {exc}") from None
