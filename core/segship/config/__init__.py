"""Configuration: load YAML (one file or a directory), compose the schema, validate, build the model."""

from segship.config.issues import ConfigError, ConfigIssue, Location
from segship.config.model import (
    Config,
    ConnectionConfig,
    ExportConfig,
    SegmentConfig,
    SourceConfig,
)
from segship.config.validate import load_config

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ConnectionConfig",
    "ExportConfig",
    "Location",
    "SegmentConfig",
    "SourceConfig",
    "load_config",
]
