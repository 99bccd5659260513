"""An entry point that fails to import: segship must skip it with a warning naming it."""

raise RuntimeError("segship_testdest_broken fails on import on purpose")
