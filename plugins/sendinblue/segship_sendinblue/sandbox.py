"""A local emulator of the Brevo v3 contacts API, as much of it as segship (and brevo-python) uses.

Routes under ``/v3``: ``GET /account``, ``GET /contacts/lists/{id}``, ``GET /contacts/lists/{id}/contacts``
(``limit`` up to 500, ``offset``, ``sort``), ``POST /contacts/import`` (processed asynchronously
after ``process_delay`` seconds), ``GET /processes/{id}``,
``POST /contacts/lists/{id}/contacts/remove`` and ``PUT /contacts/{email}``; ``api-key`` header,
``{"code","message"}`` errors and ``x-sib-ratelimit-*`` headers as Brevo sends them. Inspection
routes (never rate limited, no key): ``GET /_sandbox/lists/{id}/contacts`` and the invalid-email
report of an import, ``GET /_sandbox/processes/{id}/invalid_emails.csv`` (Brevo links a CSV on S3).

Consent is modelled as Brevo documents it: a contact may be blocklisted for email and for SMS
(its ``emailBlacklisted``/``smsBlacklisted``; a list counts its ``totalBlacklisted``). An import
blocklists every contact it carries when its body says ``emailBlacklist``/``smsBlacklist: true``
and otherwise leaves each contact's blocklisting as it was; only ``PUT /contacts/{email}`` with
``emailBlacklisted``/``smsBlacklisted`` sets or lifts it for one contact.

Answers follow Brevo's published API v3 spec (plugins/sendinblue/tests/brevo_api_v3.yaml, checked
by test_sandbox_spec.py): required fields, documented statuses, error codes. Where the spec is
silent, decisions: an import naming a list that doesn't exist is a 400 ``invalid_parameter``
(the spec documents only 202 and 400 for it; the body is checked before a process is queued,
so an import never queues work it can't do); a failed import (fault knob) ends with status
``failed``, which Brevo's current reference lists though the spec's enum predates it.

Accounts: an API key belongs to one account, which has its own contacts, lists and import
processes, and ``GET /account`` answers with its ``organization_id`` (Brevo's identifier of the
account). ``api_key`` (or, without one, any key) reaches the default account; ``accounts`` maps
more keys to accounts of their own (two keys on one organization id: a rotated key), so a test
can point segship at another account, or the same one, through the same base URL. The
inspection routes read the default account unless ``?account=`` names another.

State is in memory and lean on purpose: a contact is its email and its attribute dict,
a list is an insertion-ordered dict of emails, so the benchmark's million contacts fit. So a
listed contact's ``id`` is a number made from its email (stable, and unique in practice: 48
bits), and its ``createdAt``/``modifiedAt`` the sandbox's start; a page is found by counting
through the list (tests list small lists).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from segship.http import RateLimit
from segship.sandbox import BackgroundSandbox, Faults, Sandbox, json_response, request_json

from segship_sendinblue.mapping import EMAIL_PATTERN

#: Brevo refuses an import body above 10 MB (it recommends staying under 8 MB).
MAX_IMPORT_BODY_BYTES = 10 * 1024 * 1024
#: Brevo takes at most 150 emails per remove-from-list call.
MAX_REMOVE_EMAILS = 150
#: Contacts per page of a list's contacts: Brevo's default and most.
LIST_PAGE_DEFAULT, LIST_PAGE_MAX = 50, 500
DEFAULT_LIST_IDS = tuple(range(1, 11))
#: The optional booleans of an import body and their defaults.
IMPORT_FLAGS = {"updateExistingContacts": True, "emptyContactsAttributes": False, "disableNotification": False,
                "emailBlacklist": False, "smsBlacklist": False}
#: The default account's organization id (Brevo's are 24 hexadecimal digits).
DEFAULT_ORGANIZATION_ID = "5a5dbe11000000000000000a"
#: What ``GET /account`` describes besides the account's identifiers (the spec requires the relay
#: and address objects).
ACCOUNT = {
    "email": "sandbox@segship.invalid", "firstName": "segship", "lastName": "sandbox",
    "companyName": "segship Brevo sandbox",
    "address": {"street": "127 Loopback Lane", "city": "Localhost", "zipCode": "00000", "country": "Sandbox"},
    "plan": [{"type": "free", "credits": 300, "creditsType": "sendLimit"}],
    "relay": {"enabled": True, "data": {"userName": "sandbox@segship.invalid", "relay": "smtp-relay.sandbox.invalid",
                                        "port": 587}},
    "marketingAutomation": {"enabled": False},
}


@dataclass
class BrevoFaults(Faults):
    """The base knobs plus failing imports: the process ends ``failed`` and imports nothing."""

    fail_next_imports: int = 0           # the next N imports fail
    import_failure_fraction: float = 0.0  # then this share of imports fails


@dataclass
class ImportProcess:
    id: int                         # given once the account's lists are checked
    contacts: list[dict[str, Any]]
    list_ids: list[int]
    update_existing: bool
    empty_attributes: bool
    email_blacklist: bool = False   # the import blocklists every contact it carries, for email
    sms_blacklist: bool = False     # ... for SMS
    new_list: dict[str, Any] | None = None   # a list to create and import into (listName, folderId)
    status: str = "queued"
    invalid_emails: list[str] = field(default_factory=list)


@dataclass
class BrevoAccount:
    """One account: its contacts, their blocklisting, its lists and its import processes."""

    organization_id: str
    user_id: int
    list_ids: tuple[int, ...]
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)   # email -> attributes
    # the few contacts blocklisted (Brevo's emailBlacklisted/smsBlacklisted), by email
    email_blacklisted: set[str] = field(default_factory=set)
    sms_blacklisted: set[str] = field(default_factory=set)
    lists: dict[int, dict[str, None]] = field(default_factory=dict)
    list_details: dict[int, dict[str, Any]] = field(default_factory=dict)
    processes: dict[int, ImportProcess] = field(default_factory=dict)
    # every contact's createdAt and modifiedAt (see the module's docstring)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def __post_init__(self) -> None:
        for list_id in self.list_ids:
            self.create_list(f"List {list_id}", 1, list_id)

    def create_list(self, name: str, folder_id: int, list_id: int | None = None) -> int:
        list_id = max(self.lists, default=0) + 1 if list_id is None else list_id
        self.lists[list_id] = {}
        self.list_details[list_id] = {"name": name, "folderId": folder_id,
                                      "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        return list_id

    def list_contacts(self, list_id: int) -> dict[str, dict[str, Any]]:
        """email -> attributes of the contacts in a list, in the order they joined."""
        return {email: self.contacts[email] for email in self.lists.get(list_id, {})}

    def blacklisting(self, email: str) -> dict[str, bool]:
        """A contact's ``emailBlacklisted`` and ``smsBlacklisted``, as Brevo describes a contact."""
        return {"emailBlacklisted": email in self.email_blacklisted, "smsBlacklisted": email in self.sms_blacklisted}

    def contact_details(self, email: str) -> dict[str, Any]:
        """A contact as Brevo's ``getContactDetails`` describes one."""
        return {"email": email, "id": int.from_bytes(hashlib.blake2b(email.encode(), digest_size=6).digest()),
                **self.blacklisting(email), "createdAt": self.created_at, "modifiedAt": self.created_at,
                "listIds": [list_id for list_id, members in self.lists.items() if email in members],
                "attributes": self.contacts[email]}

    def description(self) -> dict[str, Any]:
        """What ``GET /account`` answers."""
        return {"organization_id": self.organization_id, "user_id": self.user_id, **ACCOUNT}


