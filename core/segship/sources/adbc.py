"""The built-in ``adbc`` source: any installed ADBC driver (Snowflake, BigQuery, Flight SQL, SQLite, PostgreSQL …).

``driver`` is the driver's Python package (``adbc_driver_snowflake``) or the path of a
driver shared library. Every driver is loaded through ``adbc_driver_manager`` the same
way, with ``uri`` and the database ``options`` (the drivers' own ``dbapi.connect``
functions disagree on how they take options: SQLite's takes none). A package that isn't
installed is a one-line error saying what to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from segship import hookimpl
from segship.source import SourceError
from segship.sources.adbc_database import AdbcDatabaseSource, register_url_password

if TYPE_CHECKING:
    from adbc_driver_manager.dbapi import Connection

#: How a driver shared library's name ends, to tell a path from a package name.
LIBRARY_SUFFIXES = (".so", ".dylib", ".dll")


class AdbcSource(AdbcDatabaseSource):
    name = "adbc"
    options_schema: dict[str, Any] = {
        "type": "object",
        "description": "Any ADBC driver: the segment's SQL runs in that database, in its dialect, and its rows "
                       "stream back as Arrow.",
        "properties": {
            "driver": {"type": "string", "minLength": 1,
                       "description": "The driver's Python package (adbc_driver_snowflake, adbc_driver_bigquery, "
                                      "adbc_driver_flightsql, adbc_driver_sqlite, adbc_driver_postgresql) or the "
                                      "path of a driver shared library."},
            "uri": {"type": "string", "minLength": 1, "x-secret": True,
                    "description": "The driver's connection URI; a secret: ${env:VAR} or ${file:PATH} only."},
            "options": {"type": "object", "x-secret": True,
                        "description": "The driver's database options (name: value); every value is a secret: "
                                       "${env:VAR} or ${file:PATH} only.",
                        "additionalProperties": {"type": "string", "x-secret": True}},
        },
        "required": ["driver"],
        "additionalProperties": False,
    }

    def _driver(self) -> str:
        """The driver shared library to load: the given path, or the one the package bundles."""
        driver = str(self.context.options["driver"])
        if self._is_library_path(driver):
            return driver
        try:
            package = importlib.import_module(driver)
        except ImportError:
            raise SourceError(f"source {self.context.name!r}: the ADBC driver package {driver!r} is not installed "
                              f"(pip install {driver.replace('_', '-')})") from None
        # the ADBC driver packages expose their bundled library this way; otherwise the driver
        # manager looks the name up on the library path
        locate = getattr(package, "_driver_path", None)
        return locate() if callable(locate) else driver

    def _driver_package(self) -> str | None:
        driver = str(self.context.options["driver"])
        return None if self._is_library_path(driver) else driver

    @staticmethod
    def _is_library_path(driver: str) -> bool:
        return "/" in driver or "\\" in driver or driver.endswith(LIBRARY_SUFFIXES)

    def _connect(self) -> Connection:
        import adbc_driver_manager.dbapi

        uri = self.context.options.get("uri")
        options = {str(key): str(value) for key, value in (self.context.options.get("options") or {}).items()}
        if uri is not None:
            register_url_password(str(uri))
        return adbc_driver_manager.dbapi.connect(self._driver(), None if uri is None else str(uri),
                                                 db_kwargs=options, autocommit=True)


@hookimpl
def segship_register_sources(register) -> None:
    register(AdbcSource)
