"""Evaluating expressions at run time, in the runner, when a task is ready.

A worker never evaluates anything: it receives the already evaluated
arguments. References to results resolve against the results known so far;
a missing key fails the referring task with a message that names the
reference and the keys that exist. Secret values are collected as they are
read so that every log, report and error can mask them, in each of the ways
they may be written out (repr, JSON, shell quoting...).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import stat
from dataclasses import dataclass, field
from typing import Any, Collection, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple, Type, Union

from . import ir, shellquote


class EvalError(Exception):
    """An expression that cannot be evaluated; fails the task that needs it."""

    def __init__(self, message: str, span: Optional[ir.Span] = None):
        super().__init__(message)
        self.span = span

    def __reduce__(self) -> Tuple[Type[EvalError], Tuple[str, Optional[ir.Span]]]:
        return (EvalError, (str(self), self.span))


def mask(text: str, secrets: Optional[Collection[str]]) -> str:
    """`text` with every secret value in it replaced by `***` (longest first)."""
    if not secrets:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, "***")
    return text


# A line of a multi-line secret is masked on its own from this length: logs are
# masked a line at a time, so a secret printed without its last line break
# reaches the masking in pieces; shorter lines (`{`, `}` of a JSON key file)
# would mask too much else.
SECRET_LINE_MIN = 4


def spellings(value: str) -> Set[str]:
    """The ways `value` may be written out: itself, inside a repr or ascii() of a str or of its
    UTF-8 bytes, inside JSON (with and without ensure_ascii), shell-quoted; and each line of a
    multi-line value on its own (SECRET_LINE_MIN)."""
    out = {value, repr(value)[1:-1], ascii(value)[1:-1], json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1], shlex.quote(value)}
    try:
        out.add(repr(value.encode("utf-8", "surrogateescape"))[2:-1])
    except UnicodeEncodeError:
        pass
    if "\n" in value or "\r" in value:
        out.update(line for line in value.replace("\r", "\n").split("\n") if len(line.strip()) >= SECRET_LINE_MIN)
    out.discard("")
    return out


class Secrets:
    """The secret values read so far, and the masking of text that may hold them.

    Also what the runner needs to keep secrets out of the tasks that do not use
    them: the environment variables `secret()` read (`names`), the ones each
    param's default read (`params`), and the params whose secret value came
    from `--param` (`given`: the journal keeps no such value).
    """

    def __init__(self) -> None:
        self.values: Set[str] = set()
        self.names: Set[str] = set()
        self.params: Dict[str, FrozenSet[str]] = {}
        self.given: Set[str] = set()
        self._spelled: Optional[Tuple[str, ...]] = ()

    def add(self, value: str, name: Optional[str] = None) -> None:
        if name:
            self.names.add(name)
        if value and value not in self.values:
            self.values.add(value)
            self._spelled = None

    def add_data(self, value: Any) -> None:
        """Every string inside a value (a secret param's list or map) is a secret."""
        if isinstance(value, str):
            self.add(value)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self.add_data(v)
        elif isinstance(value, dict):
            for v in value.values():
                self.add_data(v)

    def spellings(self) -> Tuple[str, ...]:
        """Every spelling of every secret, longest first: what masking looks for."""
        if self._spelled is None:
            found: Set[str] = set()
            for v in self.values:
                found |= spellings(v)
            self._spelled = tuple(sorted(found, key=len, reverse=True))
        return self._spelled

    def holds(self, text: str) -> bool:
        """True if a secret is part of `text`, in any of its spellings (inside a list's JSON, say)."""
        return bool(self.values) and any(v in text for v in self.spellings())

    def mask(self, text: str) -> str:
        if not self.values:
            return text
        for value in self.spellings():
            if value in text:
                text = text.replace(value, "***")
        return text

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
    used: Optional[Set[str]] = None  # when set: collects the variables of the secrets these expressions use
    value: Optional[Tuple[str, Any]] = None  # `foreach key, value in MAP`: (the value's name, this item's value)


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
    if isinstance(expr, ir.Compare):
        return compare(expr, evaluate(expr.left, scope), evaluate(expr.right, scope))
    if isinstance(expr, ir.BoolOp):  # short-circuit, as Python's; the result is a boolean
        if expr.op == "and":
            return all(truth(evaluate(item, scope)) for item in expr.items)
        return any(truth(evaluate(item, scope)) for item in expr.items)
    if isinstance(expr, ir.Not):
        return not truth(evaluate(expr.operand, scope))
    raise EvalError(f"cannot evaluate {type(expr).__name__}")


def truth(value: Any) -> bool:
    """A bare value tested as Python does: an empty list, "", 0 and null are false."""
    try:
        return bool(value)
    except Exception as e:  # an object whose __bool__ raises (a pickled result)
        raise EvalError(f"cannot tell whether {_kind(value)} is true: {e}") from None


_NUMBERS = (int, float)


def _comparable_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _NUMBERS):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    return type(value).__name__


