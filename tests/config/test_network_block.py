"""A connection's ``network:`` block: the full block validates (for any plugin), and the schema offers it."""

from __future__ import annotations

import json

NETWORK = """
    network:
      proxy: http://ops:${env:PROXY_PASSWORD}@proxy.corp.example:3128
      tls: {ca_file: certs/corp-ca.pem, client_cert: certs/segship.pem, client_key: "${file:/run/secrets/segship.key}"}
      timeouts: {connect: 10, read: 60}
      retries: {max_attempts: 8, max_seconds: 120}
"""

CONFIG = """
version: 1
sources:
  crm: {{type: duckdb, path: profiles.csv}}
segments:
  vip: {{source: crm, key: customer_id, sql: SELECT * FROM crm}}
connections:
  braze-prod:
    type: braze
    display_name: Braze
    data_privacy_consent: true
    settings:
      api_key: ${{env:BRAZE_API_KEY}}
      rest_endpoint: https://rest.iad-01.braze.com
{braze_network}
  brevo:
    type: brevo
    display_name: Brevo
    data_privacy_consent: true
    settings: {{api_key: "${{env:BREVO_API_KEY}}"}}
    network: {{proxy: "${{env:EGRESS_PROXY_URL}}"}}
exports:
  vip-to-braze:
    display_name: VIP to Braze
    connection: braze-prod
    segments: [vip]
    settings: {{segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}}
    mapping: {{customer_id: customer_id, email: email}}
"""


def test_a_whole_network_block_validates_without_its_secrets(segship, write_config):
    write_config({"segship.yaml": CONFIG.format(braze_network=NETWORK.strip("\n"))})
    result = segship("validate", "-c", "segship.yaml")
    assert result.exit_code == 0, result


def test_the_schema_offers_the_network_block_to_every_connection_type(segship):
    schema = json.loads(segship("schema").stdout)
    connection = schema["$defs"]["connection"]
    assert connection["properties"]["network"] == {"$ref": "#/$defs/network"}
    network = schema["$defs"]["network"]
    assert set(network["properties"]) == {"proxy", "tls", "timeouts", "retries"}
    assert network["properties"]["tls"]["properties"]["client_key"]["x-secret"] is True
    assert {"braze", "sendinblue"} <= set(connection["properties"]["type"]["enum"])
    assert "network" not in json.dumps(schema["$defs"]["braze.connection"])  # the core's, not a plugin's
