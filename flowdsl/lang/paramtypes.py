"""Typed params: a `--param` value (or an API value) must fit the kind of the param's default.

The kind is read from the default as written: `true` a boolean, `3` an
integer, `2.5` a float, `5m` a duration, a list, a map, `run.logical_date` a
datetime, `run.date` a date (its YYYY-MM-DD text), any other string, `env()`
or `secret()` text. A default of `null` takes any value, read as a `.flow`
literal where it is one (the v1 behaviour). A value that does not fit is a
UsageError (exit 2) naming the param, the kind and an example.
"""

from __future__ import annotations

import datetime as dt
import json

from . import ir
from .diagnostics import UsageError

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Optional

ANY = "any"
EXAMPLES = {"boolean": "true", "integer": "3", "float": "2.5", "duration": "30s, 5m or 1h30m",
            "list": '["a", "b"]', "map": '{ key = "value" }', "datetime": "2026-11-22T05:00:00+01:00",
            "date": "2026-11-22", "string": "any text"}


def kind_of(default: Any) -> str:
    """The kind a param's default expression gives its values."""
    if isinstance(default, ir.Literal):
        v = default.value
        if v is None:
            return ANY
        if isinstance(v, bool):
            return "boolean"
        return "integer" if isinstance(v, int) else "float" if isinstance(v, float) else "string"
    if isinstance(default, ir.Duration):
        return "duration"
    if isinstance(default, ir.ListExpr):
        return "list"
    if isinstance(default, ir.MapExpr):
        return "map"
    if isinstance(default, ir.Ref) and default.name == "run" and default.path:
        return {"logical_date": "datetime", "date": "date"}.get(str(default.path[0]), "string")
    return "string"  # a template, env() and secret(): text


def literal(raw: str) -> Any:
    """`raw` read as a .flow literal (no references); a ValueError when it is not one."""
    from .diagnostics import FlowSyntaxError
    from .parser import parse
    from .planner import iter_refs
    from .values import EvalError, Scope, evaluate

    try:
        module, problems = parse("pipeline p { params { v = " + raw + " } }", "<--param>")
    except FlowSyntaxError:
        raise ValueError(raw) from None
    params = module.pipeline.params if module.pipeline else None
    if problems or module.tasks or params is None or len(params.entries) != 1:
        raise ValueError(raw)
    value = params.entries[0].value
    if any(True for _ in iter_refs(value)):
        raise ValueError(raw)
    try:
        return value, evaluate(value, Scope(params={}, run={}, environ={}))
    except EvalError:
        raise ValueError(raw) from None


def from_text(key: str, kind: str, raw: str) -> Any:
    """A `--param key=raw` value, typed as `kind`. Raises UsageError."""
    text = raw.strip()
    if kind == ANY:
        try:
            return literal(raw)[1]
        except ValueError:
            return raw
    if kind == "string":
        try:
            node, value = literal(raw)
        except ValueError:
            return raw
        return value if isinstance(node, ir.Template) else raw  # `"emea"` is emea; 123 stays the text 123
    if kind == "boolean":
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise _mismatch(key, kind, raw)
    if kind in ("datetime", "date"):
        return _date(key, kind, text)
    if kind in ("list", "map"):
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = literal(raw)[1]
            except ValueError:
                raise _mismatch(key, kind, raw) from None
        return from_value(key, kind, value)
    try:
        node, value = literal(raw)
    except ValueError:
        raise _mismatch(key, kind, raw) from None
    if kind == "duration" and isinstance(node, ir.Duration):
        return value
    return from_value(key, kind, value)


def from_value(key: str, kind: str, value: Any) -> Any:
    """A Python value (the API's, or a literal read from the command line) typed as `kind`. Raises UsageError."""
    if kind == ANY:
        return value
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "duration" and isinstance(value, dt.timedelta):
        return value.total_seconds()
    elif kind in ("float", "duration"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value) if kind == "float" else value
    elif kind == "list":
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif kind == "map":
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    elif kind == "datetime":
        if isinstance(value, dt.datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        if isinstance(value, str):
            return _date(key, kind, value)
        ok = False
    elif kind == "date":
        if isinstance(value, dt.date):
            return value.isoformat() if not isinstance(value, dt.datetime) else value.date().isoformat()
        if isinstance(value, str):
            return _date(key, kind, value)
        ok = False
    else:  # string
        ok = isinstance(value, str)
    if not ok:
        raise _mismatch(key, kind, _shown(value))
    return value


def _date(key: str, kind: str, text: str) -> Any:
    from .timeutil import parse_iso

    try:
        if kind == "date":
            return dt.date.fromisoformat(text.strip()).isoformat()
        return parse_iso(text)
    except ValueError:
        raise _mismatch(key, kind, text) from None


def _shown(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _mismatch(key: str, kind: str, given: Optional[str]) -> UsageError:
    article = "an" if kind[0] in "aeiou" else "a"
    shown = given if given is not None and len(given) <= 60 else (given or "")[:60] + "..."
    return UsageError(f"--param {key}: `{shown}` is not {article} {kind} (the kind of its default); "
                      f"for example --param {key}={EXAMPLES[kind]}")
