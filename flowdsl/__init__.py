"""flow: pipelines written in the `.flow` language, checked, planned, run and scheduled.

One subpackage per stage, each importing only those listed before it:

    lang/      text to checked IR: parser, builder, IR, loader, validator, planner
    store/     the state folder: journals, run state, history, checkpoints, caches
    run/       the runner loop, its backends and workers
    schedule/  slots, the tick state, one tick, launching runs
    cli/       the `flow` command, one module per verb family

`check(path)` runs the front half (text to diagnostics); `load`, `run` and
`runs` are the Python API (flowdsl.cli.api); `flowdsl.cli.main` is the
command. Imports stay inside functions: `flow validate` must start fast.
"""

__version__ = "0.1.0"
__all__ = ["check", "load", "run", "runs", "FlowError", "Skip", "__version__"]
_API = ("load", "runs", "FlowError", "Skip", "Pipeline", "Task")


def run(path, params=None, target=None, executor=None, state_dir=None, resume=None):
    """Run a pipeline and return its report: see `flowdsl.cli.api.run`.

    Once the run stage's package (`flowdsl.run`) is imported, it takes this
    name, and calling it does the same (flowdsl/run/__init__.py).
    """
    from .cli.api import run as _run

    return _run(path, params, target, executor, state_dir, resume)


def __getattr__(name):
    """The Python API (`flowdsl.load`, `run`, `runs`, `FlowError`, `Skip`), imported when first used."""
    if name in _API:
        from .cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'flowdsl' has no attribute {name!r}")


def check(path, targets=(), loader=None, modules=None):
    """Load `path` (following includes) and validate it: see `flowdsl.lang.check`."""
    from .lang.check import check as front

    return front(path, targets, loader, modules)
