"""Property: whatever YAML a config holds, loading it gives a config or located errors, never a crash.

Random text, random documents and random mutations of a valid config go through the loader and
validator in-process (fast); a few go through the real ``segship validate``, which must exit 0 or
2 with one ``file:line:col: message`` line per error and no traceback.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from segship.config import ConfigError, load_config
from segship.plugins import get_plugins

from ..conftest import run_segship

VALID: dict[str, Any] = yaml.safe_load("""
version: 1
state: {path: .segship/state.db}
sources:
  crm: {type: duckdb, path: profiles.csv}
segments:
  vip: {source: crm, key: customer_id, sql: SELECT * FROM crm}
connections:
  brevo:
    type: sendinblue
    display_name: Brevo
    data_privacy_consent: true
    settings: {api_key: "${env:BREVO_API_KEY}"}
  braze:
    type: braze
    display_name: Braze
    usable_by: [admins, contributors]
    data_privacy_consent: true
    settings: {api_key: "${env:BRAZE_API_KEY}", rest_endpoint: "https://rest.iad-01.braze.com"}
exports:
  vip-to-brevo:
    display_name: VIP to Brevo
    connection: brevo
    segments: [vip]
    settings: {list_id: 3}
    mapping: {email: email, first_name: first_name, attributes: {TIER: tier}}
    safeguards: {max_profiles: 1000, max_removed_fraction: 0.2}
  vip-to-braze:
    display_name: VIP to Braze
    connection: braze
    segments: [vip]
    settings: {segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}
    mapping: {customer_id: customer_id, email: email, attributes: {first_name: first_name}}
    schedule: "0 * * * *"
""")

# JSON-like values YAML can write, with the names and words a config uses
words = st.sampled_from(["version", "state", "sources", "segments", "connections", "exports", "type", "duckdb",
                         "braze", "sendinblue", "brevo", "settings", "mapping", "segments", "vip", "crm", "email",
                         "${env:X}", "${file:/etc/passwd}", "", " ", "-", "<<", "null"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), words)
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.one_of(words, st.text(max_size=8)),
                                                                          inner, max_size=5)), max_leaves=20)
yaml_texts = st.text(alphabet=st.sampled_from(list("abv: -[]{},&*!|>'\"#%@`?\n\t 01.~<=$")) | st.characters(exclude_categories=("Cs",)),
                     max_size=120)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def check_loads_or_locates(text: str) -> None:
    """Load ``text`` as segship.yaml: a config, or ConfigError whose every issue is placed in the file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "segship.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, get_plugins())
        except ConfigError as error:
            assert error.issues
            lines = max(1, len(text.splitlines()) + 1)
            for issue in error.issues:
                where = issue.location
                assert Path(where.file).name == "segship.yaml", issue
                assert 1 <= where.line <= lines and where.column >= 1, issue
                assert issue.message.strip() and "Traceback" not in issue.message


def paths_in(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_in(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_in(item, prefix + (index,))
    return found


def mutate(document: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """The document with one node deleted, replaced, given an extra key, or its key renamed."""
    document = yaml.safe_load(yaml.safe_dump(document))  # a deep copy
    path = data.draw(st.sampled_from(paths_in(document)[1:]))
    parent = document
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    operation = data.draw(st.sampled_from(["delete", "replace", "add", "rename"]))
    if operation == "delete":
        del parent[last]
    elif operation == "replace":
        parent[last] = data.draw(documents)
    elif operation == "add" and isinstance(parent[last], dict):
        parent[last][data.draw(words | st.text(max_size=8))] = data.draw(documents)
    elif operation == "rename" and isinstance(parent, dict):
        parent[data.draw(words | st.text(max_size=8))] = parent.pop(last)
    return document


@PROPERTY_SETTINGS
@given(text=yaml_texts)
@example("a: &x [*x]")                    # an alias inside itself
@example("version: 1\nexports: &x {a: *x}")
@example("[" * 5000 + "]" * 5000)          # deeper than Python's recursion limit
@example("version: 1\nconnections: {c: {type: [braze], settings: {}}}")
def test_any_yaml_text_loads_or_is_located(text):
    check_loads_or_locates(text)


@PROPERTY_SETTINGS
@given(document=documents)
def test_any_yaml_document_loads_or_is_located(document):
    check_loads_or_locates(yaml.safe_dump(document, allow_unicode=True))


@settings(PROPERTY_SETTINGS, max_examples=60)  # each validates a whole config: ~0.1 s
@given(data=st.data(), flow=st.booleans())
def test_mutations_of_a_valid_config_load_or_are_located(data, flow):
    document = VALID
    for _ in range(data.draw(st.integers(1, 3))):
        document = mutate(document, data)
    check_loads_or_locates(yaml.safe_dump(document, allow_unicode=True, default_flow_style=flow, sort_keys=False))


LOCATED_LINE = re.compile(r"^.+:\d+:\d+: \S")


@settings(PROPERTY_SETTINGS, max_examples=3)  # a process each
@given(data=st.data())
def test_the_cli_exits_2_with_located_lines_never_a_traceback(data):
    document = mutate(VALID, data)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "segship.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        result = run_segship(["validate"], cwd=Path(folder))
    assert result.exit_code in (0, 2), result
    assert "Traceback" not in result.output, result
    if result.exit_code == 2:
        assert all(LOCATED_LINE.match(line) for line in result.stderr.splitlines()), result


def test_the_valid_config_is_valid():
    check_loads_or_locates(yaml.safe_dump(VALID))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "segship.yaml"
        path.write_text(yaml.safe_dump(VALID), encoding="utf-8")
        assert set(load_config(path, get_plugins()).exports) == {"vip-to-brevo", "vip-to-braze"}
