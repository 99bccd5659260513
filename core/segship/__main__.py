"""``python -m segship`` runs the CLI."""

from segship.cli.main import main

main()
