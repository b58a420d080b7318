"""Evaluating expressions at run time, in the runner, when a task is ready.

A worker never evaluates anything: it receives the already evaluated
arguments. References to results resolve against the results known so far;
a missing key fails the referring task with a message that names the
reference and the keys that exist. Secret values are collected as they are
read so that every log, report and error can mask them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Set, Tuple

from . import ir


class EvalError(Exception):
    """An expression that cannot be evaluated; fails the task that needs it."""

    def __init__(self, message: str, span: Optional[ir.Span] = None):
        super().__init__(message)
        self.span = span

    def __reduce__(self):
        return (EvalError, (str(self), self.span))


def mask(text: str, secrets) -> str:
    """`text` with every secret value in it replaced by `***` (longest first)."""
    for value in sorted(secrets, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, "***")
    return text


class Secrets:
    """The secret values read so far, and the masking of text that may hold them."""

    def __init__(self) -> None:
        self.values: Set[str] = set()

    def add(self, value: str) -> None:
        if value:
            self.values.add(value)

    def mask(self, text: str) -> str:
        return mask(text, self.values)

    def mask_data(self, value: Any) -> Any:
        """A copy of JSON-like data with every secret masked in its strings."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, list):
            return [self.mask_data(v) for v in value]
        if isinstance(value, dict):
            return {k: self.mask_data(v) for k, v in value.items()}
        return value


@dataclass
class Scope:
    """What names mean while evaluating one task's expressions."""

    params: Mapping[str, Any]
    run: Mapping[str, Any]
    results: Mapping[str, Any] = field(default_factory=dict)
    item: Optional[Tuple[str, Any]] = None  # (foreach variable, this instance's item)
    secrets: Secrets = field(default_factory=Secrets)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)


def run_values(run_id: str, pipeline: str, logical_date: dt.datetime, trigger: str) -> Dict[str, Any]:
    return {"id": run_id, "pipeline": pipeline, "logical_date": logical_date,
            "date": logical_date.date().isoformat(), "trigger": trigger}


def evaluate(expr: ir.Expr, scope: Scope) -> Any:
    if isinstance(expr, ir.Literal):
        return expr.value
    if isinstance(expr, ir.Duration):
        return expr.seconds
    if isinstance(expr, ir.Template):
        return render(expr, scope)
    if isinstance(expr, ir.Ref):
        return resolve(expr, scope)
    if isinstance(expr, ir.ListExpr):
        return [evaluate(item, scope) for item in expr.items]
    if isinstance(expr, ir.MapExpr):
        return {e.key: evaluate(e.value, scope) for e in expr.entries}
    if isinstance(expr, ir.EnvCall):
        return read_env(expr, scope)
    raise EvalError(f"cannot evaluate {type(expr).__name__}")


def read_env(call: ir.EnvCall, scope: Scope) -> Any:
    value = scope.environ.get(call.name)
    if value is None:
        if call.default is not None:
            return evaluate(call.default, scope)
        kind = "secret" if call.secret else "environment variable"
        raise EvalError(f"{kind} `{call.name}` is not set", call.span)
    if call.secret:
        scope.secrets.add(value)
    return value


def resolve(ref: ir.Ref, scope: Scope) -> Any:
    if scope.item is not None and ref.name == scope.item[0]:
        value, where = scope.item[1], ref.name
    elif ref.name == "params":
        value, where = scope.params, "params"
    elif ref.name == "run":
        value, where = scope.run, "run"
    elif ref.name in scope.results:
        value, where = scope.results[ref.name], ref.name
    else:
        raise EvalError(f"`{ref}`: no result for `{ref.name}`", ref.span)
    for part in ref.path:
        value, where = _step(value, part, where, ref)
    return value


def _step(value: Any, part, where: str, ref: ir.Ref):
    shown = f"{where}[{part}]" if isinstance(part, int) else f"{where}.{part}"
    if isinstance(part, int):
        if isinstance(value, (list, tuple, str, bytes)):
            if -len(value) <= part < len(value):
                return value[part], shown
            raise EvalError(f"`{ref}`: index {part} is out of range; `{where}` has {len(value)} items", ref.span)
        if isinstance(value, dict) and part in value:
            return value[part], shown
        raise EvalError(f"`{ref}`: `{where}` is {_kind(value)}, not a list", ref.span)
    if isinstance(value, Mapping):
        if part in value:
            return value[part], shown
        keys = ", ".join(sorted(map(str, value))) or "none"
        raise EvalError(f"`{ref}`: `{where}` has no key `{part}`; its keys: {keys}", ref.span)
    if not isinstance(value, (str, bytes, int, float, list, tuple, type(None))) and hasattr(value, part):
        return getattr(value, part), shown
    raise EvalError(f"`{ref}`: `{where}` is {_kind(value)}, which has no key `{part}`", ref.span)


def _kind(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
             tuple: "a list", type(None): "null", dict: "a map"}
    return names.get(type(value), f"a {type(value).__name__}")


def as_text(value: Any, fmt: Optional[str] = None) -> str:
    """A value as it appears inside a string: str as is, dates ISO, the rest JSON."""
    if fmt:
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.strftime(fmt)
        try:
            return format(value, fmt)
        except (TypeError, ValueError) as e:
            raise EvalError(f"format `{fmt}` does not apply to {_kind(value)}: {e}") from None
    if isinstance(value, str):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bool, type(None), list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def render(t: ir.Template, scope: Scope, quote: bool = False) -> str:
    """The string with every field filled in; `quote` shell-quotes each value."""
    out = []
    for part in t.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = as_text(resolve(part.ref, scope), part.format)
        out.append(shlex.quote(value) if quote else value)
    return "".join(out)
