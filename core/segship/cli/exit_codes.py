"""What ``segship`` exits with (``EXIT_CODES_HELP`` says it in ``segship --help``).

Runs report an outcome (``RunReport.outcome``) and segship's errors say which outcome they end a
run with (``SegshipError.outcome``); this module alone turns outcomes into exit codes.
``segship plan --detailed-exitcode`` answers with codes of its own (``EXIT_CHANGES``,
``EXIT_SAFEGUARD``), for CI gates, as ``terraform plan -detailed-exitcode`` does: 0 nothing
to do, 2 changes to send, 4 a safeguard would stop a run, 1 any error.
"""

from __future__ import annotations

from collections.abc import Iterable

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_REJECTS = 0, 1, 2, 3
#: ``plan --detailed-exitcode``: some export has changes to send; a safeguard would stop a run
EXIT_CHANGES, EXIT_SAFEGUARD = 2, 4
#: a second Ctrl-C (128 + SIGINT, as shells report it): typer exits so on a KeyboardInterrupt
EXIT_ABORTED = 130

OUTCOME_EXIT_CODES = {"succeeded": EXIT_OK, "rejects": EXIT_REJECTS, "failed": EXIT_FAILED, "aborted": EXIT_FAILED,
                      "interrupted": EXIT_FAILED, "invalid": EXIT_INVALID}

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    success (rows known to be refused, unchanged, included)\n"
    "  1    a run failed, was stopped (Ctrl-C) or aborted by a safeguard; any other error\n"
    "  2    invalid config or usage\n"
    "  3    the run finished and some rows were refused for the first time or for a new reason\n"
    "  130  a second Ctrl-C aborted the batches in flight (what was acknowledged is saved)\n"
    "  plan --detailed-exitcode: 0 nothing to do, 2 changes to send, 4 a safeguard would stop a run, 1 an error"
)


def combined_exit_code(outcomes: Iterable[str]) -> int:
    """One code for several runs: a failure (1) or invalid settings (2) outweighs rejects (3), which
    outweigh success (0)."""
    codes = [OUTCOME_EXIT_CODES.get(outcome, EXIT_FAILED) for outcome in outcomes]
    return max(codes, key=lambda code: (code in (EXIT_FAILED, EXIT_INVALID), code == EXIT_REJECTS, code),
               default=EXIT_OK)
