"""`flow graph`: a pipeline's task graph as ascii, dot, mermaid or json (drawn by `drawing`)."""

from __future__ import annotations

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import load_valid


def cmd_graph(args) -> int:
    from .drawing import render

    program = load_valid(args.file)
    if program is None:
        return EXIT_FAILED
    print(render(program, args.format))
    return EXIT_OK


def add_graph(p) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("ascii", "dot", "mermaid", "json"), default="ascii")
