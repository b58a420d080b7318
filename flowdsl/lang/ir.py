"""The typed intermediate representation of a `.flow` program.

The builder turns the parse tree into these frozen records (records.py:
frozen dataclasses in all but import cost); everything
after it (validator, planner, runner, scheduler) reads only them. Nothing here
imports lark, so the IR pickles and crosses process boundaries as plain data.
Every node carries the `Span` of the source text it came from.
"""

from __future__ import annotations

from .records import Factory, fields, finish, is_record, record

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Dict, FrozenSet, Optional, Tuple, Union


@record
class Span:
    """A range of source text; lines and columns count from 1, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to(self, other: Span) -> Span:
        """The span from the start of this one to the end of `other`."""
        return Span(self.file, self.line, self.col, other.end_line, other.end_col)


# ---- expressions -----------------------------------------------------------


@record
class Literal:
    """A constant: str, int, float, bool or None."""

    value: Any
    span: Span


@record
class Duration:
    """A length of time as written (`1h30m`), kept in seconds."""

    seconds: float
    text: str
    span: Span


@record
class Ref:
    """A reference: `extract`, `extract.total`, `fetch[0]`, `params.day`, `run.id`.

    `path` holds the accessors after the root name: a str for `.key` or
    `["key"]`, an int for `[0]`.
    """

    name: str
    path: Tuple[Union[str, int], ...]
    span: Span

    def __str__(self) -> str:
        out = self.name
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else f".{part}"
        return out


@record
class Field:
    """An interpolated field of a string: `{run.logical_date:%Y-%m}`."""

    ref: Ref
    format: Optional[str]
    span: Span


@record
class Template:
    """A string literal: text pieces and interpolated fields, in order."""

    parts: Tuple[Union[str, Field], ...]
    span: Span

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def text(self) -> str:
        """The string with each field written back as `{ref}` (exact when constant)."""
        return "".join(p if isinstance(p, str) else "{" + str(p.ref) + "}" for p in self.parts)


@record
class ListExpr:
    items: Tuple[Expr, ...]
    span: Span


@record
class Entry:
    key: str
    key_span: Span
    value: Expr


@record
class MapExpr:
    entries: Tuple[Entry, ...]
    span: Span

    def get(self, key: str) -> Optional[Expr]:
        for entry in self.entries:
            if entry.key == key:
                return entry.value
        return None


@record
class EnvCall:
    """`env("NAME", default)` or `secret("NAME")`."""

    name: str
    default: Optional[Expr]
    secret: bool
    span: Span


@record
class Compare:
    """`a == b`, `a < b`, `a in b`, `a not in b` (op as written, `not in` with one space)."""

    op: str
    left: Expr
    right: Expr
    span: Span


@record
class BoolOp:
    """`a and b and c` or `a or b`: op is `and` or `or`; items two or more."""

    op: str
    items: Tuple[Expr, ...]
    span: Span


@record
class Not:
    operand: Expr
    span: Span


if TYPE_CHECKING:
    Expr = Union[Literal, Duration, Ref, Template, ListExpr, MapExpr, EnvCall, Compare, BoolOp, Not]


@record
class Condition:
    """`if EXPR`: the expression, and its text as written (the reason a skipped task gives)."""

    expr: Expr
    text: str
    span: Span


# ---- task statements -------------------------------------------------------


@record
class CallableRef:
    """`module.path:attr`, found on the pipeline's import path."""

    module: str
    attr: str
    span: Span

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


@record
class RunAction:
    callable: CallableRef
    span: Span


@record
class ShAction:
    command: Template
    span: Span


@record
class ExecAction:
    argv: Expr
    span: Span


@record
class WaitAction:
    """`wait file "GLOB"`, `wait sh "CMD"`, `wait run mod:attr`: a sensor."""

    kind: str  # file | sh | run
    target: Union[Template, CallableRef]
    span: Span


@record
class CallAction:
    """`call "other.flow"`: a sub-pipeline, run as a run of its own."""

    path: Template
    span: Span


@record
class PostAction:
    """`post "URL"` (hooks only): the run's report sent as JSON."""

    url: Template
    span: Span


if TYPE_CHECKING:
    Action = Union[RunAction, ShAction, ExecAction, WaitAction, CallAction, PostAction]


@record
class Name:
    """A bare name as written, with where it was written (`after a, b`)."""

    name: str
    span: Span


@record
class Retry:
    count: Expr
    delay: Optional[Expr]
    backoff: Optional[Expr]
    max_delay: Optional[Expr]
    jitter: Optional[Expr]
    on: Tuple[Name, ...]
    span: Span


@record
class Foreach:
    var: Name
    items: Expr
    span: Span
    value: Optional[Name] = None  # `foreach key, value in MAP`: the second name


@record
class Word:
    """A keyword argument such as `when always` or `output json`."""

    value: str
    span: Span


@record
class Cache:
    ttl: Optional[Expr]
    span: Span