def compare(node: ir.Compare, left: Any, right: Any) -> bool:
    """`==` and `!=` between different kinds (other than int with float) are false and true;
    ordering them is an error (language reference, section 7)."""
    op = node.op
    if op in ("in", "not in"):
        if isinstance(right, str) and not isinstance(left, str):
            raise EvalError(f"`{op}` a string needs a string on its left, not {_kind(left)}", node.span)
        if not isinstance(right, (str, list, tuple, dict, set, frozenset)):
            raise EvalError(f"`{op}` needs a list, a map or a string on its right, not {_kind(right)}", node.span)
        try:
            found = left in right
        except TypeError as e:
            raise EvalError(f"`{op}`: {e}", node.span) from None
        return found if op == "in" else not found
    same = _comparable_kind(left) == _comparable_kind(right)
    if op == "==":
        return same and left == right
    if op == "!=":
        return not same or left != right
    if not same:
        raise EvalError(f"`{op}` cannot order {_kind(left)} and {_kind(right)}", node.span)
    try:
        if op == "<":
            ordered: bool = left < right
        elif op == "<=":
            ordered = left <= right
        elif op == ">":
            ordered = left > right
        else:
            ordered = left >= right
    except TypeError as e:
        raise EvalError(f"`{op}`: {e}", node.span) from None
    return ordered


class MissingSecret(EvalError):
    """A `secret()` found nowhere it is looked for: for a run not yet started, a usage error (exit 2)."""


def secret_places(name: str, environ: Mapping[str, str]) -> List[str]:
    """Where `secret(name)` looks, in order: the variable, then systemd's and Docker's credential files."""
    places = [f"the environment variable {name}"]
    if environ.get("CREDENTIALS_DIRECTORY"):
        places.append(os.path.join(environ["CREDENTIALS_DIRECTORY"], name))
    places.append(os.path.join(SECRETS_FOLDER, name))
    return places


SECRETS_FOLDER = "/run/secrets"  # Docker's and Kubernetes' mounted secrets


def secret_file(name: str, environ: Mapping[str, str]) -> Optional[str]:
    """The secret from $CREDENTIALS_DIRECTORY/name (systemd LoadCredential=), else /run/secrets/name;
    a file's content without its final newline. None when neither is a readable regular file."""
    if "/" in name or name in (".", ".."):
        return None
    folders = [environ["CREDENTIALS_DIRECTORY"]] if environ.get("CREDENTIALS_DIRECTORY") else []
    for folder in folders + [SECRETS_FOLDER]:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            continue
        finally:
            os.close(fd)
        text = data.decode("utf-8", "surrogateescape")
        return text[:-1] if text.endswith("\n") else text
    return None


def read_env_file(path: str, what: str = "--env-file") -> Dict[str, str]:
    """`KEY=value` lines (blank lines, `#` comments and a leading `export` allowed; a value may be quoted).

    Raises UsageError naming the file and line of a line that is none of these (or the file unreadable).
    """
    import re

    from .diagnostics import UsageError

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {path}: {getattr(e, 'strerror', None) or e}") from None
    found = {}
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        m = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", text)
        if m is None:
            raise UsageError(f"{path}:{n}: expected KEY=value, not `{text[:40]}`")
        key, value = m.group(1), m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()  # a comment after an unquoted value
        found[key] = value
    return found


