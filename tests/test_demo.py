"""`make demo` (configs/demo.py) ends by saying what a newcomer should see: what each run sent, and what the
sandboxes hold, with every count that could look like a failure explained."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import EXAMPLE_CONFIGS, clean_env


def test_the_demo_ends_with_what_was_sent_and_explains_the_braze_checks(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE_CONFIGS, tmp_path / "configs", ignore=shutil.ignore_patterns(".segship"))
    done = subprocess.run([sys.executable, str(tmp_path / "configs" / "demo.py")], env=clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ending = done.stdout[done.stdout.index("\nWhat each run sent\n"):]
    assert ("first run:  vip-to-braze succeeded: 68 sent, 0 removed (2 requests); newsletter-to-brevo succeeded: "
            "174 sent, 0 removed") in ending, ending
    assert "vip-to-service succeeded: 68 sent, 0 removed (2 requests)" in ending
    assert "second run: nothing, and no request: every member was unchanged in state" in ending
    assert "Braze: 68 users, by segment: {'3c4a9e52-0000-4000-8000-000000000001': 68}" in ending
    assert "Its 3 'bad requests' are segship's connection checks" in ending and "nothing failed" in ending
    assert "Brevo: list 3 holds 174 contacts, from 1 import(s), 0 failed" in ending
    assert "Webhook: 68 members; 4 signed requests (its connection checks are empty batches" in ending
    assert "{'requests'" not in ending  # no raw counters left to puzzle over
