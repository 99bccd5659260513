"""A local emulator of Braze's ``POST /users/track``, as much of it as segship (and braze-client) uses.

Bearer auth (a 401 quotes the refused key, as Braze does), at most 75 objects per array,
one identifier per object, attribute types, strings of at most 255 characters,
``{"add": […]}``/``{"remove": […]}`` on arrays, ``{"inc": n}``, ``null`` removing an
attribute, ``_update_existing_only``; 201 with ``errors[].index`` for refused objects,
400 for a malformed request, 403 for a key without ``users.track``, 404 with an error body
for a URL Braze doesn't serve, and ``X-RateLimit-*`` headers (reset in epoch seconds) from the
shared sliding window. Every answer has the body Braze's documentation defines (checked by
tests/test_sandbox_spec.py against tests/braze_users_track_responses.yaml).

Workspaces: a REST key belongs to one workspace, whose users are its own. ``api_key`` (or,
without one, any key) reaches the default workspace; ``workspaces`` maps more keys to
workspaces of their own (two keys on one name: one workspace), so a test can run two workspaces
on one endpoint, as Braze instances do.

Inspection routes (no key, never rate limited): ``GET /_sandbox/users`` (count, a page of
users, ``?array=NAME`` counts the values of an array attribute) and
``GET /_sandbox/users/{external_id}``, of the default workspace unless ``?workspace=`` names
another. The handler is lean on purpose: the benchmarks push over 1,000 requests of 75 objects
a second through it, on the cores segship uses too, so its CPU is part of what they measure.
Values are told apart with ``type()``: they are what orjson parsed, never a subclass.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from segship.http import RateLimit
from segship.sandbox import BackgroundSandbox, Faults, Sandbox, json_response, request_json

from segship_braze.mapping import CONTROL_KEYS, MAX_STRING_LENGTH
from segship_braze.schemas import MAX_BATCH_SIZE

TRACKED_ARRAYS = ("attributes", "events", "purchases")
NO_DATA_MESSAGE = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
USERS_PAGE = 100
DEFAULT_WORKSPACE = "default"
_ARRAY_OPERATIONS = frozenset({"add", "remove"})


@dataclass
class BrazeFaults(Faults):
    """The base knobs plus users Braze refuses: their objects come back in ``errors``."""

    refuse_external_ids: list[str] = field(default_factory=list)


def braze_message(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"message": message, **extra}, status=status)


def _value_problem(name: str, value: Any) -> str | None:
    """Why Braze would refuse ``value`` (as orjson parsed it) for attribute ``name``, or None."""
    kind = type(value)
    if kind is str:
        return None if len(value) <= MAX_STRING_LENGTH else \
            f"'{name}' is {len(value)} characters long; string attributes are limited to {MAX_STRING_LENGTH}"
    if kind is dict:
        if value.keys() <= _ARRAY_OPERATIONS and value:
            for operation in value.values():
                problem = _items_problem(name, operation) if type(operation) is list else \
                    f"'{name}': add and remove take an array"
                if problem:
                    return problem
            return None
        if value.keys() == {"inc"}:
            inc = value["inc"]
            return None if type(inc) is int else f"'{name}': inc takes an integer"
        return None  # a nested custom attribute (object)
    if kind is list:
        return _items_problem(name, value)
    if value is None or kind is bool or kind is int or kind is float:
        return None
    return f"'{name}' has an unsupported type"


def _items_problem(name: str, items: list[Any]) -> str | None:
    """Why Braze would refuse the array ``items`` of attribute ``name``, or None."""
    for item in items:
        if type(item) is str:
            if len(item) > MAX_STRING_LENGTH:
                return f"an item of '{name}' is longer than {MAX_STRING_LENGTH} characters"
        elif type(item) is not dict:
            return f"'{name}' must be an array of strings or objects"
    return None


class BrazeSandbox(Sandbox):
    def __init__(self, *, api_key: str | None = None, workspaces: Mapping[str, str] | None = None,
                 rate_limit: RateLimit | None = None, faults: BrazeFaults | None = None,
                 forbidden_keys: Iterable[str] = ()) -> None:
        super().__init__(api_key=api_key, rate_limit=rate_limit, faults=faults or BrazeFaults())
        self.faults: BrazeFaults
        #: REST key -> the workspace it belongs to, besides the default workspace's keys
        self.workspace_keys = dict(workspaces or {})
        #: keys that authenticate but lack the users.track permission (403)
        self.forbidden_keys = frozenset(forbidden_keys)
        self.reset()

    def reset(self) -> None:
        super().reset()
        #: workspace -> its users: identifier -> attributes
        self.workspaces: dict[str, dict[str, dict[str, Any]]] = {
            name: {} for name in (DEFAULT_WORKSPACE, *self.workspace_keys.values())}
        self.users = self.workspaces[DEFAULT_WORKSPACE]
        #: the users of the workspace whose request is being applied (set for each, which is applied
        #: without yielding to another)
        self.serving = self.users
        self._interned: dict[str, str] = {}           # array items, shared: a million users carry the same ones

    # -- what the base asks for ---------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/users/track", self._track)
        app.router.add_get("/_sandbox/users", self._list_users)
        app.router.add_get("/_sandbox/users/{external_id}", self._get_user)
        app.router.add_route("*", "/{path:.*}", self._unknown_endpoint)  # last: what no route above serves

    def presented_key(self, request: web.Request) -> str | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        return key.strip() or None if scheme.lower() == "bearer" else None

    def accepts(self, key: str) -> bool:
        return key in self.workspace_keys or super().accepts(key)

    def auth_error(self, request: web.Request) -> web.Response:
        return braze_message(401, f"Invalid API key: {self.presented_key(request) or ''}")

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset_in))}

    def rate_limited_response(self, headers: dict[str, str]) -> web.Response:
        return web.Response(body=b'{"message":"API rate limit reached"}', status=429, headers=headers,
                            content_type="application/json")

    def extra_stats(self) -> dict[str, Any]:
        return {"users": len(self.users)}

    # -- /users/track --------------------------------------------------------------------------

    async def _track(self, request: web.Request) -> web.Response:
        if self.presented_key(request) in self.forbidden_keys:
            self.stats["forbidden"] += 1
            return braze_message(403, "Access denied: this API key does not have the users.track permission")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._bad_request("Received unparseable JSON in the request body")
        if not isinstance(body, dict):
            return self._bad_request("The request body must be a JSON object")
        arrays = {name: body.get(name) or [] for name in TRACKED_ARRAYS}
        for name, items in arrays.items():
            if not isinstance(items, list):
                return self._bad_request(f"'{name}' must be an array")
            if len(items) > MAX_BATCH_SIZE:
                return self._bad_request(f"Received {len(items)} {name} objects; the limit is {MAX_BATCH_SIZE} "
                                         "per request")
        if not any(arrays.values()):
            return self._bad_request(NO_DATA_MESSAGE)
        errors = []
        self.serving = self.workspaces[self.workspace_keys.get(self.presented_key(request) or "", DEFAULT_WORKSPACE)]
        for index, user in enumerate(arrays["attributes"]):
            problem = self._update_user(user)
            if problem is not None:
                errors.append({"type": problem, "input_array": "attributes", "index": index})
        processed = len(arrays["attributes"]) - len(errors)
        self.stats["objects_processed"] += processed
        self.stats["objects_refused"] += len(errors)
        answer: dict[str, Any] = {"message": "success"}
        for name, items in arrays.items():
            if items:
                answer[f"{name}_processed"] = processed if name == "attributes" else len(items)
        if errors:
            answer["errors"] = errors
        return web.Response(body=orjson.dumps(answer), status=201, content_type="application/json")

    async def _unknown_endpoint(self, request: web.Request) -> web.Response:
        # Braze answers a wrong URL with a 404 and its error body, as every fatal error
        return braze_message(404, f"Invalid URL: {request.method} {request.path} is no Braze REST endpoint")

    def _bad_request(self, message: str) -> web.Response:
        self.stats["bad_requests"] += 1
        return braze_message(400, message)

    def _update_user(self, user: Any) -> str | None:
        """Validate one attributes object, then apply it to its user in the workspace served; the
        reason it was refused, or None."""
        if not isinstance(user, dict):
            return "Each attributes object must be a JSON object"
        identifier = user.get("external_id")
        if type(identifier) is not str or not 0 < len(identifier) <= MAX_STRING_LENGTH:  # not the usual case
            identifier, problem = self._identifier(user)
            if problem:
                return problem
        refused = self.faults.refuse_external_ids
        if refused and user.get("external_id") in refused:
            return "The sandbox was told to refuse this user (refuse_external_ids)"
        for name, value in user.items():
            if type(value) is str and len(value) <= MAX_STRING_LENGTH:  # most values: nothing else to ask
                if name == "email" and "@" not in value:
                    return "Invalid 'email' field"
                continue
            if name in CONTROL_KEYS:
                continue
            problem = _value_problem(name, value)
            if problem:
                return problem
            if name == "email" and value is not None:
                return "Invalid 'email' field"  # not text
        stored = self.serving.get(identifier)
        if stored is None:
            update_only = user.get("_update_existing_only", "user_alias" in user)
            if update_only:
                return f"No user with identifier {identifier!r} exists and '_update_existing_only' is true"
            stored = self.serving[identifier] = {}
        self.stats["data_points"] += self._write(stored, user)
        return None

    @staticmethod
    def _identifier(user: dict[str, Any]) -> tuple[str, str | None]:
        """The key the user is stored under (its external_id, or a prefixed alias/braze_id) and any problem."""
        if "external_id" in user:
            external_id = user["external_id"]
            if not isinstance(external_id, str) or not external_id or len(external_id) > MAX_STRING_LENGTH:
                return "", "Invalid 'external_id' field: a non-empty string of at most 255 characters is required"
            return external_id, None
        if "braze_id" in user:
            braze_id = user["braze_id"]
            return (f"braze_id:{braze_id}", None) if isinstance(braze_id, str) and braze_id else \
                ("", "Invalid 'braze_id' field")
        alias = user.get("user_alias")
        if isinstance(alias, dict) and isinstance(alias.get("alias_name"), str) and \
                isinstance(alias.get("alias_label"), str):
            return f"alias:{alias['alias_label']}:{alias['alias_name']}", None
        if alias is not None:
            return "", "Invalid 'user_alias' field: alias_name and alias_label are required"
        return "", "One of 'external_id', 'user_alias' or 'braze_id' is required"

    def _write(self, stored: dict[str, Any], user: dict[str, Any]) -> int:
        """Apply a valid attributes object to the user ``stored``; the number of attributes written."""
        written = 0
        for name, value in user.items():
            if name in CONTROL_KEYS:
                continue
            written += 1
            kind = type(value)
            if kind is str:  # most values
                stored[name] = value
            elif value is None:
                stored.pop(name, None)
            elif kind is dict and value and value.keys() <= _ARRAY_OPERATIONS:
                current = stored.get(name)
                items = current if type(current) is list else []
                intern = self._interned.setdefault
                for item in value.get("add", ()):
                    if type(item) is str:
                        item = intern(item, item)
                    if item not in items:
                        items.append(item)
                removed = value.get("remove")
                if removed:
                    items = [item for item in items if item not in removed]
                stored[name] = items
            elif kind is dict and value.keys() == {"inc"}:
                current = stored.get(name)
                stored[name] = (current if isinstance(current, int) else 0) + value["inc"]
            else:
                stored[name] = value
        return written

    # -- inspection ------------------------------------------------------------------------------

    def _inspected(self, request: web.Request) -> dict[str, dict[str, Any]] | None:
        """The users of the workspace an inspection names (``?workspace=``, else the default one)."""
        return self.workspaces.get(request.query.get("workspace", DEFAULT_WORKSPACE))

    async def _get_user(self, request: web.Request) -> web.Response:
        external_id = request.match_info["external_id"]
        users = self._inspected(request)
        user = users.get(external_id) if users is not None else None
        if user is None:
            return braze_message(404, f"no user with external_id {external_id!r}")
        return json_response({"external_id": external_id, **user})

    async def _list_users(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", USERS_PAGE))
        except ValueError:
            return braze_message(400, "limit must be an integer")
        users = self._inspected(request)
        if users is None:
            return braze_message(404, "no such workspace in the sandbox")
        page = [{"external_id": identifier, **user}
                for identifier, user in itertools.islice(users.items(), max(0, limit))]
        answer: dict[str, Any] = {"count": len(users), "users": page}
        array = request.query.get("array")
        if array:
            answer["array_counts"] = dict(Counter(item for user in users.values()
                                                  for item in user.get(array) or () if isinstance(item, str)))
        return json_response(answer)


# -- in tests -----------------------------------------------------------------------------------

#: The key the tests' sandboxes accept.
SANDBOX_API_KEY = "braze-sandbox-key-0123456789abcdef"


class RunningBrazeSandbox(BackgroundSandbox):
    """A Braze sandbox served in a test's thread (``with RunningBrazeSandbox(BrazeSandbox(…)) as running``):
    ``url`` is the rest_endpoint to use; the readers return copies."""

    sandbox: BrazeSandbox

    def user(self, external_id: str, workspace: str = DEFAULT_WORKSPACE) -> dict[str, Any] | None:
        """The user's attributes (in the default workspace, or ``workspace``), or None if Braze has no such user."""
        return self.call(lambda: copy.deepcopy(self.sandbox.workspaces[workspace].get(external_id)))

    def users(self, workspace: str = DEFAULT_WORKSPACE) -> dict[str, dict[str, Any]]:
        """Every user by identifier (of the default workspace, or ``workspace``)."""
        return self.call(lambda: copy.deepcopy(self.sandbox.workspaces[workspace]))


async def call(url: str, body: Any = None, *, method: str = "POST", path: str = "/users/track",
               key: str | None = SANDBOX_API_KEY) -> tuple[int, dict[str, str], Any]:
    """One request to a sandbox as a Braze client makes it: (status, headers, decoded JSON body)."""
    return await request_json(method, url + path, body, headers={"Authorization": f"Bearer {key}"} if key else None)
