"""flow: pipelines written in the `.flow` language, checked, planned, run and scheduled.

One subpackage per stage, each importing only those listed before it:

    lang/      text to checked IR: parser, builder, IR, loader, validator, planner
    store/     the state folder: journals, run state, history, checkpoints, caches
    run/       the runner loop, its backends and workers
    schedule/  slots, the tick state, one tick, launching runs
    cli/       the `flow` command, one module per verb family

`check(path)` runs the front half (text to diagnostics); `flowdsl.cli.main`
is the command. Imports stay inside functions: `flow validate` must start fast.
"""

__version__ = "0.1.0"
__all__ = ["check", "__version__"]


def check(path, targets=(), loader=None, modules=None):
    """Load `path` (following includes) and validate it: see `flowdsl.lang.check`."""
    from .lang.check import check as front

    return front(path, targets, loader, modules)
