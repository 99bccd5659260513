"""Hook implementations: the ``braze`` destination and the ``segship sandbox braze`` command."""

from __future__ import annotations

from collections.abc import Callable

from segship import hookimpl
from segship.destination import Destination

from segship_braze.destination import BrazeDestination


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(BrazeDestination)
