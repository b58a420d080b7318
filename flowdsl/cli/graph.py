"""`flow graph`: a pipeline's task graph as ascii, dot, mermaid or json (drawn by `drawing`), by a run's states."""

from __future__ import annotations

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError, load_valid


def cmd_graph(args) -> int:
    from .drawing import render

    program = load_valid(args.file)
    if program is None:
        return EXIT_FAILED
    states = None
    if args.run is not None:
        states = _run_states(args, program.pipeline.name)
        if states is None:
            return EXIT_FAILED
    print(render(program, args.format, states))
    return EXIT_OK


def _run_states(args, pipeline: str):
    """Each task's state in the run `--run` names (from its journal), or None after saying why it cannot be read."""
    import sys

    from ..store import history, journal, state
    from .reportdata import task_states

    root = state.state_dir(args.file, args.state_dir)
    try:
        run_id = history.resolve(root, args.run, pipeline)
    except history.NoSuchRun as e:
        raise UsageError(str(e)) from None
    if history.pipeline_of(run_id) != pipeline:  # another pipeline's states would colour tasks that merely share names
        raise UsageError(f"run {run_id} is not a run of {pipeline}")
    try:
        return task_states(history.load(state.run_dir(root, run_id)))
    except journal.JournalError as e:
        print(f"flow graph: error: {e}", file=sys.stderr)
        return None


def add_graph(p) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("ascii", "dot", "mermaid", "json"), default="ascii")
    p.add_argument("--run", metavar="RUN_ID", help="colour the tasks by their state in this run (an id or a prefix)")
    p.add_argument("--state-dir", metavar="DIR", help="where the run is kept (default .flow beside FILE)")
