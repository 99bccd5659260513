"""Loading YAML: positions of every key and value, directory merge, and paths relative to the naming file."""

from __future__ import annotations

from pathlib import Path

import pytest

from segship.config import ConfigError, Location, load_config
from segship.config import loader
from segship.config.loader import config_files, load_documents
from segship.plugins import build_plugins


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are shown relative to the working directory


def test_every_key_and_value_has_its_position(write_config) -> None:
    write_config({"segship.yaml": """
        version: 1
        segments:
          vip:
            sql: "SELECT 1"
            key: id
        exports:
          x: {segments: [vip, rich]}
        """})
    loaded = load_documents(Path("segship.yaml"))
    assert loaded.location(("segments", "vip"), key=True) == Location("segship.yaml", 3, 3)
    assert loaded.location(("segments", "vip", "sql")) == Location("segship.yaml", 4, 10)
    assert loaded.location(("segments", "vip", "sql"), key=True) == Location("segship.yaml", 4, 5)
    assert loaded.location(("segments", "vip", "key")) == Location("segship.yaml", 5, 10)
    assert loaded.location(("exports", "x", "segments", 1)) == Location("segship.yaml", 7, 23)
    # a missing node is placed at its nearest ancestor
    assert loaded.location(("segments", "vip", "source")) == Location("segship.yaml", 4, 5)


def test_a_directory_merges_yaml_files_in_name_order_skipping_hidden_folders_and_other_files(write_config) -> None:
    write_config({
        "conf/b.yml": "version: 1\nsegments:\n  b: {source: crm, key: id, sql: SELECT 2}\n",
        "conf/a.yaml": "version: 1\nsegments:\n  a: {source: crm, key: id, sql: SELECT 1}\n",
        "conf/sub/c.yaml": "version: 1\nsources:\n  crm: {type: duckdb, path: ../data/x.csv}\n",
        "conf/.segship/state.yaml": "not: [valid\n",
        "conf/.github/workflow.yaml": "on: push\n",
        "conf/notes.txt": "version: 2\n",
        "conf/empty.yaml": "# placeholder\n",
    })
    assert [path.relative_to("conf").as_posix() for path in config_files(Path("conf"))] == [
        "a.yaml", "b.yml", "empty.yaml", "sub/c.yaml"]
    loaded = load_documents(Path("conf"))
    assert list(loaded.data["segments"]) == ["a", "b"]
    assert loaded.location(("segments", "b", "sql")) == Location("conf/b.yml", 3, 34)
    assert loaded.file_of(("sources", "crm")) == Path("conf/sub/c.yaml")


def test_state_may_appear_once(write_config) -> None:
    write_config({"conf/a.yaml": "version: 1\nstate: {path: a.db}\n", "conf/b.yaml": "version: 1\nstate: {path: b.db}\n"})
    with pytest.raises(ConfigError) as error:
        load_documents(Path("conf"))
    assert str(error.value) == "conf/b.yaml:2:1: 'state' is defined twice: first at conf/a.yaml:2:1"


def test_every_merge_problem_is_reported_at_once(write_config) -> None:
    write_config({
        "conf/a.yaml": "version: 1\nsegments:\n  vip: {}\nsources:\n  crm: {}\n",
        "conf/b.yaml": "version: 1\nsegments:\n  vip: {}\nsources:\n  crm: {}\n",
        "conf/c.yaml": "version: 1\nsegments: {vip: {}\n",
    })
    with pytest.raises(ConfigError) as error:
        load_documents(Path("conf"))
    assert [issue.as_text().split(": ")[0] for issue in error.value.issues] == [
        "conf/b.yaml:3:3", "conf/b.yaml:5:3", "conf/c.yaml:3:1"]


def test_relative_paths_start_from_the_file_that_names_them(write_config, tmp_path: Path) -> None:
    write_config({
        "conf/sources/crm.yaml": "version: 1\nsources:\n  crm: {type: duckdb, path: ../data/profiles.csv}\n",
        "conf/state.yaml": "version: 1\nstate: {path: run/state.db}\n",
    })
    config = load_config(Path("conf"), build_plugins())
    assert config.sources["crm"].base_dir == (tmp_path / "conf" / "sources").resolve()
    assert config.state_path == (tmp_path / "conf" / "run" / "state.db").resolve()


