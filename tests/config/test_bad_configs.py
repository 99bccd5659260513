"""A table of bad configs, each run through the real ``segship validate``.

Every case asserts exit code 2, the message, and the exact ``file:line:col`` of the
error, on a line of its own in the form ``file:line:col: message``. Configs are written
into ``tmp_path`` and the CLI runs there, so files are shown relative to it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import re

import pytest

# A valid single-file config every case below is a variation of (same line numbers where it can).
VALID = """
version: 1
sources:
  crm:
    type: duckdb
    path: profiles.csv
segments:
  vip:
    source: crm
    key: customer_id
    sql: SELECT * FROM crm
connections:
  brevo:
    type: sendinblue
    display_name: Brevo
    data_privacy_consent: true
    settings:
      api_key: ${env:BREVO_API_KEY}
exports:
  vip-to-brevo:
    display_name: VIP to Brevo
    connection: brevo
    segments: [vip]
    settings: {list_id: 3}
    mapping: {email: email}
"""

# the same for Braze
VALID_BRAZE = """
version: 1
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: customer_id, sql: SELECT * FROM crm}
connections:
  braze:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings:
      api_key: ${env:BRAZE_API_KEY}
      rest_endpoint: https://rest.iad-01.braze.com
exports:
  vip-to-braze:
    display_name: VIP to Braze
    connection: braze
    segments: [vip]
    settings: {segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}
    mapping:
      customer_id: customer_id
      email: email
