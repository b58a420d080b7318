"""The Python API (cli.md, "The Python API"): `flowdsl.load`, `run`, `runs`, `FlowError`, `Skip`.

Each function does what its verb does, through the same code: `load` is
`flow validate` of one file, `run` is `flow run --json` (its report, the
same dict), `runs` is `flow runs --json`. Where the verb would exit 2, or
print diagnostics and exit 1 before running, they raise `FlowError`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union


class FlowError(Exception):
    """What `flow` would refuse: a file with errors (`.diagnostics`, as `flow validate --format json` lists
    them), a wrong argument, a run that cannot be opened."""

    def __init__(self, message: str, diagnostics: Sequence[Dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)


class Skip(Exception):
    """Raised by a Python task to skip itself: `raise flowdsl.Skip("nothing new today")`.

    The task (or the foreach instance) is skipped with that reason, not failed;
    what depends on it follows the `when` rules.
    """


class Task:
    """A task of a loaded pipeline."""

    def __init__(self, name: str, upstream: Tuple[str, ...], action: str, foreach: bool) -> None:
        self.name = name
        self.upstream = upstream  # the tasks it needs, by reference or `after`
        self.action = action  # run | sh | exec
        self.foreach = foreach

    def __repr__(self) -> str:
        return f"Task({self.name!r}, upstream={self.upstream!r})"


class Pipeline:
    """A checked pipeline: its name, file, tasks in dependency order, schedules as written."""

    def __init__(self, name: str, file: str, tasks: Dict[str, Task], schedules: List[str]) -> None:
        self.name = name
        self.file = file
        self.tasks = tasks
        self.schedules = schedules

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, {len(self.tasks)} tasks)"


def load(path: Union[str, os.PathLike[str]]) -> Pipeline:
    """The checked pipeline of a `.flow` file. Raises FlowError with the file's diagnostics."""
    from ..lang import ir, planner
    from ..lang.check import check

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FlowError(f"no such file: {path}")
    loaded = check(path)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    if errors or loaded.program is None:
        raise FlowError(f"{path}: {len(errors)} error{'s' * (len(errors) != 1)}: {errors[0] if errors else ''}",
                        [d.to_json() for d in errors])
    program = loaded.program
    plan = planner.make_plan(program)
    kinds = {ir.RunAction: "run", ir.ShAction: "sh", ir.ExecAction: "exec"}
    tasks = {name: Task(name, tp.upstream, kinds.get(type(tp.task.action), "?"), tp.task.foreach is not None)
             for name, tp in plan.tasks.items()}
    schedules = [f"{s.kind} {s.expr.text}" + (f" {s.option.text}" if s.option is not None else "")
                 for s in program.pipeline.schedules]
    return Pipeline(program.pipeline.name, program.file, tasks, schedules)


def run(path: Union[str, os.PathLike[str]], params: Optional[Mapping[str, Any]] = None,
        target: Union[None, str, Sequence[str]] = None, executor: Optional[str] = None,
        state_dir: Optional[str] = None, resume: Union[None, bool, str] = None) -> Dict[str, Any]:
    """Run a pipeline and return its report (the dict `flow run --json` prints).

    `params` are Python values; `target` a task or a list of them; `executor`
    as `--executor` (`"inline"` runs in this process, for a pipeline's own
    tests); `resume` True for the latest run of the pipeline, or a run id.
    Raises FlowError where `flow run` would exit 2, or could not run at all.
    """
    from ..lang.diagnostics import UsageError
    from .run import LATEST, DryRun, RunRefused, open_from_args

    path = os.fspath(path)
    load(path)  # its diagnostics, as FlowError, before anything else
    args = argparse.Namespace(
        file=path, param=[], values=dict(params or {}),
        target=[target] if isinstance(target, str) else list(target or ()), from_=[], tag=[],
        resume=None if resume is None or resume is False else (LATEST if resume is True else str(resume)),
        detach=False, dry_run=False, executor=executor, dask_address=None, dask_timeout=None, workers=None,
        logical_date=None, json=True, quiet=True, verbose=False, state_dir=state_dir)
    try:
        opened = open_from_args(args, _Silent())
    except UsageError as e:
        raise FlowError(str(e)) from None
    except RunRefused as e:
        raise FlowError(e.args[0] or f"{path} cannot run") from None
    assert not isinstance(opened, DryRun)
    runner, keep_checked = opened
    return runner.execute(full=True)


def runs(path: Union[None, str, os.PathLike[str]] = None, state_dir: Optional[str] = None,
         limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """The runs of a pipeline (its file's state folder), newest first, as `flow runs --json` lists them."""
    from ..lang.diagnostics import UsageError
    from ..store import history, state

    file = os.fspath(path) if path is not None else None
    pipeline = None
    try:
        root = state.state_dir(file, state_dir)
        if file is not None:
            pipeline = load(file).name
        return history.runs(root, pipeline, limit)
    except UsageError as e:
        raise FlowError(str(e)) from None


class _Silent:
    """The API prints nothing: what happened is in the report."""

    refresh = 1.0

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
