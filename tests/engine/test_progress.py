"""A run's progress: its total counts every record the run sends and removes, a move's removals
from the earlier target included, so what is done never passes it."""

from __future__ import annotations

import structlog

from segship.cli.progress import LogProgress

from .conftest import profiles


class RecordedProgress(LogProgress):
    """The log progress, logging every advance, and what it said each time: (done, total, eta_seconds)."""

    def __init__(self) -> None:
        super().__init__(interval=0.0)
        self.seen: list[tuple[int, int, float | None]] = []

    def advance(self, count: int) -> None:
        with structlog.testing.capture_logs() as logs:
            super().advance(count)
        self.seen += [(log["done"], log["total"], log["eta_seconds"]) for log in logs]


def test_a_move_with_leavers_and_changed_emails_never_passes_its_total_nor_a_zero_eta(workspace):
    workspace.configure(settings=", list: first")
    workspace.write(profiles(40))
    workspace.run()
    workspace.configure(settings=", list: second")
    rows = [(i, f"new{i}@example.com" if i <= 3 else email, name, value)  # 3 replaced identities
            for i, email, name, value in profiles(40) if i not in (7, 8)]  # 2 leavers
    workspace.write(rows)
    progress = RecordedProgress()
    report = workspace.run(progress=progress)
    assert report.outcome == "succeeded", report.message
    assert (report.plan["move"], report.plan["remove"], report.plan["removals"]) == (38, 2, 40)
    # 38 moved (each leaving its identity in list first), 2 leavers: 40 removals
    assert (report.upserted, report.removed) == (38, 40)
    assert progress.seen, "the progress said nothing"
    assert all(done <= total and (eta is None or eta >= 0) for done, total, eta in progress.seen), progress.seen
    assert progress.seen[-1][:2] == (38 + 40, 38 + 40)


def test_the_total_follows_the_work_left_once_it_is_known():
    progress = LogProgress()
    progress.start("sync", 10)
    progress.advance(8)
    progress.set_remaining(5)  # a replaced identity more than planned
    assert progress.remaining == 5
    progress.advance(6)  # an estimate short of the work: no negative ETA
    assert progress.remaining == 0
