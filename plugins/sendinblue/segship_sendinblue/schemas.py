"""JSON Schemas of the Brevo connection settings, export settings and mapping, with their defaults.

The core fills the schemas' defaults in before the destination reads a setting
(``segship.settings.with_defaults``): the constants here are the schemas' own.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.brevo.com/v3"
LEGACY_BASE_URL = "https://api.sendinblue.com/v3"
#: Brevo's General plan allows 10 requests/s on the contacts endpoints.
DEFAULT_REQUESTS_PER_SECOND = 10.0
#: GET /processes/{id} has a low hourly limit: start slow, back off to the maximum.
DEFAULT_PROCESS_POLL_INTERVAL = 5.0
DEFAULT_PROCESS_POLL_MAX_INTERVAL = 60.0
DEFAULT_PROCESS_TIMEOUT = 3600.0
#: Brevo's per-export profile limit in the Customer Insights feature we match.
DEFAULT_MAX_PROFILES = 1_000_000
DEFAULT_ATTRIBUTE_NAMES = {"first_name": "FIRSTNAME", "last_name": "LASTNAME", "phone": "SMS"}

# Brevo attribute names are upper-case letters, digits and underscores, starting with a letter.
_ATTRIBUTE_NAME = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$(?!\\n)", "maxLength": 64}
_COLUMN = {"type": "string", "minLength": 1}

connection_schema: dict[str, Any] = {
    "type": "object",
    "description": "A Brevo (formerly Sendinblue) account reached through its v3 API.",
    "properties": {
        "api_key": {
            "type": "string", "minLength": 1, "x-secret": True,
            "description": "Brevo API v3 key (Settings > SMTP & API > API keys), given as ${env:VAR} or ${file:PATH}.",
        },
        "base_url": {
            "type": "string", "pattern": "^https?://[^\\s/]+(/.*)?$(?!\\n)", "default": DEFAULT_BASE_URL,
            "description": f"API base URL: {DEFAULT_BASE_URL} (default), the legacy {LEGACY_BASE_URL}, "
                           "or a sandbox URL such as http://127.0.0.1:8080/v3.",
        },
        "requests_per_second": {
            "type": "number", "exclusiveMinimum": 0, "default": DEFAULT_REQUESTS_PER_SECOND,
            "description": "Pace of requests to the contacts endpoints: 10 on the General plan; "
                           "raise it for Advanced or Extended rate limits.",
        },
        "process_poll_interval": {
            "type": "number", "exclusiveMinimum": 0, "default": DEFAULT_PROCESS_POLL_INTERVAL,
            "description": "Seconds before the first poll of an import's process; the interval doubles "
                           "up to process_poll_max_interval (GET /processes has a low hourly limit).",
        },
        "process_poll_max_interval": {
            "type": "number", "exclusiveMinimum": 0, "default": DEFAULT_PROCESS_POLL_MAX_INTERVAL,
            "description": "Longest wait in seconds between two polls of an import's process.",
        },
        "process_timeout": {
            "type": "number", "exclusiveMinimum": 0, "default": DEFAULT_PROCESS_TIMEOUT,
            "description": "Seconds an import may stay queued or in process before its rows are failed "
                           "(they are retried on the next run).",
        },
    },
    "required": ["api_key"],
    "additionalProperties": False,
}

export_settings_schema: dict[str, Any] = {
    "type": "object",
    "description": "Which Brevo list the export's members are imported into.",
    "properties": {
        "list_id": {
            "type": "integer", "minimum": 1,
            "description": "ID of an existing Brevo contact list (Contacts > Lists) the members are added to.",
        },
        "max_profiles": {
            "type": "integer", "minimum": 1, "default": DEFAULT_MAX_PROFILES,
            "description": "Largest number of members this export may send; a larger segment stops the run "
                           "before anything is sent.",
        },
        "attribute_names": {
            "type": "object", "default": {},
            "description": "Brevo attribute names of the mapped first name, last name and phone, for accounts "
                           "whose attributes are named differently (e.g. NOME, PRENOM).",
            "properties": {
                "first_name": {**_ATTRIBUTE_NAME, "default": DEFAULT_ATTRIBUTE_NAMES["first_name"],
                               "description": "Attribute that receives the first name (default FIRSTNAME)."},
                "last_name": {**_ATTRIBUTE_NAME, "default": DEFAULT_ATTRIBUTE_NAMES["last_name"],
                              "description": "Attribute that receives the last name (default LASTNAME)."},
                "phone": {**_ATTRIBUTE_NAME, "default": DEFAULT_ATTRIBUTE_NAMES["phone"],
                          "description": "Attribute that receives the mobile phone number (default SMS)."},
            },
            "additionalProperties": False,
        },
        "default_country_code": {
            "type": "string", "pattern": "^\\+?[1-9][0-9]{0,3}$(?!\\n)",
            "description": "Country calling code (\"+33\" or \"33\") of phone numbers written without one: they "
                           "are read as that country's numbers (its trunk prefix dropped); without it such numbers "
                           "are invalid fields, left out of the contact.",
        },
    },
    "required": ["list_id"],
    "additionalProperties": False,
}

mapping_schema: dict[str, Any] = {
    "type": "object",
    "description": "Segment columns that fill the Brevo contact; the email identifies it.",
    "properties": {
        "email": {**_COLUMN, "description": "Column holding the contact's email address (required)."},
        "first_name": {**_COLUMN, "description": "Column holding the first name."},
        "last_name": {**_COLUMN, "description": "Column holding the last name."},
        "phone": {**_COLUMN, "description": "Column holding the mobile phone number, sent to the SMS attribute "
                                            "in E.164 (+ country code and number); a number that is not valid is "
                                            "left out of the contact."},
        "attributes": {
            "type": "object",
            "description": "More Brevo attributes: {BREVO_ATTRIBUTE: column}. Attributes unknown to the "
                           "account are ignored by Brevo.",
            "propertyNames": _ATTRIBUTE_NAME,
            "additionalProperties": {**_COLUMN, "description": "Column whose value the attribute receives."},
        },
    },
    "required": ["email"],
    "additionalProperties": False,
}
