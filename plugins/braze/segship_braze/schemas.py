"""JSON Schemas of the Braze connection settings, export settings and mapping, with their defaults.

The core fills the schemas' defaults in before the destination reads a setting
(``segship.settings.with_defaults``): the constants here are the schemas' own.
"""

from __future__ import annotations

from typing import Any

#: Braze's REST endpoints, one per instance (Braze > Settings > APIs and Identifiers).
REST_ENDPOINTS = (
    *(f"https://rest.iad-0{n}.braze.com" for n in range(1, 9)),
    "https://rest.us-10.braze.com",
    "https://rest.fra-01.braze.eu",
    "https://rest.fra-02.braze.eu",
    "https://rest.au-01.braze.com",
)
#: /users/track takes at most 75 attributes objects per request.
MAX_BATCH_SIZE = 75
DEFAULT_BATCH_SIZE = MAX_BATCH_SIZE
#: /users/track's default limit: 3,000 requests per 3 seconds per workspace.
DEFAULT_REQUESTS_PER_3S = 3000
DEFAULT_MEMBERSHIP_ATTRIBUTE = "segship_segments"

# A documented instance, or any http(s) URL that is not on a Braze domain (a sandbox, a proxy):
# a mistyped or dashboard Braze host (dashboard-01.braze.com) is refused at validate time.
_DOCUMENTED = "|".join(url.replace(".", "\\.") for url in REST_ENDPOINTS)
REST_ENDPOINT_PATTERN = f"^(({_DOCUMENTED})|https?://(?![^/]*braze\\.(com|eu)(/|:|$))[^\\s/]+(/\\S*)?)/?$(?!\\n)"
_COLUMN = {"type": "string", "minLength": 1}

connection_schema: dict[str, Any] = {
    "type": "object",
    "description": "A Braze workspace reached through its REST API.",
    "properties": {
        "api_key": {
            "type": "string", "minLength": 1, "x-secret": True,
            "description": "Braze REST API key with the users.track permission (Settings > APIs and Identifiers), "
                           "given as ${env:VAR} or ${file:PATH}.",
        },
        "rest_endpoint": {
            "type": "string", "pattern": REST_ENDPOINT_PATTERN, "examples": list(REST_ENDPOINTS),
            "description": "REST endpoint of the workspace's instance, e.g. https://rest.iad-01.braze.com "
                           f"(one of {', '.join(REST_ENDPOINTS)}), or the URL of a sandbox such as "
                           "http://127.0.0.1:8080.",
        },
        "batch_size": {
            "type": "integer", "minimum": 1, "maximum": MAX_BATCH_SIZE, "default": DEFAULT_BATCH_SIZE,
            "description": "Users per /users/track request: at most 75; lower it if your contract allows fewer "
                           "(some allow 50).",
        },
        "requests_per_3s": {
            "type": "integer", "minimum": 1, "default": DEFAULT_REQUESTS_PER_3S,
            "description": "The workspace's /users/track rate limit in requests per 3 seconds (Braze's default "
                           "3000); requests are paced under it so other integrations keep some room.",
        },
    },
    "required": ["api_key", "rest_endpoint"],
    "additionalProperties": False,
}

export_settings_schema: dict[str, Any] = {
    "type": "object",
    "description": "How the export's members are marked in Braze.",
    "properties": {
        "segment_api_identifier": {
            "type": "string", "minLength": 1, "maxLength": 255,
            "description": "Value added to each member's membership attribute (and removed when it leaves); "
                           "a Braze segment filters on it, e.g. the segment's API identifier.",
        },
        "membership_attribute": {
            "type": "string", "minLength": 1, "maxLength": 255, "default": DEFAULT_MEMBERSHIP_ATTRIBUTE,
            "description": "Custom array attribute that lists the segments a user is in "
                           f"(default {DEFAULT_MEMBERSHIP_ATTRIBUTE}).",
        },
        "update_existing_only": {
            "type": "boolean", "default": False,
            "description": "Only update users who already exist in Braze (_update_existing_only); a member "
                           "unknown to Braze is then a reject instead of a new user.",
        },
    },
    "required": ["segment_api_identifier"],
    "additionalProperties": False,
}

mapping_schema: dict[str, Any] = {
    "type": "object",
    "description": "Segment columns that identify and fill the Braze user.",
    "properties": {
        "customer_id": {**_COLUMN, "description": "Column holding the customer ID, sent as the user's external_id "
                                                  "(required)."},
        "email": {**_COLUMN, "description": "Column holding the email address, set as the user's email (required)."},
        "attributes": {
            "type": "object",
            "description": "More user attributes: {braze_attribute: column}; Braze profile fields (first_name, "
                           "last_name, phone, …) or custom attributes.",
            "additionalProperties": {**_COLUMN, "description": "Column whose value the attribute receives."},
        },
    },
    "required": ["customer_id", "email"],
    "additionalProperties": False,
}
