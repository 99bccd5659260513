"""Which config to use when the command line doesn't say: the discovery order, and why nothing was found.

The order: ``-c PATH``, else ``$SEGSHIP_CONFIG``, else ``./segship.yaml``, else ``./configs/``,
else the current directory itself when its YAML files are segship's (every one that is a
mapping has only segship's top-level keys, and at least one has some). A file that isn't
valid YAML doesn't decide: the loader reports it, placed, once the directory is chosen.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from segship.config.issues import ConfigError, ConfigIssue, Location, display_path
from segship.config.loader import NAMED_SECTIONS, config_files

ENV_VAR = "SEGSHIP_CONFIG"
DEFAULT_FILE, DEFAULT_DIRECTORY = Path("segship.yaml"), Path("configs")
TOP_LEVEL_KEYS = ("version", "state", *NAMED_SECTIONS, "sync_log")


def find_config(given: Path | None, environ: dict[str, str] | None = None) -> Path:
    """The config file or directory to load; ConfigError saying where it looked when there is none."""
    if given is not None:
        return given
    environ = os.environ if environ is None else environ
    from_env = environ.get(ENV_VAR, "").strip()
    if from_env:
        path = Path(from_env)
        if not path.exists():
            raise ConfigError([ConfigIssue(Location(display_path(path), 1, 1),
                                           f"config not found: {ENV_VAR} names {from_env}, which does not exist")])
        return path
    if DEFAULT_FILE.is_file():
        return DEFAULT_FILE
    if DEFAULT_DIRECTORY.is_dir():
        return DEFAULT_DIRECTORY
    here = Path.cwd()
    verdict = _foreign_or_missing(here)
    if verdict is None:
        return Path(".")
    raise ConfigError([ConfigIssue(Location(str(here), 1, 1), (
        f"config not found: no -c/--config given, {ENV_VAR} not set, no ./{DEFAULT_FILE}, no ./{DEFAULT_DIRECTORY}/, "
        f"and this directory is no segship config ({verdict}); pass -c PATH, set {ENV_VAR}, or run "
        "`segship init` to start one"))])


def _foreign_or_missing(directory: Path) -> str | None:
    """Why ``directory`` is not a segship config directory, or None when it is one."""
    files = config_files(directory)
    if not files:
        return "it has no .yaml or .yml files"
    ours = False
    for file in files:
        keys = _top_level_keys(file)
        if keys is None:
            continue
        foreign = sorted(key for key in keys if key not in TOP_LEVEL_KEYS)
        if foreign:
            return (f"{display_path(file)} has top-level keys {', '.join(foreign)}; segship's are "
                    f"{', '.join(TOP_LEVEL_KEYS)}")
        ours = ours or bool(keys)
    return None if ours else f"no YAML file in it has segship's top-level keys ({', '.join(TOP_LEVEL_KEYS)})"


def _top_level_keys(file: Path) -> list[str] | None:
    """The top-level keys of a YAML file; None when it can't be read or isn't a mapping."""
    try:
        document = yaml.load(file.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return [str(key) for key in document] if isinstance(document, dict) else None
