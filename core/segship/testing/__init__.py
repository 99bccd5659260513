"""segship's kit for testing a destination plugin, in the core wheel and a pytest plugin (``pytest11``).

- :class:`DestinationConformance`: the conformance suite; subclass it once in the plugin's tests
  (``segship.testing.conformance``).
- :class:`ExportHarness`: an export of the destination run in-process, with a real config, source
  and state (``segship.testing.harness``).
- :class:`FakeServer`, :class:`FakeAnswer`, :class:`RecordedRequest`: a programmable HTTP server
  on 127.0.0.1 (``segship.testing.fake_server``).
- ``segship.testing.strategies``: Hypothesis strategies for segment rows and Arrow batches.

The fixtures ``fake_server`` and ``export_harness`` (``segship.testing.pytest_plugin``) need no import.
See docs/plugins.md, "Testing your plugin".
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module defining it; imported on first use, so that pytest loading this
#: plugin in any environment with segship installed needs neither hypothesis nor the engine
_DEFINED_IN = {
    "DestinationConformance": "segship.testing.conformance",
    "ExportHarness": "segship.testing.harness",
    "FakeAnswer": "segship.testing.fake_server",
    "FakeServer": "segship.testing.fake_server",
    "RecordedRequest": "segship.testing.fake_server",
}
__all__ = sorted(_DEFINED_IN)


def __getattr__(name: str) -> Any:
    if name not in _DEFINED_IN:
        raise AttributeError(f"module 'segship.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(_DEFINED_IN[name]), name)