def test_the_default_state_lives_in_the_config_directory(write_config, tmp_path: Path) -> None:
    write_config({"conf/a.yaml": "version: 1\n"})
    assert load_config(Path("conf"), build_plugins()).state_path == (tmp_path / "conf" / ".segship" / "state.db").resolve()
    write_config({"single/segship.yaml": "version: 1\n"})
    assert load_config(Path("single/segship.yaml"), build_plugins()).state_path == \
        (tmp_path / "single" / ".segship" / "state.db").resolve()


def test_yaml_values_are_not_executed(write_config) -> None:
    """The safe loader: a Python tag is an error, never an object."""
    write_config({"segship.yaml": "version: 1\nsegments: !!python/object/apply:os.system ['echo hacked']\n"})
    with pytest.raises(ConfigError) as error:
        load_documents(Path("segship.yaml"))
    assert str(error.value) == ("segship.yaml:2:11: invalid YAML: the tag tag:yaml.org,2002:python/object/apply:os.system "
                                "is not supported; write a plain mapping or list")


def test_python_tags_on_scalars_are_refused_too(write_config) -> None:
    write_config({"segship.yaml": "version: !!python/name:os.system\n"})
    with pytest.raises(ConfigError) as error:
        load_documents(Path("segship.yaml"))
    assert str(error.value).startswith("segship.yaml:1:10: invalid YAML: could not determine a constructor for the tag")


def test_keys_that_are_not_strings_become_strings(write_config) -> None:
    write_config({"segship.yaml": "version: 1\nexports:\n  2024: {}\n"})
    assert list(load_documents(Path("segship.yaml")).data["exports"]) == ["2024"]


def test_merge_keys_share_defaults_and_keys_written_here_win(write_config) -> None:
    write_config({"segship.yaml": """
        version: 1
        sources: {crm: {type: duckdb, path: x.csv}}
        segments:
          vip: &segment {source: crm, key: customer_id, sql: SELECT 0}
          rich:
            <<: *segment
            sql: SELECT 1
          all:
            <<: [*segment, {description: everyone}]
        """})
    loaded = load_documents(Path("segship.yaml"))
    assert loaded.data["segments"] == {
        "vip": {"source": "crm", "key": "customer_id", "sql": "SELECT 0"},
        "rich": {"source": "crm", "key": "customer_id", "sql": "SELECT 1"},
        "all": {"source": "crm", "key": "customer_id", "sql": "SELECT 0", "description": "everyone"},
    }
    assert loaded.location(("segments", "rich", "sql")) == Location("segship.yaml", 7, 10)
    # a merged value is placed where it is written: in the anchored mapping
    assert loaded.location(("segments", "rich", "key")) == Location("segship.yaml", 4, 36)
    assert set(load_config(Path("segship.yaml"), build_plugins()).segments) == {"vip", "rich", "all"}


def test_a_merge_key_needs_a_mapping(write_config) -> None:
    write_config({"segship.yaml": "version: 1\nsegments:\n  vip:\n    <<: 3\n"})
    with pytest.raises(ConfigError) as error:
        load_documents(Path("segship.yaml"))
    assert str(error.value) == ("segship.yaml:4:9: invalid YAML: a merge key (<<) takes a mapping or a list of "
                                "mappings, such as <<: *defaults")


def _error_loading(write_config, text: str) -> str:
    """The ConfigError of loading ``text`` as segship.yaml."""
    write_config({"segship.yaml": text})
    with pytest.raises(ConfigError) as error:
        load_documents(Path("segship.yaml"))
    return str(error.value)


