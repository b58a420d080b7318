"""The checked program lowered once into what a run follows: plain values, defaults applied.

The planner chose the tasks and their order; this turns each into a
`TaskSpec` of plain values (its trigger rule, one retry policy, its timeout in
seconds, output mode, cache, resources) and the pipeline into an `ExecPlan`
(executor, capacity, the run's timeout, results mode, hooks as nodes that run
after the tasks). Every default is applied here and nowhere else.

Expressions (`with`, a command, a foreach list, params) stay expression trees,
which `lang.values` evaluates when a task is ready. Nothing under `run/` reads
the IR: the runner's machine and driver decide from these records alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from . import ir, planner

TYPE_CHECKING = False  # typing's names beyond the ones above, without importing them at run time
if TYPE_CHECKING:
    from typing import Callable, FrozenSet

# The records below are read-only by convention, not frozen: a frozen
# dataclass's __init__ sets each field through object.__setattr__, which made
# lowering a 10,000-task plan cost 10 us a task, a quarter of the runner's own.

DEFAULT_EXECUTOR = "process"
DEFAULT_WHEN = "success"
DEFAULT_OUTPUT = "text"
DEFAULT_RESULTS = "msgpack"
DEFAULT_SHELL = ("/bin/sh", "-c")
DEFAULT_EVERY = 60.0  # a sensor's time between checks


@dataclass
class RetryPolicy:
    """`retry N delay D backoff F max_delay D jitter F on E, ...` as numbers (defaults: at once, no jitter)."""

    count: int
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: Optional[float] = None
    jitter: float = 0.0
    on: Tuple[str, ...] = ()  # exception names; empty: any failure

    def delay_before(self, made: int, names: List[str], uniform: Callable[[float, float], float]) -> Optional[float]:
        """Seconds before the next attempt after `made` failed ones, or None when out of retries.

        `names` are the failure's class names (its bases too); `uniform(a, b)`
        draws the jitter (random.uniform, or a test's fixed stand-in).
        """
        if made > self.count:
            return None
        if self.on and not any(n in names for n in self.on):
            return None
        delay = self.delay * self.backoff ** (made - 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if self.jitter and delay:
            delay *= 1 + uniform(-self.jitter, self.jitter)
        return max(0.0, delay)


@dataclass
class Action:
    """What an attempt does: `run` a callable, `sh` a command, `exec` an argv."""

    kind: str  # run | sh | exec | wait | call | post
    target: str = ""  # run, wait run: `module:attr`; call: the called .flow file's absolute path
    command: Any = None  # sh, wait sh, wait file: the command's or the pattern's template (an expression)
    argv: Any = None  # exec: the argv list (an expression)
    wait: str = ""  # wait: what it waits for (file | sh | run)
    shell: Tuple[str, ...] = DEFAULT_SHELL  # sh, wait sh: what runs the command
    url: Any = None  # post: the address's template


@dataclass
class TaskSpec:
    name: str
    action: Action
    args: Any  # the `with` map (an expression), or None
    upstream: Tuple[str, ...]  # selected tasks only, in the planner's order
    downstream: Tuple[str, ...]
    when: str  # success | failure | always | none_failed
    foreach_var: Optional[str]
    foreach_items: Any  # an expression; None: not a foreach task
    timeout: Optional[float]  # seconds, per attempt
    timeout_text: str  # as written, for messages
    retry: Optional[RetryPolicy]
    output: str  # text | json | lines
    cache: bool
    cache_ttl: Optional[float]
    resources: Optional[Dict[str, Any]]  # for the dask executor
    source: Any  # the planner's TaskPlan: for fingerprints and descriptions, never for decisions
    condition: Any = None  # `if EXPR`: the expression; None: none
    condition_text: str = ""
    foreach_value: Optional[str] = None  # `foreach key, value in MAP`: the value's name
    every: float = DEFAULT_EVERY  # a sensor's time between checks
    every_text: str = "1m"  # as written, for messages
    only: Optional[FrozenSet[int]] = None  # `--target T[i]`: the instances of this foreach task that run


@dataclass
class HookSpec:
    event: str  # success | failure | finish
    key: str  # `on_failure`: its log files' name
    action: Action


@dataclass
class ExecPlan:
    pipeline: str
    file: str
    folder: str  # where tasks and hooks run: the folder of the pipeline's file
    sys_path: Tuple[str, ...]  # that folder, then `pythonpath`
    tasks: Dict[str, TaskSpec]  # in topological order
    hooks: Tuple[HookSpec, ...]
    executor: str
    concurrency: Optional[int]  # the pipeline's `concurrency`; None: not set
    capacity: int  # attempts at once: concurrency (default the CPUs), capped by --workers
    run_timeout: Optional[float]
    run_timeout_text: str
    results: str  # msgpack | pickle
    params: Tuple[Tuple[str, Any], ...]  # (name, default expression)
    source: planner.Plan
    env_file: Optional[str] = None  # `env_file`: its absolute path
    ship: Tuple[Tuple[str, str], ...] = ()  # `ship`: (path relative to the folder, absolute path) of each

    def hooks_for(self, status: str) -> List[HookSpec]:
        """The hooks a run that ended `status` fires: `success` or `failure` first, then `finish`."""
        event = "success" if status == "success" else "failure"
        return [h for h in self.hooks if h.event == event] + [h for h in self.hooks if h.event == "finish"]


def _seconds(expr: Any) -> Optional[float]:
    return expr.seconds if isinstance(expr, ir.Duration) else None


def _number(expr: Any, default: float) -> float:
    return expr.value if isinstance(expr, ir.Literal) and isinstance(expr.value, (int, float)) else default


def lower_shell(expr: Any) -> Tuple[str, ...]:
    if isinstance(expr, ir.ListExpr) and expr.items and all(isinstance(i, ir.Template) for i in expr.items):
        return tuple(i.text for i in expr.items if isinstance(i, ir.Template))  # (all are: the filter is for mypy)
    return DEFAULT_SHELL


def lower_action(action: Any, shell: Tuple[str, ...] = DEFAULT_SHELL, folder: str = "") -> Action:
    if isinstance(action, ir.RunAction):
        return Action("run", target=str(action.callable))
    if isinstance(action, ir.ShAction):
        return Action("sh", command=action.command, shell=shell)
    if isinstance(action, ir.WaitAction):
        if action.kind == "run":
            return Action("wait", target=str(action.target), wait="run")
        return Action("wait", command=action.target, wait=action.kind, shell=shell)
    if isinstance(action, ir.CallAction):
        return Action("call", target=os.path.normpath(os.path.join(folder, action.path.text)))
    if isinstance(action, ir.PostAction):
        return Action("post", url=action.url)
    return Action("exec", argv=action.argv)


def lower_retry(r: Optional[ir.Retry]) -> Optional[RetryPolicy]:
    if r is None:
        return None
    return RetryPolicy(count=int(_number(r.count, 0)), delay=_seconds(r.delay) or 0.0,
                       backoff=_number(r.backoff, 1), max_delay=_seconds(r.max_delay),
                       jitter=_number(r.jitter, 0.0), on=tuple(n.name for n in r.on))


def lower(plan: planner.Plan, executor: Optional[str] = None, workers: Optional[int] = None,
          targets: Tuple[str, ...] = ()) -> ExecPlan:
    """The plan a run follows; `executor` and `workers` are the command line's (None: the pipeline's);
    `targets` the run's, whose `T[i]` limit a foreach task to those instances."""
    program = plan.program
    p = program.pipeline
    folder = os.path.dirname(os.path.abspath(program.file))
    sys_path = tuple([folder] + [os.path.normpath(os.path.join(folder, t.text)) for t in p.pythonpath])
    downstream: Dict[str, List[str]] = {name: [] for name in plan.tasks}
    for name, tp in plan.tasks.items():
        for u in tp.upstream:
            if u in downstream:
                downstream[u].append(name)
    tasks: Dict[str, TaskSpec] = {}
    pipeline_shell = lower_shell(p.shell) if p.shell is not None else DEFAULT_SHELL
    everything = all(u in downstream for tp in plan.tasks.values() for u in tp.upstream)
    # Tasks that take a statement from `defaults` share its record: lowered once.
    retries: Dict[int, Optional[RetryPolicy]] = {}
    timeouts: Dict[int, Tuple[Optional[float], str]] = {}
    no_timeout: Tuple[Optional[float], str] = (None, "")
    for name, tp in plan.tasks.items():
        task, s = tp.task, tp.settings
        r = s.retry
        retry = None if r is None else retries.get(id(r))
        if retry is None and r is not None:
            retry = retries[id(r)] = lower_retry(r)
        t = s.timeout
        timeout = no_timeout if t is None else timeouts.get(id(t))
        if timeout is None:
            timeout = timeouts[id(t)] = (t.seconds, t.text) if isinstance(t, ir.Duration) else no_timeout
        foreach, cache = task.foreach, s.cache
        shell = pipeline_shell if s.shell is None else lower_shell(s.shell)
        tasks[name] = TaskSpec(
            name, lower_action(task.action, shell, folder), task.args,
            tp.upstream if everything else tuple(u for u in tp.upstream if u in downstream), tuple(downstream[name]),
            s.when.value if s.when else DEFAULT_WHEN,
            foreach.var.name if foreach else None, foreach.items if foreach else None,
            timeout[0], timeout[1], retry, s.output.value if s.output else DEFAULT_OUTPUT,
            cache is not None, _seconds(cache.ttl) if cache is not None else None,
            # the validator lets only number literals into `resources`
            {e.key: e.value.value for e in s.resources.entries}  # type: ignore[union-attr]
            if s.resources is not None else None,
            tp, task.condition.expr if task.condition else None, task.condition.text if task.condition else "",
            foreach.value.name if foreach and foreach.value else None,
            task.every.seconds if isinstance(task.every, ir.Duration) else DEFAULT_EVERY,
            task.every.text if isinstance(task.every, ir.Duration) else "1m")
    for name, indexes in planner.target_instances(targets).items():
        if name in tasks and tasks[name].foreach_items is not None:
            tasks[name].only = frozenset(indexes)
    hooks = tuple(HookSpec(h.event, f"on_{h.event}", lower_action(h.action, pipeline_shell, folder)) for h in p.hooks)
    concurrency = int(p.concurrency.value) if isinstance(p.concurrency, ir.Literal) else None
    capacity = concurrency or os.cpu_count() or 1
    if workers:
        capacity = min(capacity, workers)
    return ExecPlan(
        pipeline=p.name, file=program.file, folder=folder, sys_path=sys_path, tasks=tasks, hooks=hooks,
        executor=executor or (p.executor.kind if p.executor else DEFAULT_EXECUTOR),
        concurrency=concurrency, capacity=max(1, capacity),
        run_timeout=_seconds(p.timeout), run_timeout_text=p.timeout.text if isinstance(p.timeout, ir.Duration) else "",
        results=p.results.value if p.results else DEFAULT_RESULTS,
        params=tuple((e.key, e.value) for e in p.params.entries) if p.params is not None else (),
        source=plan, env_file=os.path.join(folder, p.env_file.text) if p.env_file is not None else None,
        ship=tuple((t.text, os.path.normpath(os.path.join(folder, t.text))) for t in p.ship if t.is_constant))
