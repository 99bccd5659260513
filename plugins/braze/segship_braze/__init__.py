"""segship destination plugin for Braze."""