def _laughs(levels: int, *, width: int = 9) -> str:
    """A "billion laughs" config: each level a list of ``width`` aliases to the level before."""
    lines = ["version: 1", "segments:", f"  l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]" for level in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_an_error_at_the_alias_past_the_bound(write_config) -> None:
    # levels 1 to 3 repeat 90 + 819 + 7,380 nodes; level 4 (line 7) passes 10,000 at its second alias
    assert _error_loading(write_config, _laughs(6)) == (
        "segship.yaml:7:7: invalid YAML: aliases (*name) and merge keys (<<) repeat more than 10,000 nodes in this "
        "file; a file may repeat 10 times the nodes it writes (26), or 10,000 if that is more")


def test_a_billion_laughs_stops_at_the_bound_without_expanding(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nine levels of nine would build 9**9 lists; the build stops at the first node past the bound."""
    write_config({"segship.yaml": _laughs(10)})
    built = []
    build = loader._Builder.build
    monkeypatch.setattr(loader._Builder, "build", lambda self, node, path: built.append(path) or build(self, node, path))
    with pytest.raises(ConfigError, match="repeat more than 10,000 nodes"):
        load_documents(Path("segship.yaml"))
    assert len(built) < 2 * loader.REPEATED_NODES_FLOOR


def test_nested_merge_keys_are_bounded_too(write_config) -> None:
    levels = ["version: 1", "segments:", "  m0: &m0 {a: 1, b: 2}"]
    levels += [f"  m{level}: &m{level} {{<<: [{', '.join([f'*m{level - 1}'] * 9)}]}}" for level in range(1, 7)]
    # each level merges nine times what the one before brings: level 4 (line 7) passes 10,000, at its merge key
    assert _error_loading(write_config, "\n".join(levels) + "\n") == (
        "segship.yaml:7:12: invalid YAML: aliases (*name) and merge keys (<<) repeat more than 10,000 nodes in this "
        "file; a file may repeat 10 times the nodes it writes (35), or 10,000 if that is more")


def test_values_a_merge_key_brings_past_the_bound_are_blamed_on_the_merge_key(write_config) -> None:
    # 1,729 repeated by l1, l2 and big; each m repeats 822 more: m11 (line 17) passes 10,000
    merges = "".join(f"  m{index}: {{<<: *big}}\n" for index in range(1, 13))
    error = _error_loading(write_config, _laughs(3) + "  big: &big {v: *l2}\n" + merges)
    assert error.startswith("segship.yaml:17:9: invalid YAML: aliases (*name) and merge keys (<<) repeat more than "
                            "10,000 nodes in this file"), error


def test_defaults_merged_into_every_entry_stay_within_the_bound(write_config) -> None:
    """Repeating more than the floor is fine while the file writes a tenth as many nodes itself."""
    entries = [f"  e{index}: {{<<: *defaults, segments: [s{index}]}}" for index in range(2_000)]
    write_config({"segship.yaml": "\n".join([
        "version: 1", "exports:",
        "  e-defaults: &defaults",
        "    display_name: Everyone", "    connection: braze",
        "    settings: {segment_api_identifier: 3c4a9e52-0000-4000-8000-000000000001}",
        "    mapping: {email: email, customer_id: customer_id, attributes: {a: a, b: b, c: c}}",
        "    segments: [s]", *entries]) + "\n"})
    loaded = load_documents(Path("segship.yaml"))
    assert loaded.data["exports"]["e1999"]["mapping"]["attributes"] == {"a": "a", "b": "b", "c": "c"}
    assert loaded.data["exports"]["e1999"]["segments"] == ["s1999"]


def test_a_list_or_mapping_as_a_key_is_refused(write_config) -> None:
    assert _error_loading(write_config, "version: 1\nsegments:\n  ? [a, b]\n  : {}\n") == (
        "segship.yaml:3:5: invalid YAML: a key must be a plain value such as a name, not a list or a mapping")


def test_positions_are_adopted_once_per_file_not_once_per_entry(write_config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Merging walks a file's positions once: per entry, it would be quadratic in the entries."""
    segments = "".join(f"  s{index}: {{source: crm, key: id, sql: SELECT {index}}}\n" for index in range(300))
    write_config({"conf/a.yaml": "version: 1\nsegments:\n" + segments,
                  "conf/b.yaml": "version: 1\nsources:\n  crm: {type: duckdb, path: x.csv}\n"})
    calls = []
    adopt = loader._adopt_positions
    monkeypatch.setattr(loader, "_adopt_positions", lambda *args: calls.append(args[1]) or adopt(*args))
    loaded = load_documents(Path("conf"))
    assert [len(adopted) for adopted in calls] == [301, 1]  # a.yaml: version and 300 segments; b.yaml: crm
    assert loaded.location(("segments", "s299", "sql")) == Location("conf/a.yaml", 302, 37)
    assert loaded.location(("sources", "crm", "path"), key=True) == Location("conf/b.yaml", 3, 23)
