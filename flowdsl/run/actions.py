"""From a ready task to an Attempt: its expressions evaluated in the run's scope.

The run machine decides *when* an instance starts; this module makes *what*
starts: the `with` map, the command or argv rendered, the environment, the
log path. It also reads the results expressions look into (`LazyResults`,
decoded on first use) and masks secrets out of what comes back. Evaluation
reads the environment and secret files, nothing else: no clock, no journal,
no process, so the machine's tests use it as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Dict, Optional

from ..lang import values
from ..lang.execplan import Action, ExecPlan, HookSpec, TaskSpec
from ..lang.values import EvalError, Scope, Secrets, evaluate
from ..store import codec, state
from .worker import Attempt


class LazyResults(Mapping):
    """Finished tasks' results, decoded from the journal's bytes on first use.

    Most results are never referenced (`after` edges carry none), so most are
    never decoded.
    """

    def __init__(self, run_state: state.RunState, allow_pickle: bool) -> None:
        self.state = run_state
        self.allow_pickle = allow_pickle
        self.names: set = set()
        self.cache: Dict[str, Any] = {}

    def publish(self, name: str) -> None:
        self.names.add(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Any:
        if name not in self.names:
            raise KeyError(name)
        if name not in self.cache:
            self.cache[name] = self.state.result(name, self.allow_pickle)
        return self.cache[name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


class Maker:
    """Makes the attempts of one run: tasks' and hooks'."""

    def __init__(self, plan: ExecPlan, run_state: state.RunState, run_values: Dict[str, Any],
                 params: Dict[str, Any], secrets: Secrets, run_folder: str) -> None:
        self.plan = plan
        self.run_values = run_values
        self.params = params
        self.secrets = secrets
        self.run_folder = run_folder
        self.results = LazyResults(run_state, plan.results == "pickle")
        self.env = {"FLOW_RUN_ID": run_values["id"], "FLOW_PIPELINE": plan.pipeline,
                    "FLOW_LOGICAL_DATE": run_values["logical_date"].isoformat()}

    def scope(self, spec: Optional[TaskSpec] = None, item: Any = None, has_item: bool = False) -> Scope:
        pair = (spec.foreach_var, item) if has_item and spec is not None else None
        return Scope(self.params, self.run_values, self.results, pair, self.secrets)

    def foreach_items(self, spec: TaskSpec) -> list:
        """The items a foreach task has one instance for. Raises EvalError."""
        items = evaluate(spec.foreach_items, self.scope())
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise EvalError(f"`foreach {spec.foreach_var} in ...` needs a list, got {type(items).__name__}")
        return list(items)

    def task(self, spec: TaskSpec, key: str, number: int, item: Any = None, has_item: bool = False) -> Attempt:
        """Attempt `number` of instance `key`. Raises EvalError (a missing key, an unset variable...)."""
        scope = self.scope(spec, item, has_item)
        kwargs = evaluate(spec.args, scope) if spec.args is not None else {}
        env = dict(self.env, FLOW_TASK=key)
        common = dict(key=key, number=number, cwd=self.plan.folder, sys_path=self.plan.sys_path,
                      log_path=state.log_path(self.run_folder, key, number), timeout=spec.timeout,
                      output=spec.output, results=self.plan.results)
        action = spec.action
        if action.kind == "run":
            return Attempt(kind="run", target=action.target, kwargs=kwargs, env=env,
                           secrets=tuple(self.secrets.values), **common)
        for k, v in kwargs.items():
            env["FLOW_ARG_" + k.upper()] = v if isinstance(v, str) else values.as_text(v)
        return self._shell(action, scope, env, common)

    def hook(self, hook: HookSpec, number: int, report: Dict[str, Any], status: str,
             timeout: Optional[float]) -> Attempt:
        """A hook's attempt: a callable gets the report; a command FLOW_STATUS. Raises EvalError."""
        env = dict(self.env, FLOW_STATUS=status)
        common = dict(key=hook.key, number=number, cwd=self.plan.folder, sys_path=self.plan.sys_path,
                      log_path=state.log_path(self.run_folder, hook.key, number), results="pickle",
                      timeout=timeout)
        if hook.action.kind == "run":
            return Attempt(kind="run", target=hook.action.target, args=(report,), env=env,
                           secrets=tuple(self.secrets.values), **common)
        return self._shell(hook.action, self.scope(), env, common)

    def _shell(self, action: Action, scope: Scope, env: Dict[str, str], common: Dict[str, Any]) -> Attempt:
        if action.kind == "sh":
            command = values.render(action.command, scope, quote=True)
            return Attempt(kind="sh", target=command, env=env, secrets=tuple(self.secrets.values), **common)
        argv = evaluate(action.argv, scope)
        if not isinstance(argv, (list, tuple)) or not argv:
            raise EvalError("`exec` needs a non-empty list of arguments")
        return Attempt(kind="exec", argv=as_argv(argv), env=env, secrets=tuple(self.secrets.values), **common)

    def masked(self, data: Optional[bytes]) -> Optional[bytes]:
        """A result with every secret it holds masked: the journal never keeps one."""
        secrets = self.secrets
        if not data or not any(v.encode() in data for v in secrets.values):
            return data
        value = codec.decode_result(data, allow_pickle=True)
        masked = codec.encode_result(_plain_masking(value, secrets), self.plan.results)
        if any(v.encode() in masked for v in secrets.values):
            # inside an object masking cannot reach: keep only a masked description
            masked = codec.encode_result(secrets.mask(repr(value))[:200], self.plan.results)
        return masked


def evaluate_params(plan: ExecPlan, overrides: Dict[str, Any], run_values: Dict[str, Any],
                    secrets: Secrets) -> Dict[str, Any]:
    """The run's params: each `--param` as given, else its default evaluated. Raises EvalError."""
    scope = Scope(params={}, run=run_values, secrets=secrets)
    return {key: overrides[key] if key in overrides else evaluate(expr, scope) for key, expr in plan.params}


def as_argv(argv) -> tuple:
    """`exec`'s arguments as strings: strings as they are, other values as in interpolation."""
    return tuple(a if isinstance(a, str) else values.as_text(a) for a in argv)


def _plain_masking(value: Any, secrets: Secrets) -> Any:
    """Containers rebuilt so that masking reaches every string inside them."""
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, bytes):
        return secrets.mask(value.decode("utf-8", "replace")).encode()
    if isinstance(value, dict):
        return {_plain_masking(k, secrets): _plain_masking(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return type(value)(_plain_masking(v, secrets) for v in value)
    return value


def plain(value: Any) -> Any:
    """Params as msgpack-able data for the journal's run record."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return repr(value)


def pack_params(params: Dict[str, Any]) -> bytes:
    """--param overrides as the journal keeps them for a resume: as typed, or as plain data."""
    try:
        return codec.pack(params)
    except codec.ResultTypeError:
        return codec.pack(plain(params))