def brevo_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, status=status)


class BrevoSandbox(Sandbox):
    api_prefix = "/v3"

    def __init__(self, *, api_key: str | None = None, accounts: Mapping[str, str] | None = None,
                 list_ids: Iterable[int] = DEFAULT_LIST_IDS, process_delay: float = 0.0,
                 rate_limit: RateLimit | None = None, faults: BrevoFaults | None = None,
                 max_import_bytes: int = MAX_IMPORT_BODY_BYTES) -> None:
        super().__init__(api_key=api_key, rate_limit=rate_limit, faults=faults or BrevoFaults())
        self.faults: BrevoFaults
        #: API key -> organization id of the account it belongs to, besides the default account's keys
        self.account_keys = dict(accounts or {})
        self.list_ids = tuple(list_ids)
        self.process_delay = process_delay
        self.max_import_bytes = max_import_bytes
        self._timers: dict[int, asyncio.TimerHandle] = {}   # process id -> its pending run
        self.reset()

    def reset(self) -> None:
        super().reset()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        organizations = dict.fromkeys([DEFAULT_ORGANIZATION_ID, *self.account_keys.values()])
        self.accounts = {organization: BrevoAccount(organization, user_id, self.list_ids)
                         for user_id, organization in enumerate(organizations, start=1)}
        self._process_ids = itertools.count(1)

    # -- the Sandbox hooks ------------------------------------------------------------------

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("api-key")

    def accepts(self, key: str) -> bool:
        return key in self.account_keys or super().accepts(key)

    def auth_error(self, request: web.Request) -> web.Response:
        return brevo_error(401, "unauthorized", "Key not found")

    def rate_limit_headers(self, limit: int, remaining: int, reset_in: float) -> dict[str, str]:
        # Brevo counts the reset in whole seconds; rounding up never invites an early retry
        return {"x-sib-ratelimit-limit": str(limit), "x-sib-ratelimit-remaining": str(remaining),
                "x-sib-ratelimit-reset": str(math.ceil(reset_in))}

    def rate_limited_response(self, headers: dict[str, str]) -> web.Response:
        response = brevo_error(429, "too_many_requests", "The expected rate limit is exceeded.")
        response.headers.update(headers)
        return response

    def error_response(self, status: int) -> web.Response:
        return brevo_error(status, "internal_error", "Internal server error")

    def extra_stats(self) -> dict[str, Any]:
        """The default account's figures."""
        account = self.accounts[DEFAULT_ORGANIZATION_ID]
        return {
            "contacts": len(account.contacts),
            "lists": {str(list_id): len(members) for list_id, members in account.lists.items()},
            "processes": {status: sum(1 for p in account.processes.values() if p.status == status)
                          for status in ("queued", "in_process", "completed", "failed")},
        }

    def add_routes(self, app: web.Application) -> None:
        v3 = self.api_prefix
        app.router.add_get(f"{v3}/account", self._get_account)
        app.router.add_get(f"{v3}/contacts/lists/{{list_id}}", self._get_list)
        app.router.add_get(f"{v3}/contacts/lists/{{list_id}}/contacts", self._get_list_contacts)
        app.router.add_post(f"{v3}/contacts/import", self._import_contacts)
        app.router.add_get(f"{v3}/processes/{{process_id}}", self._get_process)
        app.router.add_post(f"{v3}/contacts/lists/{{list_id}}/contacts/remove", self._remove_from_list)
        app.router.add_put(f"{v3}/contacts/{{identifier}}", self._update_contact)
        app.router.add_get("/_sandbox/lists/{list_id}/contacts", self._inspect_list)
        app.router.add_get("/_sandbox/processes/{process_id}/invalid_emails.csv", self._invalid_emails_report)

    # -- inspection (also used directly by the pytest fixture) --------------------------------

    def list_contacts(self, list_id: int, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, dict[str, Any]]:
        """email -> attributes of the contacts in an account's list, in the order they joined."""
        return self.accounts[account].list_contacts(list_id)

    def blacklisting(self, email: str, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, bool]:
        """A contact's ``emailBlacklisted`` and ``smsBlacklisted``, as Brevo describes a contact."""
        return self.accounts[account].blacklisting(email)

    def _account(self, request: web.Request) -> BrevoAccount:
        """The account of the request's key (checked already)."""
        return self.accounts[self.account_keys.get(self.presented_key(request) or "", DEFAULT_ORGANIZATION_ID)]

    # -- API routes -------------------------------------------------------------------------

    async def _get_account(self, request: web.Request) -> web.Response:
        return json_response(self._account(request).description())

    @staticmethod
    def _known_list(account: BrevoAccount, raw_id: str) -> int | web.Response:
        try:
            list_id = int(raw_id)
        except ValueError:
            return brevo_error(400, "invalid_parameter", "listId should be an integer")
        if list_id not in account.lists:
            return brevo_error(404, "document_not_found", "List ID does not exist")
        return list_id

    async def _get_list(self, request: web.Request) -> web.Response:
        account = self._account(request)
        list_id = self._known_list(account, request.match_info["list_id"])
        if isinstance(list_id, web.Response):
            return list_id
        members = account.lists[list_id]
        size = len(members)
        blacklisted = sum(1 for email in account.email_blacklisted if email in members)
        return json_response({"id": list_id, **account.list_details[list_id], "totalBlacklisted": blacklisted,
                              "totalSubscribers": size, "uniqueSubscribers": size, "dynamicList": False})

    async def _get_list_contacts(self, request: web.Request) -> web.Response:
        """A page of a list's contacts, as Brevo describes contacts: ``sort`` asc is the order they
        joined, desc (the default) the reverse."""
        account = self._account(request)
        list_id = self._known_list(account, request.match_info["list_id"])
        if isinstance(list_id, web.Response):
            return list_id
        query = request.query
        if "modifiedSince" in query:
            return brevo_error(400, "invalid_parameter", "the sandbox does not filter by modifiedSince")
        try:
            limit, offset = int(query.get("limit", LIST_PAGE_DEFAULT)), int(query.get("offset", 0))
        except ValueError:
            return brevo_error(400, "invalid_parameter", "limit and offset should be integers")
        if not 0 <= limit <= LIST_PAGE_MAX or offset < 0:
            return brevo_error(400, "invalid_parameter", f"limit should be 0 to {LIST_PAGE_MAX}, offset 0 or more")
        sort = query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            return brevo_error(400, "invalid_parameter", "sort should be asc or desc")
        members = account.lists[list_id]
        emails = itertools.islice(members if sort == "asc" else reversed(members), offset, offset + limit)
        return json_response({"contacts": [account.contact_details(email) for email in emails],
                              "count": len(members)})

    async def _import_contacts(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if len(raw) > self.max_import_bytes:
            return brevo_error(400, "invalid_parameter",
                               f"Maximum allowed json body size is {self.max_import_bytes // (1024 * 1024)}MB")
        problem_or_process = self._parse_import(raw)
        if isinstance(problem_or_process, web.Response):
            return problem_or_process
        process = problem_or_process
        account = self._account(request)
        unknown = [list_id for list_id in process.list_ids if list_id not in account.lists]
        if unknown:
            return brevo_error(400, "invalid_parameter", f"Invalid list id: {unknown[0]} does not exist")
        if process.new_list is not None:
            process.list_ids.append(account.create_list(process.new_list["listName"], process.new_list["folderId"]))
        process.id = next(self._process_ids)
        account.processes[process.id] = process
        self.stats["imports"] += 1
        loop = asyncio.get_running_loop()
        self._timers[process.id] = loop.call_later(self.process_delay, self._run_import, account, process)
        return json_response({"processId": process.id}, status=202)

    def _parse_import(self, raw: bytes) -> ImportProcess | web.Response:
        """The import a body asks for, or Brevo's 400: every check of the body alone (the account's
        lists are checked next, before a process is queued)."""
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return brevo_error(400, "bad_request", "Input must be a valid JSON object")
        if not isinstance(body, dict):
            return brevo_error(400, "bad_request", "Input must be a valid JSON object")
        if "fileBody" in body or "fileUrl" in body:
            return brevo_error(400, "invalid_parameter", "the sandbox imports jsonBody only")
        contacts = body.get("jsonBody")
        if not isinstance(contacts, list) or not contacts:
            return brevo_error(400, "missing_parameter", "jsonBody is mandatory if fileUrl and fileBody are not defined")
        problem = _contacts_problem(contacts) or _options_problem(body)
        if problem is not None:
            return brevo_error(400, "invalid_parameter", problem)
        list_ids = body.get("listIds")
        new_list = body.get("newList")
        if list_ids is None and new_list is None:
            return brevo_error(400, "missing_parameter", "listIds is mandatory if newList is not defined")
        if list_ids is not None and (not isinstance(list_ids, list) or not list_ids
                                     or not all(type(i) is int for i in list_ids)):
            return brevo_error(400, "invalid_parameter", "listIds should be a non-empty array of integers")
        flags = {name: body.get(name, default) for name, default in IMPORT_FLAGS.items()}
        if not all(isinstance(value, bool) for value in flags.values()):
            return brevo_error(400, "invalid_parameter", f"{', '.join(IMPORT_FLAGS)} should be booleans")
        return ImportProcess(0, contacts, list(list_ids or ()), flags["updateExistingContacts"],
                             flags["emptyContactsAttributes"], flags["emailBlacklist"], flags["smsBlacklist"],
                             new_list)

    def _should_fail_import(self) -> bool:
        faults = self.faults
        if faults.fail_next_imports > 0:
            faults.fail_next_imports -= 1
            return True
        return bool(faults.import_failure_fraction) and self._random.random() < faults.import_failure_fraction

    def _run_import(self, account: BrevoAccount, process: ImportProcess) -> None:
        del self._timers[process.id]
        if self._should_fail_import():
            process.status = "failed"
            process.contacts = []
            return
        lists = [account.lists[list_id] for list_id in process.list_ids]
        # true blocklists; false (the default) is no instruction: a blocklisted contact stays so
        blacklists = [blacklisted for asked, blacklisted in ((process.email_blacklist, account.email_blacklisted),
                                                             (process.sms_blacklist, account.sms_blacklisted))
                      if asked]
        for entry in process.contacts:
            email = entry.get("email")
            if not isinstance(email, str) or not EMAIL_PATTERN.fullmatch(email.strip().lower()):
                process.invalid_emails.append(str(email))
                continue
            email = email.strip().lower()
            self._store_contact(account, email, entry.get("attributes") or {}, process)
            for members in lists:
                members[email] = None
            for blacklisted in blacklists:
                blacklisted.add(email)
        self.stats["imported_contacts"] += len(process.contacts) - len(process.invalid_emails)
        process.contacts = []  # the import is done: free the memory
        process.status = "completed"

    @staticmethod
    def _store_contact(account: BrevoAccount, email: str, attributes: dict[str, Any], process: ImportProcess) -> None:
        stored = account.contacts.get(email)
        if stored is None:
            account.contacts[email] = {name: value for name, value in attributes.items() if value not in (None, "")}
        elif process.update_existing:
            for name, value in attributes.items():
                if value not in (None, ""):
                    stored[name] = value
                elif process.empty_attributes:
                    stored.pop(name, None)

    async def _get_process(self, request: web.Request) -> web.Response:
        try:
            process = self._account(request).processes.get(int(request.match_info["process_id"]))
        except ValueError:
            return brevo_error(400, "invalid_parameter", "processId should be an integer")
        if process is None:
            return brevo_error(404, "invalid_parameter", "processId is invalid")
        answer: dict[str, Any] = {"id": process.id, "name": "IMPORTUSER", "status": process.status}
        if process.status == "completed":
            report = None
            if process.invalid_emails:
                report = f"{request.url.origin()}/_sandbox/processes/{process.id}/invalid_emails.csv"
            answer["info"] = {"import": {"invalid_emails": report, "duplicate_contact_id": None,
                                         "duplicate_ext_id": None, "duplicate_email_id": None,
                                         "duplicate_phone_id": None}}
        return json_response(answer)

    async def _remove_from_list(self, request: web.Request) -> web.Response:
        account = self._account(request)
        list_id = self._known_list(account, request.match_info["list_id"])
        if isinstance(list_id, web.Response):
            return list_id
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return brevo_error(400, "bad_request", "Input must be a valid JSON object")
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not emails or not all(isinstance(e, str) for e in emails):
            return brevo_error(400, "missing_parameter", "emails should be a non-empty array of strings")
        if len(emails) > MAX_REMOVE_EMAILS:
            return brevo_error(400, "invalid_parameter",
                               f"You can pass a maximum of {MAX_REMOVE_EMAILS} emails for removal in one request")
        members = account.lists[list_id]
        success, failure = [], []
        for email in emails:
            normalized = email.strip().lower()
            if normalized in members:
                del members[normalized]
                success.append(email)
            else:
                failure.append(email)
        self.stats["removed_contacts"] += len(success)
        if not success:
            return brevo_error(400, "invalid_parameter", "Contact already removed from list and/or does not exist")
        return json_response({"contacts": {"success": success, "failure": failure}}, status=201)

    async def _update_contact(self, request: web.Request) -> web.Response:
        """``PUT /contacts/{identifier}``: attributes, list membership and blocklisting of one contact."""
        identifier = request.match_info["identifier"]
        if "@" not in identifier:
            return brevo_error(400, "invalid_parameter", "the sandbox identifies contacts by email only")
        email = identifier.strip().lower()
        account = self._account(request)
        if email not in account.contacts:
            return brevo_error(404, "document_not_found", "Contact does not exist")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return brevo_error(400, "bad_request", "Input must be a valid JSON object")
        problem = _contact_update_problem(body, account.lists)
        if problem is not None:
            return brevo_error(400, "invalid_parameter", problem)
        for name, value in (body.get("attributes") or {}).items():
            if value in (None, ""):
                account.contacts[email].pop(name, None)
            else:
                account.contacts[email][name] = value
        for field_name, blacklisted in (("emailBlacklisted", account.email_blacklisted),
                                        ("smsBlacklisted", account.sms_blacklisted)):
            if body.get(field_name) is True:
                blacklisted.add(email)
            elif body.get(field_name) is False:
                blacklisted.discard(email)
        for list_id in body.get("listIds") or ():
            account.lists[list_id][email] = None
        for list_id in body.get("unlinkListIds") or ():
            account.lists[list_id].pop(email, None)
        self.stats["contact_updates"] += 1
        return web.Response(status=204)

    # -- inspection routes ------------------------------------------------------------------

    async def _inspect_list(self, request: web.Request) -> web.Response:
        account = self.accounts.get(request.query.get("account", DEFAULT_ORGANIZATION_ID))
        if account is None:
            return brevo_error(404, "document_not_found", "no such account in the sandbox")
        list_id = self._known_list(account, request.match_info["list_id"])
        if isinstance(list_id, web.Response):
            return list_id
        contacts = account.list_contacts(list_id)
        return json_response({"count": len(contacts), "contacts": [
            {"email": email, "attributes": attributes, **account.blacklisting(email)}
            for email, attributes in contacts.items()]})

    async def _invalid_emails_report(self, request: web.Request) -> web.Response:
        try:  # the link carries no key: the process is looked for in every account
            process_id = int(request.match_info["process_id"])
            process = next((account.processes[process_id] for account in self.accounts.values()
                            if process_id in account.processes), None)
        except ValueError:
            process = None
        if process is None:
            raise web.HTTPNotFound()
        lines = ["EMAIL", *process.invalid_emails]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/csv")


def _contacts_problem(contacts: list[Any]) -> str | None:
    """Why a ``jsonBody`` is refused: each contact an object, its email a string, its attributes an object."""
    for index, contact in enumerate(contacts):
        if not isinstance(contact, dict):
            return "jsonBody should be an array of objects"
        if not isinstance(contact.get("email", ""), str):
            return f"jsonBody[{index}].email should be a string"
        attributes = contact.get("attributes")
        if attributes is not None and not isinstance(attributes, dict):
            return f"jsonBody[{index}].attributes should be an object"
    return None


def _contact_update_problem(body: Any, lists: dict[int, Any]) -> str | None:
    """Why a ``PUT /contacts/{identifier}`` body is refused (the spec's ``updateContact`` types)."""
    if not isinstance(body, dict):
        return "Input must be a valid JSON object"
    if not isinstance(body.get("attributes", {}), dict):
        return "attributes should be an object"
    for name in ("emailBlacklisted", "smsBlacklisted"):
        if not isinstance(body.get(name, False), bool):
            return f"{name} should be a boolean"
    for name in ("listIds", "unlinkListIds"):
        list_ids = body.get(name, [])
        if not isinstance(list_ids, list) or not all(type(list_id) is int for list_id in list_ids):
            return f"{name} should be an array of integers"
        unknown = [list_id for list_id in list_ids if list_id not in lists]
        if unknown:
            return f"Invalid list id: {unknown[0]} does not exist"
    return None


def _options_problem(body: dict[str, Any]) -> str | None:
    """Why ``notifyUrl`` or ``newList`` is refused (the spec types them: a URL string; listName and folderId)."""
    notify_url = body.get("notifyUrl")
    if notify_url is not None and not (isinstance(notify_url, str) and notify_url.startswith(("http://", "https://"))):
        return "notifyUrl should be a URL"
    new_list = body.get("newList")
    if new_list is None:
        return None
    if not isinstance(new_list, dict) or not isinstance(new_list.get("listName"), str) or \
            not new_list["listName"].strip():
        return "newList should be an object with a non-empty listName"
    if type(new_list.get("folderId")) is not int:
        return "newList.folderId should be an integer (mandatory with a listName)"
    return None


# -- in tests -----------------------------------------------------------------------------------

#: The key the tests' sandboxes accept.
SANDBOX_API_KEY = "xkeysib-sandbox-0123456789abcdef"


class RunningBrevoSandbox(BackgroundSandbox):
    """A Brevo sandbox served in a test's thread (``with RunningBrevoSandbox(BrevoSandbox(…)) as running``):
    ``url`` is the base_url to use (…/v3); the readers return copies."""

    sandbox: BrevoSandbox

    def list_contacts(self, list_id: int, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, dict[str, Any]]:
        """email -> attributes of the contacts in a list (of the default account, or ``account``)."""
        return self.call(lambda: {email: dict(attributes) for email, attributes
                                  in self.sandbox.list_contacts(list_id, account).items()})

    def blacklisting(self, email: str, account: str = DEFAULT_ORGANIZATION_ID) -> dict[str, bool]:
        """The contact's ``emailBlacklisted`` and ``smsBlacklisted``."""
        return self.call(lambda: self.sandbox.blacklisting(email, account))


async def call(url: str, method: str = "GET", body: object = None, *, key: str | None = SANDBOX_API_KEY,
               raw: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """One request to a sandbox as a Brevo client makes it: (status, headers, decoded JSON body)."""
    return await request_json(method, url, raw if raw is not None else body, headers={"api-key": key} if key else None)
