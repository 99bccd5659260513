"""What ``segship`` exits with: 0 success (rows known to be refused, unchanged, don't change that), 1 a
run failed or was aborted, 2 invalid config or usage, 3 the run finished and some rows were refused for
the first time or for a new reason (``export --strict``: any refused row).

Runs report an outcome (``RunReport.outcome``) and segship's errors say which outcome they end a
run with (``SegshipError.outcome``); this module alone turns outcomes into exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REJECTS = 0, 1, 2, 3

OUTCOME_EXIT_CODES = {"succeeded": EXIT_OK, "rejects": EXIT_REJECTS, "failed": EXIT_FAILED, "aborted": EXIT_FAILED,
                      "interrupted": EXIT_FAILED, "invalid": EXIT_INVALID}


def combined_exit_code(outcomes: Iterable[str]) -> int:
    """One code for several runs: a failure (1) or invalid settings (2) outweighs rejects (3), which
    outweigh success (0)."""
    codes = [OUTCOME_EXIT_CODES.get(outcome, EXIT_FAILED) for outcome in outcomes]
    return max(codes, key=lambda code: (code in (EXIT_FAILED, EXIT_INVALID), code == EXIT_REJECTS, code),
               default=EXIT_OK)
