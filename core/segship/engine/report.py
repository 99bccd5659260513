"""What the engine tells: an export's plan, each answered batch, and a run's report."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ExportPlan:
    """What a run of one export would do; computed in bulk, nothing sent."""

    export: str
    members: int = 0            # rows in the export's segments (deduplicated by key)
    acknowledged: int = 0       # members the destination acknowledged last time (state)
    add: int = 0
    update: int = 0
    remove: int = 0
    unchanged: int = 0
    retry: int = 0              # rows refused before and sent again (the destination's refusals; a mapping's
    #                             whose row or mapping changed since)
    refused: int = 0            # rows segship's mapping refused, unchanged since: not sent, still refused
    refused_since_run: int | None = None  # the earliest run since which one of them is
    move: int = 0               # members to move from an earlier target (a list, a segment) to the export's
    stale_identities: int = 0   # old identities (e.g. a changed email) still to remove
    examples: dict[str, list[str]] = field(default_factory=dict)
    changed_fields: dict[str, list[str]] = field(default_factory=dict)  # key -> columns (plan --verbose)
    full_resync: bool = False
    settings_changed: bool = False  # mapping or settings differ from the last run: everyone is re-sent
    hashes_converted: int = 0       # members whose hashes state made with an older hash version (not re-sent)
    target: dict[str, Any] = field(default_factory=dict)         # the settings naming where members go
    moves: list[dict[str, Any]] = field(default_factory=list)    # {"from": target, "members": N} per earlier one

    @property
    def to_send(self) -> int:
        return self.add + self.update + self.move + self.retry

    def move_lines(self) -> list[str]:
        """'move from … to …, N members' per earlier target, for plan and run summaries."""
        def describe(target: dict[str, Any]) -> str:
            return ", ".join(f"{name} {value}" for name, value in target.items())
        return [f"move from {describe(move['from'])} to {describe(self.target)}, {move['members']} members"
                for move in self.moves]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BatchReport:
    """One batch the destination answered, after its acknowledgements were committed."""

    kind: str          # "upsert" or "remove"
    records: int
    acknowledged: int
    rejected: int
    seconds: float     # from its sending to its answer


@dataclass
class RunReport:
    """The outcome of one run; written as JSON with --report and kept in state."""

    export: str
    run_id: int | None = None
    outcome: str = "running"  # succeeded, rejects, failed, aborted, interrupted, refused
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    dry_run: bool = False
    full_resync: bool = False
    plan: dict[str, Any] = field(default_factory=dict)
    upserted: int = 0
    removed: int = 0
    rejected: int = 0         # rows refused in this run (mapped and refused, or sent and refused)
    new_rejects: int = 0      # of them, refused for the first time or for a new kind of reason (exit 3)
    unacknowledged: int = 0   # sent but not answered (retries exhausted, interrupted)
    batches: int = 0
    rejects_by_reason: Counter[str] = field(default_factory=Counter)  # by reason_kind
    dropped: int = 0          # fields left out of acknowledged records (of mapped ones, in a dry run)
    dropped_fields: dict[str, Counter[str]] = field(default_factory=dict)  # column -> reason_kind -> count
    http: dict[str, int] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def count_dropped(self, fields: Iterable[tuple[str, str, str]]) -> None:
        """Count (key, column, reason) fields left out, by column and kind of reason."""
        for (column, kind), count in Counter((column, reason_kind(reason)) for _, column, reason in fields).items():
            self.dropped += count
            self.dropped_fields.setdefault(column, Counter())[kind] += count

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejects_by_reason"] = dict(self.rejects_by_reason.most_common())
        data["dropped_fields"] = {column: dict(kinds.most_common()) for column, kinds in self.dropped_fields.items()}
        return data


QUOTED_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"")


def reason_kind(reason: str) -> str:
    """A reject reason without the row's values: the report groups by it and stays free of personal
    data (`segship rejects` shows each row's full reason)."""
    return QUOTED_VALUE.sub("'…'", reason)