@record
class Settings:
    """The statements a task and a `defaults` block share.

    Each is None when not written; a task's own statement replaces the
    default's whole (see `planner.effective`).
    """

    retry: Optional[Retry] = None
    timeout: Optional[Expr] = None
    when: Optional[Word] = None
    output: Optional[Word] = None
    cache: Optional[Cache] = None
    tags: Tuple[Name, ...] = ()
    resources: Optional[MapExpr] = None  # abstract worker resources a task needs (the dask executor)
    shell: Optional[Expr] = None  # `shell ["bash", "-c"]`: what runs `sh` commands


@record
class Task:
    name: str
    name_span: Span
    action: Optional[Action]
    args: Optional[MapExpr]
    after: Tuple[Name, ...]
    foreach: Optional[Foreach]
    description: Optional[Template]
    settings: Settings
    span: Span
    condition: Optional[Condition] = None  # `if EXPR`
    every: Optional[Expr] = None  # a sensor's time between checks


# ---- pipeline statements ---------------------------------------------------


@record
class Schedule:
    """One `schedule` statement: kind is `cron`, `every` or `at`.

    `expr` is the cron expression or the ISO datetime (a Template), or the
    interval (an Expr, normally a Duration); `option` is `tz` for cron and
    `from` for every.
    """

    kind: str
    expr: Expr
    option: Optional[Template]
    span: Span


@record
class Window:
    start: Template
    end: Optional[Template]
    span: Span


@record
class Executor:
    kind: str
    address: Optional[Template]
    span: Span


@record
class Hook:
    event: str
    action: Action
    span: Span


@record
class PipelineDecl:
    """The `pipeline NAME { ... }` block (flowdsl.Pipeline is the API's view of a checked file)."""

    name: str
    name_span: Optional[Span]
    description: Optional[Template] = None
    schedules: Tuple[Schedule, ...] = ()
    window: Optional[Window] = None
    catchup: Optional[Word] = None
    overlap: Optional[Word] = None
    concurrency: Optional[Expr] = None
    executor: Optional[Executor] = None
    timeout: Optional[Expr] = None
    pythonpath: Tuple[Template, ...] = ()
    params: Optional[MapExpr] = None
    defaults: Settings = Factory(factory=Settings)  # type: ignore[assignment]  # a Factory stands for the Settings it makes
    results: Optional[Word] = None
    hooks: Tuple[Hook, ...] = ()
    span: Optional[Span] = None
    shell: Optional[Expr] = None  # `shell [...]` for the pipeline: tasks' default and the hooks'
    env_file: Optional[Template] = None  # `env_file ".env"`: KEY=value lines for env() and secret()
    ship: Tuple[Template, ...] = ()  # `ship "data", "lookup.csv"`: files and folders that travel with the code


@record
class Include:
    path: Optional[str]  # None when it could not be read (already reported)
    span: Span


@record
class Module:
    """One parsed file: what it declares, before includes are followed."""

    file: str
    pipeline: Optional[PipelineDecl]
    tasks: Tuple[Task, ...]
    includes: Tuple[Include, ...]


@record
class Program:
    """A pipeline with its included tasks merged in: what validate and run see."""

    file: str
    pipeline: PipelineDecl
    tasks: Tuple[Task, ...]
    files: Tuple[str, ...]


RUN_VALUES = ("id", "pipeline", "logical_date", "date", "trigger")
RESERVED = frozenset({"params", "run", "env", "secret", "true", "false", "null"})


_SHAPES: Dict[type, Optional[Tuple[str, ...]]] = {}  # a record class -> its fields but spans; a Span -> None


def shape_text(node: Any, skip: FrozenSet[Tuple[str, str]] = frozenset()) -> str:
    """The IR without its spans, as text: what a node means, not where it is written. `skip`: fields
    (class name, field) left out as well (`fmt.meaning`: a condition's text, which is only its layout).

    Written directly, it is the text `repr` gives of the nested lists
    [class name, [field, shape]...] (lists for tuples, None for spans) that
    task fingerprints were first made from, so fingerprints stay what they were.
    """
    cls = type(node)
    if cls in _SHAPES:
        names = _SHAPES[cls]
        if names is None:
            return "None"
        name = cls.__name__
        parts = [repr(name)]
        for f in names:
            if not skip or (name, f) not in skip:
                parts.append(f"[{f!r}, {shape_text(getattr(node, f), skip)}]")
        return "[" + ", ".join(parts) + "]"
    if isinstance(node, (tuple, list)):
        return "[" + ", ".join([shape_text(n, skip) for n in node]) + "]"
    if isinstance(node, Span):
        _SHAPES[cls] = None
        return "None"
    if is_record(node):
        _SHAPES[cls] = tuple(f for f in fields(node) if not f.endswith("span"))
        return shape_text(node, skip)
    return repr(node)


def to_data(node: Any) -> Any:
    """The IR as JSON-ready data (for golden files and `--format json`).

    Spans become `"line:col-end_line:end_col"`; the file is implied.
    """
    if isinstance(node, Span):
        return f"{node.line}:{node.col}-{node.end_line}:{node.end_col}"
    if isinstance(node, (tuple, list)):
        return [to_data(item) for item in node]
    if is_record(node):
        out = {"node": type(node).__name__}
        for name in fields(node):
            value = getattr(node, name)
            if value is None or value == ():
                continue
            out[name] = to_data(value)
        return out
    return node


finish()