"""


ERROR_LINE = re.compile(r"^\S+:\d+:\d+: ")

# Fake keys that look real, for the literal-secret cases; assembled so that no key-shaped
# literal sits in the repository for secret scanners to flag.
FAKE_BREVO_KEY = "xkeysib-" + "0123456789abcdef" * 2
FAKE_BRAZE_KEY = "-".join(("a1b2c3d4", "e5f6", "4a7b", "8c9d", "0e1f2a3b4c5d"))
FAKE_DB_PASSWORD = "Tr0ub4dor" + "-and-3"


@dataclass
class Case:
    id: str
    files: dict[str, str] | str          # one segship.yaml, or {relative path: text}
    where: str                           # exact file:line:col of the error
    message: str                         # a substring of the message after "file:line:col: "
    args: tuple[str, ...] = ()           # global options before `validate`
    env: dict[str, str] = field(default_factory=dict)
    config: str = "segship.yaml"         # what -c points at
    hidden: tuple[str, ...] = ()         # text that must not appear anywhere in the output
    count: int = 1                       # errors reported in all (more when one mistake breaks two rules)


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def _with_network(block: str) -> str:
    """VALID with ``block`` (a ``network:`` of the connection, at line 18) after its settings."""
    return _replace(VALID, "      api_key: ${env:BREVO_API_KEY}\n", "      api_key: ${env:BREVO_API_KEY}\n" + block)


CASES = [
    # -- YAML itself --------------------------------------------------------------------------------
    Case("malformed-yaml-indentation",
         """
         version: 1
         sources:
           crm:
             type: duckdb
            path: profiles.csv
         """,
         "segship.yaml:5:4", "invalid YAML: did not find expected key (while parsing a block mapping"),
    Case("malformed-yaml-tab",
         "version: 1\nsources:\n  crm:\n\ttype: duckdb\n",
         "segship.yaml:4:1", "invalid YAML: a tab character; YAML indents with spaces, never tabs"),
    Case("malformed-yaml-unclosed-flow-list",
         """
         version: 1
         segments:
           vip: {source: crm, key: id, sql: [SELECT 1}
         """,
         "segship.yaml:3:45", "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence "
                              "that starts at line 3, column 36"),
    Case("malformed-yaml-unclosed-quote",
         """
         version: 1
         segments:
           vip:
             sql: "SELECT * FROM crm
         """,
         "segship.yaml:5:1", "invalid YAML: found unexpected end of stream (while scanning a quoted scalar that "
                             "starts at line 4, column 10"),
    Case("malformed-yaml-colon-in-plain-value",
         """
         version: 1
         segments:
           vip:
             sql: SELECT a: b FROM crm
         """,
         "segship.yaml:4:18", "invalid YAML: mapping values are not allowed"),
    Case("duplicate-key-in-one-file",
         """
         version: 1
         sources:
           crm:
             type: duckdb
             path: a.csv
             path: b.csv
         """,
         "segship.yaml:6:5", "duplicate key 'path' (first defined at line 5)"),
    Case("duplicate-section-in-one-file",
         """
         version: 1
         sources: {}
         segments: {}
         sources: {}
         """,
         "segship.yaml:4:1", "duplicate key 'sources' (first defined at line 2)"),
    Case("alias-bomb",  # "billion laughs": nine levels of nine aliases would build 9**9 lists
         "version: 1\nsegments:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
             f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]\n" for level in range(1, 10)),
         "segship.yaml:7:7", "invalid YAML: aliases (*name) and merge keys (<<) repeat more than 10,000 nodes in "
                             "this file; a file may repeat 10 times the nodes it writes (34), or 10,000 if that is more"),
    Case("list-as-a-key",
         "version: 1\nsegments:\n  ? [vip, rich]\n  : {source: crm, key: id, sql: SELECT 1}\n",
         "segship.yaml:3:5", "invalid YAML: a key must be a plain value such as a name, not a list or a mapping"),
    Case("non-mapping-file",
         """
         - version: 1
         - sources: {}
         """,
         "segship.yaml:1:1", "a config file must be a mapping of sections"),
    Case("empty-file",
         "# nothing but a comment\n",
         "segship.yaml:1:1", "the file is empty: expected a mapping of sections"),
    Case("empty-config-directory",
         {"conf/README.md": "no yaml here\n"},
         "conf:1:1", "no .yaml or .yml files in this directory", config="conf"),
    Case("config-not-found",
         {"other.yaml": "version: 1\n"},
         "missing.yaml:1:1", "config not found", config="missing.yaml"),
    # -- version and top level ----------------------------------------------------------------------
    Case("version-missing",
         """
         sources: {}
         """,
         "segship.yaml:1:1", "the config: missing required key 'version' (add version: 1)"),
    Case("version-not-1",
         _replace(VALID, "version: 1", "version: 2"),
         "segship.yaml:1:10", "version must be 1; got 2"),
    Case("version-a-string",
         _replace(VALID, "version: 1", "version: '1'"),
         "segship.yaml:1:10", "version must be 1; got '1'"),
    Case("unknown-top-level-key",
         VALID + "source:\n  crm2: {type: duckdb, path: x.csv}\n",
         "segship.yaml:25:1", "unknown key 'source' in the config (did you mean 'sources'?); expected one of: connections, exports, "
                              "notifications, segments, sources, state, sync_log, version"),
    # -- wrong types ------------------------------------------------------------------------------
    Case("section-a-list",
         _replace(VALID, "sources:\n  crm:\n    type: duckdb\n    path: profiles.csv\n",
                  "sources:\n  - crm\n"),
         "segship.yaml:3:3", "sources must be a mapping, not a list"),
    Case("sql-not-a-string",
         _replace(VALID, "sql: SELECT * FROM crm", "sql: 42"),
         "segship.yaml:10:10", "segments.vip.sql must be a string, not an integer"),
    Case("export-segments-not-a-list",
         _replace(VALID, "segments: [vip]", "segments: vip"),
         "segship.yaml:22:15", "exports.vip-to-brevo.segments must be a list, not a string"),
    Case("consent-a-string",
         _replace(VALID, "data_privacy_consent: true", "data_privacy_consent: 'yes'"),
         "segship.yaml:15:27", "connections.brevo.data_privacy_consent must be a boolean, not a string"),
    Case("segment-key-empty",
         _replace(VALID, "key: customer_id", "key: ''"),
         "segship.yaml:9:10", "segments.vip.key must not be empty"),
    # -- unknown keys -----------------------------------------------------------------------------
    Case("unknown-key-in-connection",
         _replace(VALID, "    data_privacy_consent: true\n", "    consent: true\n"),
         "segship.yaml:15:5", "unknown key 'consent' in connections.brevo (did you mean 'data_privacy_consent'?); "
                              "expected one of: data_privacy_consent, display_name, network, settings, type, usable_by",
         count=2),  # and the consent is then missing
    Case("unknown-key-in-plugin-connection-settings",
         _replace(VALID, "      api_key: ${env:BREVO_API_KEY}\n",
                  "      api_key: ${env:BREVO_API_KEY}\n      api_url: https://api.brevo.com/v3\n"),
         "segship.yaml:18:7", "unknown key 'api_url' in connections.brevo.settings (did you mean 'base_url'?); "
                              "expected one of: api_key, base_url"),
    Case("unknown-key-in-plugin-export-settings",
         _replace(VALID, "settings: {list_id: 3}", "settings: {list_id: 3, folder_id: 2}"),
         "segship.yaml:23:28", "unknown key 'folder_id' in exports.vip-to-brevo.settings; expected one of:"),
    Case("unknown-key-in-source-plugin-options",
         _replace(VALID, "path: profiles.csv", "paht: profiles.csv"),
         "segship.yaml:5:5", "unknown key 'paht' in sources.crm (did you mean 'path'?); expected one of: format, "
                              "path, type",
         count=2),  # and path is missing
    # -- missing required keys ----------------------------------------------------------------------
    Case("segment-missing-key",
         _replace(VALID, "    key: customer_id\n", ""),
         "segship.yaml:7:3", "segments.vip: missing required key 'key'"),
    Case("connection-missing-display-name",
         _replace(VALID, "    display_name: Brevo\n", ""),
         "segship.yaml:12:3", "connections.brevo: missing required key 'display_name'"),
    Case("plugin-connection-settings-missing-api-key",
         _replace(VALID, "    settings:\n      api_key: ${env:BREVO_API_KEY}\n", "    settings: {}\n"),
         "segship.yaml:16:5", "connections.brevo.settings: missing required key 'api_key'"),
    Case("export-missing-mapping",
         _replace(VALID, "    mapping: {email: email}\n", ""),
         "segship.yaml:19:3", "exports.vip-to-brevo: missing required key 'mapping'"),
    Case("brevo-mapping-missing-email",
         _replace(VALID, "mapping: {email: email}", "mapping: {first_name: first_name}"),
         "segship.yaml:24:5", "exports.vip-to-brevo.mapping: missing required key 'email'"),
    # -- names ------------------------------------------------------------------------------------
    Case("bad-segment-name",
         _replace(VALID, "  vip:\n", "  vip customers:\n"),
         "segship.yaml:7:3", "invalid name 'vip customers' in segments: use letters, digits, '_' or '-'",
         count=2),  # and the export's segment 'vip' is then not defined
    Case("bad-connection-name-starts-with-digit",
         _replace(_replace(VALID, "  brevo:\n", "  1brevo:\n"), "connection: brevo", "connection: 1brevo"),
         "segship.yaml:12:3", "invalid name '1brevo' in connections"),
    Case("bad-export-name-not-first",
         VALID + "  vip/braze:\n    display_name: x\n    connection: brevo\n    segments: [vip]\n"
                 "    settings: {list_id: 4}\n    mapping: {email: email}\n",
         "segship.yaml:25:3", "invalid name 'vip/braze' in exports: use letters, digits, '_' or '-'"),
    # a name ending in a newline (a quoted "vip\n"): Python's $ would match before it
    Case("source-name-ends-in-a-newline",
         _replace(_replace(VALID, "  crm:\n", '  "crm\\n":\n'), "source: crm", 'source: "crm\\n"'),
         "segship.yaml:3:3", "invalid name 'crm\\n' in sources: use letters, digits, '_' or '-'"),
    Case("segment-name-ends-in-a-newline",
         _replace(_replace(VALID, "  vip:\n", '  "vip\\n":\n'), "segments: [vip]", 'segments: ["vip\\n"]'),
         "segship.yaml:7:3", "invalid name 'vip\\n' in segments: use letters, digits, '_' or '-'"),
    Case("connection-name-ends-in-a-newline",
         _replace(_replace(VALID, "  brevo:\n", '  "brevo\\n":\n'), "connection: brevo", 'connection: "brevo\\n"'),
         "segship.yaml:12:3", "invalid name 'brevo\\n' in connections: use letters, digits, '_' or '-'"),
    Case("export-name-ends-in-a-newline",
         _replace(VALID, "  vip-to-brevo:\n", '  "vip-to-brevo\\n":\n'),
         "segship.yaml:19:3", "invalid name 'vip-to-brevo\\n' in exports: use letters, digits, '_' or '-'"),
    # -- connections --------------------------------------------------------------------------------
    Case("unknown-connection-type",
         _replace(VALID, "type: sendinblue", "type: hubspot"),
         "segship.yaml:13:11", "connections.brevo.type must be one of"),
    Case("usable-by-bad-role",
         _replace(VALID, "    display_name: Brevo\n", "    display_name: Brevo\n    usable_by: [admins, marketing]\n"),
         "segship.yaml:15:25", "connections.brevo.usable_by.1 must be one of 'admins', 'contributors'; "
                               "got 'marketing'"),
    Case("usable-by-empty",
         _replace(VALID, "    display_name: Brevo\n", "    display_name: Brevo\n    usable_by: []\n"),
         "segship.yaml:15:16", "connections.brevo.usable_by must not be empty"),
    Case("consent-missing-on-used-connection",
         _replace(VALID, "    data_privacy_consent: true\n", ""),
         "segship.yaml:12:3", "connection 'brevo' is used by export 'vip-to-brevo' but has no data privacy "
                              "consent: set data_privacy_consent: true"),
    Case("consent-false",
         _replace(VALID, "data_privacy_consent: true", "data_privacy_consent: false"),
         "segship.yaml:15:27", "connection 'brevo' is used by export 'vip-to-brevo' but has no data privacy "
                               "consent"),
    Case("literal-api-key",
         _replace(VALID, "api_key: ${env:BREVO_API_KEY}", f"api_key: {FAKE_BREVO_KEY}"),
         "segship.yaml:17:16", "connections.brevo.settings.api_key is a secret: write a reference such as "
                               "${env:SENDINBLUE_API_KEY} or ${file:path/to/secret}, never the secret itself",
         hidden=("xkeysib", "0123456789abcdef")),
    Case("literal-api-key-of-wrong-type",
         _replace(VALID, "api_key: ${env:BREVO_API_KEY}", "api_key: 987654321987654321"),
         "segship.yaml:17:16", "connections.brevo.settings.api_key must be a string, not an integer",
         hidden=("987654321987654321",), count=2),  # and it is a literal secret
    Case("literal-braze-api-key",
         _replace(VALID_BRAZE, "api_key: ${env:BRAZE_API_KEY}", f"api_key: '{FAKE_BRAZE_KEY}'"),
         "segship.yaml:12:16", "connections.braze.settings.api_key is a secret: write a reference",
         hidden=("a1b2c3d4", "0e1f2a3b4c5d")),
    Case("literal-postgres-url-with-password",
         _replace(VALID, "    type: duckdb\n    path: profiles.csv\n",
                  f"    type: postgres\n    url: postgresql://app:{FAKE_DB_PASSWORD}@db.example.com:5432/crm\n"),
         "segship.yaml:5:10", "sources.crm.url is a secret: write a reference such as ${env:CRM_URL} or "
                              "${file:path/to/secret}, never the secret itself",
         hidden=(FAKE_DB_PASSWORD, "db.example.com")),
    Case("literal-adbc-option",
         _replace(VALID, "    type: duckdb\n    path: profiles.csv\n",
                  "    type: adbc\n    driver: adbc_driver_snowflake\n    uri: ${env:SNOWFLAKE_URI}\n"
                  f"    options:\n      adbc.snowflake.sql.auth_token: {FAKE_DB_PASSWORD}\n"),
         "segship.yaml:8:38", "sources.crm.options.adbc.snowflake.sql.auth_token is a secret: write a reference "
                              "such as ${env:CRM_OPTIONS_ADBC_SNOWFLAKE_SQL_AUTH_TOKEN}",
         hidden=(FAKE_DB_PASSWORD,)),
    # -- a connection's network: block (any plugin) ---------------------------------------------
    Case("network-literal-proxy-password",
         _with_network(f'    network: {{proxy: "http://ops:{FAKE_DB_PASSWORD}@proxy.corp.example:3128"}}\n'),
         "segship.yaml:18:22", "connections.brevo.network.proxy holds a password: write the URL by reference "
                               "(${env:EGRESS_PROXY_URL}) or its password (http://user:${env:PROXY_PASSWORD}@host:port)",
         hidden=(FAKE_DB_PASSWORD,)),
    Case("network-literal-client-key",
         _with_network("    network:\n      tls: {client_cert: certs/segship.pem, client_key: certs/segship.key}\n"),
         "segship.yaml:19:57", "connections.brevo.network.tls.client_key is a secret: write a reference such as "
                               "${file:/run/secrets/segship.key}"),
    Case("network-client-key-without-certificate",
         _with_network('    network: {tls: {client_key: "${file:/run/secrets/segship.key}"}}\n'),
         "segship.yaml:18:21", "connections.brevo.network.tls.client_key needs 'client_cert' beside it"),
    Case("network-proxy-not-http",
         _with_network('    network: {proxy: "socks5://proxy.corp.example:1080"}\n'),
         "segship.yaml:18:22", "connections.brevo.network.proxy: 'socks5://proxy.corp.example:1080' is not a proxy "
                               "URL (expected http://host:port or https://host:port)"),
    Case("network-unknown-key",
         _with_network("    network: {timeout: {read: 5}}\n"),
         "segship.yaml:18:15", "unknown key 'timeout' in connections.brevo.network (did you mean 'timeouts'?); "
                               "expected one of: proxy, retries, timeouts, tls"),
    Case("network-zero-timeout",
         _with_network("    network: {timeouts: {connect: 0, read: 30}}\n"),
         "segship.yaml:18:35", "connections.brevo.network.timeouts.connect must be > 0; got 0"),
    Case("network-no-attempt",
         _with_network("    network: {retries: {max_attempts: 0}}\n"),
         "segship.yaml:18:39", "connections.brevo.network.retries.max_attempts must be >= 1; got 0"),
    Case("brevo-bad-base-url",
         _replace(VALID, "      api_key: ${env:BREVO_API_KEY}\n",
                  "      api_key: ${env:BREVO_API_KEY}\n      base_url: api.brevo.com/v3\n"),
         "segship.yaml:18:17", "connections.brevo.settings.base_url: 'api.brevo.com/v3' does not match"),
    Case("reference-in-export-settings",
         _replace(VALID_BRAZE, "segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001",
                  "segment_api_identifier: '${env:SEGMENT_ID}'"),
         "segship.yaml:19:40", "exports.vip-to-braze.settings.segment_api_identifier: ${env:…}/${file:…} "
                               "references are resolved only in connection settings"),
    # -- references ---------------------------------------------------------------------------------
    Case("segment-source-dangling",
         _replace(VALID, "source: crm", "source: warehouse"),
         "segship.yaml:8:13", "segment 'vip' uses source 'warehouse', which is not defined (sources: crm)"),
    Case("export-connection-dangling",
         _replace(VALID, "connection: brevo", "connection: brevo-prod"),
         "segship.yaml:21:17", "export 'vip-to-brevo' uses connection 'brevo-prod', which is not defined "
                               "(connections: brevo)"),
    Case("export-segment-dangling",
         _replace(VALID, "segments: [vip]", "segments: [vip, churned]"),
         "segship.yaml:22:21", "export 'vip-to-brevo' uses segment 'churned', which is not defined (segments: vip)"),
    # -- plugin rules -------------------------------------------------------------------------------
    Case("braze-mapping-missing-customer-id",
         _replace(VALID_BRAZE, "      customer_id: customer_id\n", ""),
         "segship.yaml:20:5", "exports.vip-to-braze.mapping: missing required key 'customer_id'"),
    Case("braze-mapping-missing-email",
         _replace(VALID_BRAZE, "      email: email\n", ""),
         "segship.yaml:20:5", "exports.vip-to-braze.mapping: missing required key 'email'"),
    Case("braze-batch-size-over-75",
         _replace(VALID_BRAZE, "      rest_endpoint: https://rest.iad-01.braze.com\n",
                  "      rest_endpoint: https://rest.iad-01.braze.com\n      batch_size: 100\n"),
         "segship.yaml:14:19", "connections.braze.settings.batch_size must be <= 75; got 100"),
    Case("brevo-list-id-a-string",
         _replace(VALID, "settings: {list_id: 3}", "settings: {list_id: newsletter}"),
         "segship.yaml:23:25", "exports.vip-to-brevo.settings.list_id must be an integer, not a string"),
    Case("brevo-list-id-a-float",
         _replace(VALID, "settings: {list_id: 3}", "settings: {list_id: 3.5}"),
         "segship.yaml:23:25", "exports.vip-to-brevo.settings.list_id must be an integer, not a number"),
    Case("brevo-list-id-missing",
         _replace(VALID, "settings: {list_id: 3}", "settings: {}"),
         "segship.yaml:23:5", "exports.vip-to-brevo.settings: missing required key 'list_id'"),
    # -- schedule and safeguards --------------------------------------------------------------------
    Case("invalid-cron-schedule",
         VALID + "    schedule: '61 * * * *'\n",
         "segship.yaml:25:15", "exports.vip-to-brevo.schedule: '61 * * * *' is not a valid cron expression"),
    Case("cron-schedule-not-a-string",
         VALID + "    schedule: 5\n",
         "segship.yaml:25:15", "exports.vip-to-brevo.schedule must be a string, not an integer"),
    Case("safeguard-fraction-above-1",
         VALID + "    safeguards: {max_removed_fraction: 1.5}\n",
         "segship.yaml:25:40", "exports.vip-to-brevo.safeguards.max_removed_fraction must be <= 1; got 1.5"),
    Case("safeguard-max-profiles-zero",
         VALID + "    safeguards: {max_profiles: 0}\n",
         "segship.yaml:25:32", "exports.vip-to-brevo.safeguards.max_profiles must be >= 1; got 0"),
    Case("safeguard-unknown-key",
         VALID + "    safeguards: {max_removed: 0.2}\n",
         "segship.yaml:25:18", "unknown key 'max_removed' in exports.vip-to-brevo.safeguards (did you mean "
                               "'max_removed_fraction'?); expected one of: max_profiles, max_removed_fraction"),
    # -- directories --------------------------------------------------------------------------------
    Case("duplicate-segment-across-two-files",
         {"conf/a.yaml": "version: 1\nsegments:\n  vip: {source: crm, key: id, sql: SELECT 1}\n",
          "conf/b.yaml": "version: 1\nsources:\n  crm: {type: duckdb, path: x.csv}\nsegments:\n"
                         "  vip: {source: crm, key: id, sql: SELECT 2}\n"},
         "conf/b.yaml:5:3", "segment 'vip' is defined twice: first at conf/a.yaml:3:3", config="conf"),
    Case("duplicate-connection-in-a-subfolder",
         {"conf/connections.yaml": VALID,
          "conf/more/brevo.yaml": "version: 1\nconnections:\n  brevo:\n    type: sendinblue\n"
                                  "    display_name: Brevo again\n    settings: {api_key: '${env:K}'}\n"},
         "conf/more/brevo.yaml:3:3", "connection 'brevo' is defined twice: first at conf/connections.yaml:12:3",
         config="conf"),
    Case("versions-differ-across-files",
         {"conf/a.yaml": "version: 1\n", "conf/b.yaml": "version: 2\n"},
         "conf/b.yaml:1:1", "'version' is defined twice: first at conf/a.yaml:1:1", config="conf"),
    Case("non-mapping-file-in-a-directory",
         {"conf/a.yaml": VALID, "conf/b.yaml": "just a string\n"},
         "conf/b.yaml:1:1", "a config file must be a mapping of sections", config="conf"),
    Case("dangling-reference-across-files",
         {"conf/a.yaml": _replace(VALID, "segments: [vip]", "segments: [vip, churned]"),
          "conf/b.yaml": "version: 1\nsegments:\n  lapsed: {source: crm, key: id, sql: SELECT 1}\n"},
         "conf/a.yaml:22:21", "uses segment 'churned', which is not defined (segments: lapsed, vip)", config="conf"),
    Case("empty-section-in-one-file-entries-in-another",
         {"conf/a.yaml": "version: 1\nsegments:\n", "conf/b.yaml": VALID},
         "conf/a.yaml:2:10", "segments must be a mapping, not empty (null)", config="conf"),
    Case("dangling-reference-among-many-names",  # the message lists 20 of them, not thousands
         {"conf/a.yaml": _replace(VALID, "segments: [vip]", "segments: [vip, churned]"),
          "conf/b.yaml": "version: 1\nsegments:\n" + "".join(
              f"  s{index:02d}: {{source: crm, key: id, sql: SELECT 1}}\n" for index in range(24))},
         "conf/a.yaml:22:21", "uses segment 'churned', which is not defined (segments: s00, s01, s02, s03, s04, s05, "
                              "s06, s07, s08, s09, s10, s11, s12, s13, s14, s15, s16, s17, s18, s19 and 5 more)",
         config="conf"),
    # -- state --------------------------------------------------------------------------------------
    Case("state-path-and-url",
         _replace(VALID, "version: 1\n", "version: 1\nstate:\n  path: .segship/state.db\n"
                                           "  url: ${env:SEGSHIP_STATE_URL}\n"),
         "segship.yaml:4:3", "state: give either path (a SQLite file) or url (PostgreSQL), not both"),
    Case("state-literal-url",
         _replace(VALID, "version: 1\n", "version: 1\nstate:\n  url: postgresql://segship:" + "hunter2" +
                  "-state@db.example.com/segship\n"),
         "segship.yaml:3:8", "state.url is a secret (it holds the database password): write a reference such as "
                             "${env:SEGSHIP_STATE_URL}",
         hidden=("hunter2-state", "db.example.com")),
    # -- roles --------------------------------------------------------------------------------------
    Case("contributor-through-admins-only-connection-option",
         VALID,
         "segship.yaml:21:17", "export 'vip-to-brevo' uses connection 'brevo', which only admins may use; "
                               "you run as contributor",
         args=("--role", "contributor")),
    Case("contributor-through-admins-only-connection-env",
         _replace(VALID, "    display_name: Brevo\n", "    display_name: Brevo\n    usable_by: [admins]\n"),
         "segship.yaml:22:17", "export 'vip-to-brevo' uses connection 'brevo', which only admins may use",
         env={"SEGSHIP_ROLE": "contributor"}),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory, segship_runner, file_writer) -> dict[str, object]:
    """Every case run once, concurrently (each CLI start takes most of a second), by case id.

    Each case gets its own folder and its own ``segship validate`` process; running
    them side by side only saves wall time.
    """

    def run(case: Case):
        folder = tmp_path_factory.mktemp(case.id)
        file_writer(folder, {"segship.yaml": case.files} if isinstance(case.files, str) else case.files)
        return segship_runner([*case.args, "validate", "-c", case.config], cwd=folder, env=case.env)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip([case.id for case in CASES], pool.map(run, CASES), strict=True))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_config(case: Case, results) -> None:
    result = results[case.id]

    assert result.exit_code == 2, result
    lines = result.stderr.splitlines()
    placed = [line for line in lines if line.startswith(case.where + ": ")]
    assert placed, f"no error at {case.where}\n{result}"
    assert any(case.message in line for line in placed), f"expected {case.message!r} at {case.where}\n{result}"
    assert "Traceback" not in result.output, result
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert len(errors) == case.count, f"expected {case.count} error(s)\n{result}"
    for text in case.hidden:
        assert text not in result.output, f"{text!r} leaked into the output\n{result}"


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("text", [VALID, VALID_BRAZE], ids=["brevo", "braze"])
def test_the_base_configs_are_valid(text: str, segship, write_config) -> None:
    """Each bad case is one change away from a config that validates (without its secret set)."""
    write_config({"segship.yaml": text})
    result = segship("validate", "-c", "segship.yaml")
    assert result.exit_code == 0, result
