"""JSON Schemas of the webhook connection settings, export settings and mapping, with their defaults.

The core fills the schemas' defaults in before the destination reads a setting
(``segship.settings.with_defaults``): the constants here are the schemas' own.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BATCH_SIZE = 500
DEFAULT_REQUESTS_PER_SECOND = 10.0
DEFAULT_UPSERT_PATH = "/members"
DEFAULT_REMOVE_PATH = "/members/remove"

# an http(s) URL without credentials in it (the secret signs; a password in a URL would be written
# in state and plans as part of the instance), nor a query or fragment the paths would follow
URL_PATTERN = "^https?://[^\\s/@?#]+(/[^\\s?#]*)?$(?!\\n)"
PATH_PATTERN = "^/[^\\s?#]*$(?!\\n)"
_COLUMN = {"type": "string", "minLength": 1}

connection_schema: dict[str, Any] = {
    "type": "object",
    "description": "Your own service, receiving members as signed JSON.",
    "properties": {
        "url": {
            "type": "string", "pattern": URL_PATTERN,
            "description": "Base URL of the service, e.g. https://members.example.com/segship (no credentials in "
                           "it: the secret signs each request); the export's paths are appended.",
        },
        "secret": {
            "type": "string", "minLength": 1, "x-secret": True,
            "description": "Shared secret signing each body (HMAC-SHA256 in X-Segship-Signature), given as "
                           "${env:VAR} or ${file:PATH}.",
        },
        "batch_size": {
            "type": "integer", "minimum": 1, "maximum": 10_000, "default": DEFAULT_BATCH_SIZE,
            "description": f"Members per request (default {DEFAULT_BATCH_SIZE}).",
        },
        "requests_per_second": {
            "type": "number", "exclusiveMinimum": 0, "default": DEFAULT_REQUESTS_PER_SECOND,
            "description": f"Pace of requests to the service (default {DEFAULT_REQUESTS_PER_SECOND:g}).",
        },
    },
    "required": ["url", "secret"],
    "additionalProperties": False,
}

export_settings_schema: dict[str, Any] = {
    "type": "object",
    "description": "Where on the service the export's members go; may be empty (settings: {}).",
    "properties": {
        "upsert_path": {
            "type": "string", "pattern": PATH_PATTERN, "default": DEFAULT_UPSERT_PATH,
            "description": f"Path (after the connection's url) that joins and changes are POSTed to "
                           f"(default {DEFAULT_UPSERT_PATH}).",
        },
        "remove_path": {
            "type": "string", "pattern": PATH_PATTERN, "default": DEFAULT_REMOVE_PATH,
            "description": f"Path (after the connection's url) that leavers are POSTed to "
                           f"(default {DEFAULT_REMOVE_PATH}).",
        },
    },
    "additionalProperties": False,
}

mapping_schema: dict[str, Any] = {
    "type": "object",
    "description": "Segment columns that identify and fill each member sent.",
    "properties": {
        "identity": {**_COLUMN, "description": "Column holding the member's identity at your service (required)."},
        "fields": {
            "type": "object", "default": {},
            "description": "Fields sent with each member: {field: column}. A join sends every field, a change "
                           "only those whose column changed.",
            "additionalProperties": {**_COLUMN, "description": "Column whose value the field receives."},
        },
    },
    "required": ["identity"],
    "additionalProperties": False,
}