def read_env(call: ir.EnvCall, scope: Scope) -> Any:
    value = scope.environ.get(call.name)
    if value is None and call.secret:
        value = secret_file(call.name, scope.environ)
    if value is None:
        if call.default is not None:
            return evaluate(call.default, scope)
        if call.secret:
            raise MissingSecret(f"secret `{call.name}` is not set: looked in "
                                + ", ".join(secret_places(call.name, scope.environ)), call.span)
        raise EvalError(f"environment variable `{call.name}` is not set", call.span)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # bytes that are not UTF-8 (os.environ decodes them with surrogateescape)
        kind = "secret" if call.secret else "environment variable"
        raise EvalError(f"{kind} `{call.name}` is not valid UTF-8 (at character {e.start + 1}); "
                        "set it to UTF-8 text", call.span) from None
    if call.secret:
        scope.secrets.add(value, call.name)
        if scope.used is not None:
            scope.used.add(call.name)
    return value


def secret_names(*exprs: Any) -> Set[str]:
    """The variables that the `secret()` calls inside the expressions read."""
    found: Set[str] = set()
    stack = list(exprs)
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is ir.MapExpr:
            stack.extend([e.value for e in node.entries])
        elif kind is ir.ListExpr:
            stack.extend(node.items)
        elif kind is ir.EnvCall:
            if node.secret:
                found.add(node.name)
            stack.append(node.default)
    return found


def resolve(ref: ir.Ref, scope: Scope) -> Any:
    if scope.item is not None and ref.name == scope.item[0]:
        value, where = scope.item[1], ref.name
    elif scope.value is not None and ref.name == scope.value[0]:
        value, where = scope.value[1], ref.name
    elif ref.name == "params":
        value, where = scope.params, "params"
        if scope.used is not None and scope.secrets.params:  # a param's secret is used where the param is
            for key in ref.path[:1] or scope.secrets.params:
                scope.used.update(scope.secrets.params.get(key, ()))  # type: ignore[arg-type]  # params[0] finds none
    elif ref.name == "run":
        value, where = scope.run, "run"
    elif ref.name in scope.results:
        value, where = scope.results[ref.name], ref.name
    else:
        raise EvalError(f"`{ref}`: no result for `{ref.name}`", ref.span)
    for part in ref.path:
        value, where = _step(value, part, where, ref)
    return value


def _step(value: Any, part: Union[str, int], where: str, ref: ir.Ref) -> Tuple[Any, str]:
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


def kind_of(value: Any) -> str:
    """A value's kind in words: "a string", "a map", ..."""
    return _kind(value)


def _kind(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
             tuple: "a list", type(None): "null", dict: "a map"}
    return names.get(type(value), f"a {type(value).__name__}")


def as_text(value: Any, fmt: Optional[str] = None) -> str:
    """A value as it appears inside a string: str as is, dates ISO, the rest JSON."""
    if fmt:
        try:
            if isinstance(value, (dt.datetime, dt.date, dt.time)):
                return value.strftime(fmt)
            return format(value, fmt)
        except (TypeError, ValueError, OverflowError) as e:
            raise EvalError(f"format `{fmt}` does not apply to {_kind(value)}: {e}") from None
    if isinstance(value, str):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bool, type(None), list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def render(t: ir.Template, scope: Scope) -> str:
    """The string with every field filled in."""
    out = []
    for part in t.parts:
        if isinstance(part, str):
            out.append(part)
        else:
            out.append(field_text(part, scope))
    return "".join(out)


def field_text(part: ir.Field, scope: Scope) -> str:
    """An interpolated field's text; a format that does not apply names the field and the value's kind."""
    value = resolve(part.ref, scope)
    try:
        return as_text(value, part.format)
    except EvalError as e:
        hint = "; run.logical_date is a date, run.date its text" if "%" in (part.format or "") else ""
        raise EvalError(f"`{{{part.ref}:{part.format}}}`: {e}{hint}", part.span) from None


def shell_command(t: ir.Template, scope: Scope) -> Tuple[str, Dict[str, str]]:
    """A `sh` command: each field quoted for where it stands in the command (lang.shellquote).

    A field that holds a secret refers to an environment variable instead,
    returned with its value for the command's environment alone. Raises
    EvalError for a field that no quoting can keep literal where it stands.
    """
    parts: List[Union[str, shellquote.Value]] = []
    for part in t.parts:
        if isinstance(part, str):
            parts.append(part)
            continue
        text = field_text(part, scope)
        parts.append(shellquote.Value(text, scope.secrets.holds(text), part.ref))  # the ref names it in messages
    try:
        return shellquote.compose(parts)
    except shellquote.PlacementError as e:
        raise EvalError(f"sh: {e}", t.span) from None
