"""A local service speaking the webhook protocol: it checks signatures, keeps members, refuses some.

Any POST path is a collection of members: ``POST /members`` adds or updates members of the
collection ``/members``, ``POST /members/remove`` removes them from it (a path ending in ``/remove``
removes from the collection its prefix names), so an export's ``upsert_path`` and
``remove_path`` work as configured. Members are kept per collection, export and key: a join
stores its fields, a change updates the fields it sends.

Each body must carry ``X-Segship-Signature: sha256=<hex HMAC-SHA256 of the body>``: with a secret
(``--secret``) the signature must match (else 401), without one any well-formed signature passes.
Identities on the refuse list are answered in ``refused``; the base's rate limit and fault knobs
answer 429s and 5xx (``/_sandbox/faults``).
"""

from __future__ import annotations

import hmac
import math
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web
from segship.notifiers.webhook import SIGNATURE_HEADER, signature
from segship.ratelimit import RateLimit
from segship.sandbox import Faults, Sandbox, json_response

REMOVE_SUFFIX = "/remove"
#: the batches a sandbox remembers, for tests to read what was sent (the members are kept whole)
KEPT_BATCHES = 1_000
SIGNATURE_FORM = "sha256="


class WebhookSandbox(Sandbox):
    """The webhook protocol's receiving end; ``secret=None`` accepts any well-formed signature."""

    def __init__(self, *, secret: str | None = None, rate_limit: RateLimit | None = None,
                 faults: Faults | None = None, refuse_identities: Iterable[str] = ()) -> None:
        super().__init__(rate_limit=rate_limit, faults=faults)
        self.secret = secret
        self.refuse_identities = set(refuse_identities)
        #: collection (upsert path) -> export -> key -> {"identity": …, "fields": {…}}
        self.collections: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        #: the last batches accepted: {"path", "export", "members"} as sent
        self.batches: deque[dict[str, Any]] = deque(maxlen=KEPT_BATCHES)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._receive)

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get(SIGNATURE_HEADER)

    def accepts(self, key: str) -> bool:
        # the form here; whether it signs the body is checked once the body is read
        digest = key.removeprefix(SIGNATURE_FORM)
        return key.startswith(SIGNATURE_FORM) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)

    def auth_error(self, request: web.Request) -> web.Response:
        return json_response({"message": f"missing or malformed {SIGNATURE_HEADER} (expected sha256=<64 hex>)"},
                             status=401)

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(reset_in)))} if remaining <= 0 else {}

    def reset(self) -> None:
        super().reset()
        self.collections.clear()
        self.batches.clear()

    def extra_stats(self) -> dict[str, Any]:
        return {"members": sum(len(members) for exports in self.collections.values() for members in exports.values())}

    def members(self, export: str, collection: str = "/members") -> dict[str, dict[str, Any]]:
        """The members an export has in a collection, by key."""
        return self.collections.get(collection, {}).get(export, {})

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.secret is not None and not hmac.compare_digest(signature(body, self.secret),
                                                               request.headers[SIGNATURE_HEADER]):
            self.stats["bad_signatures"] += 1
            return json_response({"message": f"{SIGNATURE_HEADER} does not sign this body with the secret"},
                                 status=401)
        removing = request.path.endswith(REMOVE_SUFFIX)
        try:
            export, members = _batch(body, removing)
        except ValueError as exc:
            return json_response({"message": str(exc)}, status=400)
        collection = request.path.removesuffix(REMOVE_SUFFIX) if removing else request.path
        kept = self.collections.setdefault(collection, {}).setdefault(export, {}) if members else {}
        refused = []
        for index, member in enumerate(members):
            if member["identity"] in self.refuse_identities:
                refused.append({"index": index, "reason": f"identity {member['identity']} is on the refuse list"})
            elif removing:
                kept.pop(member["key"], None)
            else:
                stored = kept.setdefault(member["key"], {"identity": member["identity"], "fields": {}})
                stored["identity"] = member["identity"]
                stored["fields"].update(member["fields"])
        self.batches.append({"path": request.path, "export": export, "members": members})
        return json_response({"accepted": len(members) - len(refused), "refused": refused})


def _batch(body: bytes, removing: bool) -> tuple[str | None, list[dict[str, Any]]]:
    """The export and members of a body, checked against the protocol; ValueError says what is wrong."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(decoded, dict) or set(decoded) != {"export", "members"}:
        raise ValueError('expected {"export": NAME, "members": [...]}')
    export, members = decoded["export"], decoded["members"]
    if not isinstance(members, list) or not (isinstance(export, str) or export is None and not members):
        raise ValueError("export must be text (null only for an empty connection check) and members a list")
    expected = {"key", "identity"} if removing else {"key", "identity", "fields"}
    for index, member in enumerate(members):
        if not isinstance(member, dict) or set(member) != expected or not isinstance(member["key"], str) or \
                not isinstance(member["identity"], str) or not isinstance(member.get("fields", {}), dict):
            raise ValueError(f"member {index} must be an object of exactly {sorted(expected)} (key and identity "
                             "text, fields an object)")
    return export, members
