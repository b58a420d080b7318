"""Importing this module would end the process: `flow validate` must only read it."""

raise SystemExit("flow validate imported tasks/explosive.py")


def safe(value):
    return value
