"""The `flow` command: one module per verb family; `main(argv) -> exit code`."""

from .command import main

__all__ = ["main"]
