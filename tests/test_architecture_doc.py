"""docs/architecture.md names every module of the core once, and nothing that isn't there.

Like datasette's "every hookspec is documented" test: a module added, moved or removed fails
here until its row in the "Modules" tables says what it does.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "core" / "segship"
ARCHITECTURE = REPO / "docs" / "architecture.md"
#: a table row naming a module (or a folder) in its first column: | `engine/run.py` | ... |
MODULE_ROW = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)


def _listed() -> list[str]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return MODULE_ROW.findall(section)


def test_every_module_of_the_core_is_listed_once() -> None:
    listed = _listed()
    unlisted = sorted({path.relative_to(CORE).as_posix() for path in CORE.rglob("*.py")} - set(listed))
    assert not unlisted, "not in docs/architecture.md's Modules"
    twice = sorted(name for name, count in Counter(listed).items() if count > 1)
    assert not twice, "listed twice in docs/architecture.md"


def test_every_module_listed_exists() -> None:
    missing = [name for name in _listed() if not (CORE / name).exists()]
    assert not missing, "in docs/architecture.md but not in core/segship/"
