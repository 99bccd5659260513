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
    instance: dict[str, Any] = field(default_factory=dict)       # the destination instance they go to
    connection: str = ""                                         # ... through this connection
    # {"from": target, "members": N} per earlier target, with "from_instance" and "from_connection"
    # when it is in another instance
    moves: list[dict[str, Any]] = field(default_factory=list)
    # earlier targets in an instance the config can't reach: {"from"…, "members": N left there, "reason"}
    left_behind: list[dict[str, Any]] = field(default_factory=list)
    # the connection of the export's last run, when it was another and the destination observes its
    # account: which account the new one reaches is known only once a run asks
    previous_connection: str = ""
    left_out: int = 0               # keys left out for sharing a destination identity with a lower key (first)
    #: state holds none of the export's members and the destination counts its target's: a run that sends
    #: checks the target holds none first (``--allow-empty-state``)
    empty_state_check: bool = False

    @property
    def to_send(self) -> int:
        return self.add + self.update + self.move + self.retry

    @property
    def removals(self) -> int:
        """Every removal a run makes: leavers, identities left to remove (a replaced identity, or one a
        member moved out of an earlier target left there: a run cut during a move leaves them), and the
        identity each member it moves leaves in its earlier target. ``remove`` alone counts leavers:
        what the removal safeguard weighs."""
        return self.remove + self.stale_identities + self.move

    def move_lines(self) -> list[str]:
        """'move from … to …, N members' per earlier target, for plan and run summaries."""
        moves = []
        for move in self.moves:
            if "from_instance" in move:  # another instance: say which, on both sides
                source = describe_instance(move["from_instance"], move["from_connection"])
                moves.append(f"move from {describe_target(move['from'])} on {source} to "
                             f"{describe_target(self.target)} on {describe_instance(self.instance, self.connection)}, "
                             f"{move['members']} members")
            else:
                moves.append(f"move from {describe_target(move['from'])} to {describe_target(self.target)}, "
                             f"{move['members']} members")
        return moves

    def instance_lines(self) -> list[str]:
        """What a plan can't know of the instance (the account a new connection reaches), for plan summaries."""
        if not self.previous_connection:
            return []
        return [f"its connection changed from {self.previous_connection} to {self.connection}: a run first asks "
                f"which account {self.connection} reaches, and moves the members there if it is another"]

    def left_behind_lines(self) -> list[str]:
        """Per earlier target in an instance the config can't reach: what a run would leave there, and why."""
        return [left_behind_line(left) for left in self.left_behind]

    def removal_lines(self) -> list[str]:
        """What ``removals`` is made of, when identities are left to remove (a move line already says
        that each member it moves leaves one), for plan summaries."""
        if not self.stale_identities:
            return []
        return [f"{self.removals} removal(s): {self.remove} leaver(s), {self.move} moving member(s)' identity in "
                f"their earlier target, {self.stale_identities} identity(ies) left to remove"]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "removals": self.removals}


def describe_target(target: dict[str, Any]) -> str:
    """A target's settings for people: ``list_id 3``."""
    return ", ".join(f"{name} {value}" for name, value in target.items())


def describe_instance(instance: dict[str, Any] | None, connection: str | None) -> str:
    """An instance for people: the connection, then what identifies it (``brevo (destination
    sendinblue, organization_id 4f2…)``; what the destination observed is flattened in)."""
    facts: dict[str, Any] = {}
    for name, value in (instance or {}).items():
        if isinstance(value, dict):
            facts.update(value)
        elif name != "connection":
            facts[name] = value
    details = ", ".join(f"{name} {value}" for name, value in facts.items())
    return f"{connection} ({details})" if details else str(connection)


def left_behind_line(left: dict[str, Any]) -> str:
    """What is left in an earlier target a run can't reach (``ExportPlan.left_behind``, ``RunReport.left_behind``)."""
    return (f"{left['members']} member(s) left to remove from {describe_target(left['from'])} on "
            f"{describe_instance(left.get('from_instance'), left.get('from_connection'))}: {left['reason']}; "
            "they are removed by the first run that can reach it")


@dataclass(frozen=True)
class BatchReport:
    """One batch the destination answered, after its acknowledgements were committed."""

    kind: str          # "upsert" or "remove"
    records: int
    acknowledged: int
    rejected: int
    seconds: float     # from its sending to its answer


#: The outcomes of a run that delivered: it finished, every row sent or refused (``rejects``: some were).
DELIVERED_OUTCOMES = ("succeeded", "rejects")


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
    # earlier targets whose instance the run couldn't reach: what it left there (see ExportPlan.left_behind)
    left_behind: list[dict[str, Any]] = field(default_factory=list)
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
