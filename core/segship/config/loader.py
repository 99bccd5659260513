"""Load YAML config files keeping the line and column of every key and value.

A config is one file or a directory of ``*.yaml``/``*.yml`` files (recursively, in
name order, hidden folders skipped) merged into one document: ``sources``,
``segments``, ``connections``, ``exports`` and ``notifications`` are merged by name, and a
name defined twice is an error naming both places; ``version`` may repeat if equal; ``state`` and
``sync_log`` may appear once. Aliases (``*name``) and merge keys (``<<``) may repeat at most
:data:`REPEATS_PER_WRITTEN_NODE` times the nodes a file writes, or :data:`REPEATED_NODES_FLOOR`
nodes if that is more.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segship.config.issues import ConfigError, ConfigIssue, Location, display_path

NAMED_SECTIONS = ("sources", "segments", "connections", "exports", "notifications")
MAP_TAG, SEQ_TAG, MERGE_TAG = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"
Path_ = tuple[str | int, ...]
#: Nodes aliases and merge keys may repeat in one file: REPEATS_PER_WRITTEN_NODE times the nodes it
#: writes, or REPEATED_NODES_FLOOR if that is more. Defaults merged into every entry of a file stay
#: well below it; a "billion laughs" file, whose nested aliases expand a few hundred bytes into
#: billions of nodes, stops at the floor at once. Loading builds at most 11 times the nodes a file writes.
REPEATED_NODES_FLOOR = 10_000
REPEATS_PER_WRITTEN_NODE = 10

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader


@dataclass
class LoadedConfig:
    """The merged document plus where each node came from."""

    data: dict[str, Any] = field(default_factory=dict)
    values: dict[Path_, Location] = field(default_factory=dict)   # where each value starts
    keys: dict[Path_, Location] = field(default_factory=dict)     # where each key is written
    files: dict[Path_, Path] = field(default_factory=dict)        # top-level entry -> file it is in

    def location(self, path: Path_, *, key: bool = False) -> Location:
        """The place of ``path`` (its key with ``key=True``), else of its nearest ancestor."""
        table = self.keys if key else self.values
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Location("<config>", 1, 1))

    def file_of(self, path: Path_) -> Path:
        """The file that defines an entry (``("sources", "crm")``); relative paths start from its folder."""
        return self.files[tuple(path[:2])] if tuple(path[:2]) in self.files else self.files[(path[0],)]


def _location(file: str, mark: yaml.Mark) -> Location:
    return Location(file, mark.line + 1, mark.column + 1)


class _Builder:
    """Turns a composed YAML node tree into Python values, recording positions.

    The composed tree shares a node among its aliases; building copies it at each use, so
    the copies are counted and the build stops (ConfigError) once they pass the bound.
    """

    def __init__(self, file: str, loader: yaml.SafeLoader, root: yaml.Node, issues: list[ConfigIssue]) -> None:
        self.file = file
        self.loader = loader
        self.root = root
        self.issues = issues
        self.values: dict[Path_, Location] = {}
        self.keys: dict[Path_, Location] = {}
        self._open: set[int] = set()  # the collections being built: an alias to one of them is a cycle
        self._built: set[int] = set()  # nodes built once: building one again is a repeat through an alias
        self._repeated = 0
        self._written: int | None = None
        self._alias_site: Location | None = None  # where the outermost alias being expanded is used

    def build(self, node: yaml.Node, path: Path_, merged_at: Location | None = None) -> Any:
        """The value of ``node`` at ``path``; ``merged_at``: the merge key (<<) that brought it, if one did."""
        self.values[path] = _location(self.file, node.start_mark)
        if id(node) in self._open:
            self.issues.append(ConfigIssue(_location(self.file, node.start_mark),
                                           "invalid YAML: an alias refers to a node that contains it (a cycle)"))
            return None
        outermost = False
        if id(node) not in self._built:
            self._built.add(id(node))
        else:
            # an alias's own position isn't kept by the composer: blame its merge key, its key, or its list
            outermost = self._alias_site is None
            if outermost:
                self._alias_site = merged_at or self.keys.get(path) or self.values[path[:-1]]
            self._repeat(1, self._alias_site)
        try:
            if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
                self._open.add(id(node))
                try:
                    return self._build_collection(node, path)
                finally:
                    self._open.discard(id(node))
            return self.loader.construct_object(node, deep=True)
        finally:
            if outermost:
                self._alias_site = None

    def _repeat(self, count: int, site: Location) -> None:
        """Count nodes repeated through aliases; ConfigError at ``site`` once past the bound."""
        self._repeated += count
        if self._repeated <= REPEATED_NODES_FLOOR:
            return
        if self._written is None:
            self._written = _written_nodes(self.root)
        if self._repeated > REPEATS_PER_WRITTEN_NODE * self._written:
            raise ConfigError([ConfigIssue(site, (
                "invalid YAML: aliases (*name) and merge keys (<<) repeat more than "
                f"{max(REPEATED_NODES_FLOOR, REPEATS_PER_WRITTEN_NODE * self._written):,} nodes in this file; "
                f"a file may repeat {REPEATS_PER_WRITTEN_NODE} times the nodes it writes ({self._written:,}), or "
                f"{REPEATED_NODES_FLOOR:,} if that is more"))])

    def _build_collection(self, node: yaml.MappingNode | yaml.SequenceNode, path: Path_) -> Any:
        if node.tag not in (MAP_TAG, SEQ_TAG):
            # the safe loader refuses such tags on scalars; on collections they would pass unnoticed
            self.issues.append(ConfigIssue(_location(self.file, node.start_mark),
                                           f"invalid YAML: the tag {node.tag} is not supported; write a plain "
                                           "mapping or list"))
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            own, merged = self._pairs(node)
            for key_node, value_node in own:
                key = self._key(key_node)
                if key in result:
                    first = self.keys[path + (key,)]
                    self.issues.append(ConfigIssue(_location(self.file, key_node.start_mark),
                                                   f"duplicate key {key!r} (first defined at line {first.line})"))
                    continue
                self.keys[path + (key,)] = _location(self.file, key_node.start_mark)
                result[key] = self.build(value_node, path + (key,))
            merged_at = next((_location(self.file, key_node.start_mark) for key_node, _ in node.value
                              if key_node.tag == MERGE_TAG), None) if merged else None
            for key_node, value_node in merged:  # `<<: *defaults`: keys written here win, then the first merged
                key = self._key(key_node)
                if key not in result:
                    self.keys[path + (key,)] = _location(self.file, key_node.start_mark)
                    result[key] = self.build(value_node, path + (key,), merged_at)
            return result
        return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]

    def _key(self, key_node: yaml.Node) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            # a list or mapping as a key is no name; its text could also be an alias bomb's expansion
            raise ConfigError([ConfigIssue(_location(self.file, key_node.start_mark),
                                           "invalid YAML: a key must be a plain value such as a name, not a list "
                                           "or a mapping")])
        key = self.loader.construct_object(key_node, deep=True)
        return key if isinstance(key, str) else str(key)

    def _pairs(self, node: yaml.MappingNode, site: Location | None = None
               ) -> tuple[list[tuple[yaml.Node, yaml.Node]], list[tuple[yaml.Node, yaml.Node]]]:
        """The mapping's own key/value nodes, and those its merge keys (``<<``) bring, in precedence order.

        ``site``: the outermost merge key, blamed for what nested merges repeat.
        """
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != MERGE_TAG:
                own.append((key_node, value_node))
                continue
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            here = site or self._alias_site or _location(self.file, key_node.start_mark)
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.issues.append(ConfigIssue(_location(self.file, source.start_mark),
                                                   "invalid YAML: a merge key (<<) takes a mapping or a list of "
                                                   "mappings, such as <<: *defaults"))
                    continue
                source_own, source_merged = self._pairs(source, here)
                self._repeat(1 + len(source_own) + len(source_merged), here)
                merged += source_own + source_merged
        return own, merged


def _written_nodes(root: yaml.Node) -> int:
    """The nodes a file writes (keys and values): each once, however many aliases use it."""
    seen = {id(root)}
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            continue
        for child in children:
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return len(seen)


def _yaml_issue(shown: str, text: str, exc: yaml.MarkedYAMLError) -> ConfigIssue:
    """A YAML syntax error placed where the parser stopped, with where the enclosing node began."""
    mark = exc.problem_mark or exc.context_mark
    where = _location(shown, mark) if mark else Location(shown, 1, 1)
    lines = text.splitlines()
    if mark is not None and mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
        return ConfigIssue(where, "invalid YAML: a tab character; YAML indents with spaces, never tabs")
    message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
    if exc.problem and exc.context:
        context = exc.context
        start = exc.context_mark
        if start is not None and (start.line, start.column) != (where.line - 1, where.column - 1):
            context += f" that starts at line {start.line + 1}, column {start.column + 1}"
        message += f" ({context}; check the indentation and the brackets and quotes above)"
    return ConfigIssue(where, message)


def load_file(path: Path, issues: list[ConfigIssue]) -> tuple[Any, dict[Path_, Location], dict[Path_, Location]]:
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(Location(shown, 1, 1), f"can't read the file: {exc}"))
        return None, {}, {}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, {}
        builder = _Builder(shown, loader, node, issues)
        return builder.build(node, ()), builder.values, builder.keys
    except ConfigError as exc:  # the build stopped at once (an alias bomb, a list as a key)
        issues.extend(exc.issues)
        return None, {}, {}
    except yaml.MarkedYAMLError as exc:
        issues.append(_yaml_issue(shown, text, exc))
        return None, {}, {}
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(Location(shown, 1, 1), f"invalid YAML: {exc}"))
        return None, {}, {}
    except RecursionError:
        issues.append(ConfigIssue(Location(shown, 1, 1), "invalid YAML: nested too deeply"))
        return None, {}, {}
    finally:
        loader.dispose()


def config_files(path: Path) -> list[Path]:
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)]
        return sorted(found)
    return [path]


def load_documents(path: Path) -> LoadedConfig:
    """Load and merge the config at ``path``; raise ConfigError on YAML or merge problems."""
    if not path.exists():
        raise ConfigError([ConfigIssue(Location(display_path(path), 1, 1),
                                       "config not found: expected a YAML file or a directory of them")])
    files = config_files(path)
    if not files:
        raise ConfigError([ConfigIssue(Location(display_path(path), 1, 1),
                                       "no .yaml or .yml files in this directory")])
    with _collector_paused():
        return _merge_files(path, files)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while files are composed, built and merged.

    Everything made there (nodes, values, positions) lives until the config is built, so a
    collection would free nothing and only walk the growing tree again; reference counting
    still frees what is dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _merge_files(path: Path, files: list[Path]) -> LoadedConfig:
    issues: list[ConfigIssue] = []
    merged = LoadedConfig()
    for file in files:
        data, values, keys = load_file(file, issues)
        if data is None:
            if not path.is_dir() and not issues:
                # a directory may hold an empty file (a placeholder); a config file may not
                issues.append(ConfigIssue(Location(display_path(file), 1, 1), "the file is empty: expected a "
                                          "mapping of sections (version, state, sources, segments, connections, "
                                          "exports, notifications, sync_log), starting with version: 1"))
            continue
        if not isinstance(data, dict):
            issues.append(ConfigIssue(values[()], "a config file must be a mapping of sections "
                                                  "(version, state, sources, segments, connections, exports, "
                                                  "notifications, sync_log)"))
            continue
        merged.values.setdefault((), values[()])
        adopted: set[Path_] = set()
        for section, content in data.items():
            adopted |= _merge_section(merged, file, section, content, values, keys, issues)
        _adopt_positions(merged, adopted, values, keys)
    if issues:
        raise ConfigError(issues)
    # problems of the whole config (no version) are shown at the start of its first file
    merged.values.setdefault((), Location(display_path(files[0]), 1, 1))
    return merged


def _merge_section(merged: LoadedConfig, file: Path, section: str, content: Any,
                   values: dict[Path_, Location], keys: dict[Path_, Location],
                   issues: list[ConfigIssue]) -> set[Path_]:
    """Merge one section of a file; the prefixes (entries, or the whole section) it takes from this file."""
    here = keys[(section,)]
    if section in NAMED_SECTIONS and isinstance(content, dict):
        target = merged.data.setdefault(section, {})
        if not isinstance(target, dict):
            return set()  # an earlier file's section is empty or no mapping: the schema reports it, there
        merged.keys.setdefault((section,), here)
        merged.values.setdefault((section,), values[(section,)])
        merged.files.setdefault((section,), file)
        adopted: set[Path_] = set()
        for name, entry in content.items():
            if name in target:
                first = merged.keys[(section, name)]
                issues.append(ConfigIssue(keys[(section, name)],
                                          f"{section[:-1]} {name!r} is defined twice: first at {first}"))
                continue
            target[name] = entry
            merged.files[(section, name)] = file
            adopted.add((section, name))
        return adopted
    if section in merged.data:
        if section == "version" and merged.data[section] == content:
            return set()
        first = merged.keys[(section,)]
        issues.append(ConfigIssue(here, f"{section!r} is defined twice: first at {first}"))
        return set()
    merged.data[section] = content
    merged.files[(section,)] = file
    return {(section,)}


def _adopt_positions(merged: LoadedConfig, adopted: set[Path_], values: dict[Path_, Location],
                     keys: dict[Path_, Location]) -> None:
    """Copy the positions of the adopted entries and sections, and of everything below them, from one file.

    One pass over the file's positions: an entry's nodes are found by their first two path
    parts (a section's by the first), never by scanning every position per entry.
    """
    for table, source in ((merged.values, values), (merged.keys, keys)):
        for node_path, location in source.items():
            if node_path[:2] in adopted or node_path[:1] in adopted:
                table[node_path] = location
