"""Shared pytest set-up. Doctests get no injected names: every example imports what it uses."""
