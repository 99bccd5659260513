"""Safeguards: a run that would send to too many members or remove too large a share stops before sending.

A function of the plan only, so ``segship plan`` tells beforehand which runs would stop. One
needs the destination too: a run whose state holds none of the export's members asks the
destination (after ``check_connection``) how many members its target holds, and stops if
any (:func:`empty_state_problem`); ``plan`` opens no connection, so it can only say the run
will ask.
"""

from __future__ import annotations

from segship.config import Config
from segship.engine.report import ExportPlan
from segship.errors import SegshipError


class SafeguardError(SegshipError):
    """The run would break a safeguard; it stopped before sending anything."""

    outcome = "aborted"


def safeguard_problem(plan: ExportPlan, config: Config, export_name: str, limit: int | None, *,
                      allow_mass_removal: bool = False) -> str | None:
    """Why a run of this plan must stop before sending (too many members, too large a removal), or None.

    ``limit`` is the destination's own cap on members, if it has one.
    """
    safeguards = config.exports[export_name].safeguards
    for name, cap in (("safeguards.max_profiles", safeguards.max_profiles), ("the destination's limit", limit)):
        if cap is not None and plan.members > cap:
            return f"export {export_name!r} has {plan.members} members, more than {name} ({cap})"
    fraction = safeguards.max_removed_fraction
    removing = plan.remove
    if allow_mass_removal or fraction is None or not plan.acknowledged or removing / plan.acknowledged <= fraction:
        return None
    which = "safeguards.max_removed_fraction" if safeguards.max_removed_fraction_set else \
        "the default removal safeguard"
    return (f"export {export_name!r} would remove {removing} of the {plan.acknowledged} members the destination "
            f"has ({removing / plan.acknowledged:.0%}), more than {which} ({fraction:.0%}). Check the segment's "
            f"source (an emptied or truncated table?); if the removal is intended, run `segship export "
            f"{export_name} --allow-mass-removal` once, or set exports.{export_name}.safeguards."
            "max_removed_fraction (null turns the check off)")


def check_safeguards(plan: ExportPlan, config: Config, export_name: str, limit: int | None, *,
                     allow_mass_removal: bool = False) -> None:
    """Stop before sending if the run would exceed max_profiles or remove too large a share."""
    problem = safeguard_problem(plan, config, export_name, limit, allow_mass_removal=allow_mass_removal)
    if problem is not None:
        raise SafeguardError(f"{problem}; nothing was sent")


def empty_state_problem(plan: ExportPlan, export_name: str, held: int | None, *,
                        allow_empty_state: bool = False) -> str | None:
    """Why a run must stop when state holds none of the export's members but the destination's target
    already holds ``held`` (None: it can't tell), or None."""
    if allow_empty_state or not plan.empty_state_check or not held:
        return None
    return (f"export {export_name!r}: state holds none of its members, but the destination already holds {held} "
            "in its target: state was lost (a deleted file, a CI runner's empty disk?) or points elsewhere. "
            f"Sent now, every member would go as new and members who left would never be removed. Point the "
            f"config at the export's state, or rebuild it from the destination (`segship state rebuild "
            f"{export_name}`, where the destination lists its members), or run `segship export {export_name} "
            "--allow-empty-state` once to send every member as new")


def check_empty_state(plan: ExportPlan, export_name: str, held: int | None, *, allow_empty_state: bool = False) \
        -> None:
    """Stop before sending when state is empty but the destination's target holds members."""
    problem = empty_state_problem(plan, export_name, held, allow_empty_state=allow_empty_state)
    if problem is not None:
        raise SafeguardError(f"{problem}; nothing was sent")
