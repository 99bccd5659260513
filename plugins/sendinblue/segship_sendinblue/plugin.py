"""Hook implementations: the ``sendinblue`` destination and the ``segship sandbox sendinblue`` command."""

from __future__ import annotations

from collections.abc import Callable

from segship import hookimpl
from segship.destination import Destination

from segship_sendinblue.destination import SendinblueDestination


@hookimpl
def segship_register_destinations(register: Callable[[type[Destination]], None]) -> None:
    register(SendinblueDestination)
