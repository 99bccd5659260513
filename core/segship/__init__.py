"""segship: export customer segments from your own data to marketing destinations."""

from importlib.metadata import PackageNotFoundError, version

import pluggy

try:
    __version__ = version("segship")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

#: Marker for plugin implementations: ``@hookimpl def segship_register_destinations(register): ...``
hookimpl = pluggy.HookimplMarker("segship")

__all__ = ["__version__", "hookimpl"]
