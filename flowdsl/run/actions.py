"""From a ready task to an Attempt: its expressions evaluated in the run's scope.

The run machine decides *when* an instance starts; this module makes *what*
starts: the `with` map, the command or argv rendered, the environment, the
log path. It also reads the results expressions look into (`LazyResults`,
decoded on first use) and masks secrets out of what comes back. Evaluation
reads the environment and secret files, nothing else: no clock, no journal,
no process, so the machine's tests use it as it is.

Secrets stay with the tasks that use them: a `sh` command refers to a
secret through an environment variable of its own process (never in its
text, which `ps` shows), `exec` refuses one in its argv, and every attempt
is told which secrets' source variables to drop from its environment: those
its expressions do not use and its command or module does not name.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Any, Dict, Optional, Set, Tuple

from ..lang import ir, values
from ..lang.execplan import Action, ExecPlan, HookSpec, TaskSpec
from ..lang.values import EvalError, Scope, Secrets, evaluate
from ..store import codec, state
from .worker import Attempt

# How a task names an environment variable (the same reading as run.dask's, which ships a remote attempt
# the variables it names): `$X` or `${X}` in a command, os.environ["X"] and the like in a module.
_SHELL_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
_PYTHON_NAME = re.compile(r"""(?:environ\s*\[\s*|environ\.get\(\s*|getenv\(\s*|environ\.setdefault\(\s*)"""
                          r"""["']([A-Za-z_][A-Za-z0-9_]*)["']""")


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

    def stored(self, name: str) -> Any:
        """The result as stored, for a task that takes it whole: its bytes (`codec.Stored`; a list of them for
        a foreach task), decoded where that task runs; the value itself where the runner decoded it already."""
        if name in self.cache:
            return self.cache[name]
        keys = self.state.instances.get(name)
        if keys is None:
            data = self.state.tasks[name].result
            return None if data is None else codec.Stored(data)
        results = [self.state.tasks[k].result for k in keys]
        return codec.Built([None if data is None else codec.Stored(data) for data in results])

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
        self.secret_sources = _secret_sources(plan)
        self.module_names: Dict[str, Set[str]] = {}  # module -> the environment variables its source names
        self.child_names: Dict[str, str] = {}  # a called .flow file -> its pipeline's name
        self.environ: Mapping[str, str] = os.environ  # what env() and secret() read (with the env_file's lines)

    def use_env_file(self, environ: Mapping[str, str], lines: Dict[str, str]) -> None:
        """`env_file`: env() and secret() read `environ` (the process's environment over the file's lines);
        attempts get the file's variables the environment lacks, but never a secret's source."""
        self.environ = environ
        self.env.update({k: v for k, v in lines.items() if k not in os.environ and k not in self.secret_sources})

    def hidden(self, used: Set[str], kind: str, text: str) -> Tuple[str, ...]:
        """The secrets' source variables an attempt must not see: all but those it uses or names.

        `used`: read by the secret() calls its expressions use (params included).
        Named: `$X` or `${X}` in a command's own text (`text`) or in an argv,
        `os.environ["X"]`, `.get("X")` or `getenv("X")` in a callable's module
        (`text`: the module), as the dask executor decides what a task sees.
        """
        sources = self.secret_sources | self.secrets.names
        if not sources:
            return ()
        hide = sources - used
        if hide:
            hide -= self._module_names(text) if kind == "run" else set(_SHELL_NAME.findall(text))
        return tuple(sorted(hide))

    def _module_names(self, module: str) -> Set[str]:
        """The environment variables a module's source names (read, never imported), once per run."""
        names = self.module_names.get(module)
        if names is None:
            names = set()
            parts = module.split(".")
            for base in self.plan.sys_path:
                for path in (os.path.join(base, *parts) + ".py", os.path.join(base, *parts, "__init__.py")):
                    try:
                        with open(path, encoding="utf-8", errors="replace") as f:
                            names = set(_PYTHON_NAME.findall(f.read()))
                        break
                    except OSError:
                        continue
                else:
                    continue
                break
            self.module_names[module] = names
        return names

    def scope(self, spec: Optional[TaskSpec] = None, item: Any = None, has_item: bool = False) -> Scope:
        if not has_item or spec is None:
            return Scope(self.params, self.run_values, self.results, None, self.secrets, self.environ)
        if spec.foreach_value is not None:  # `foreach key, value in MAP`: the item is the pair
            return Scope(self.params, self.run_values, self.results, (spec.foreach_var, item[0]), self.secrets,
                         self.environ, value=(spec.foreach_value, item[1]))
        return Scope(self.params, self.run_values, self.results, (spec.foreach_var, item), self.secrets, self.environ)

    def foreach_items(self, spec: TaskSpec) -> list:
        """The items a foreach task has one instance for ([key, value] pairs over a map). Raises EvalError."""
        items = evaluate(spec.foreach_items, self.scope())
        if spec.foreach_value is not None:
            if not isinstance(items, Mapping):
                raise EvalError(f"`foreach {spec.foreach_var}, {spec.foreach_value} in ...` needs a map, "
                                f"got {values.kind_of(items)}")
            return [[k, v] for k, v in items.items()]
        if isinstance(items, Mapping):
            raise EvalError(f"`foreach {spec.foreach_var} in ...` got a map: write "
                            f"`foreach key, value in ...` to iterate its items")
        if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
            raise EvalError(f"`foreach {spec.foreach_var} in ...` needs a list, got {values.kind_of(items)}")
        return list(items)

    def condition(self, spec: TaskSpec, item: Any = None, has_item: bool = False) -> bool:
        """Whether a task's `if` holds (for one instance, with its item in scope). Raises EvalError."""
        return values.truth(evaluate(spec.condition, self.scope(spec, item, has_item)))

    def task(self, spec: TaskSpec, key: str, number: int, item: Any = None, has_item: bool = False,
             child: Optional[str] = None) -> Attempt:
        """Attempt `number` of instance `key`. Raises EvalError (a missing key, an unset variable...).

        `child`: a `call` task's child run from an earlier session, which this attempt resumes.
        """
        scope = self.scope(spec, item, has_item)
        scope.used = set()
        action = spec.action
        passes = action.kind == "run" or (action.kind == "wait" and action.wait == "run")  # values, not text
        kwargs = (passed(spec.args, scope) if passes else evaluate(spec.args, scope)) if spec.args is not None else {}
        env = dict(self.env, FLOW_TASK=key)
        common = dict(key=key, number=number, cwd=self.plan.folder, sys_path=self.plan.sys_path,
                      log_path=state.log_path(self.run_folder, key, number), timeout=spec.timeout,
                      output=spec.output, results=self.plan.results)
        if passes:
            hide = self.hidden(scope.used, "run", action.target.split(":", 1)[0])
            return Attempt(kind="run", target=action.target, kwargs=kwargs, env=env, sensor=action.kind == "wait",
                           secrets=self.secrets.spellings(), hide=hide, **common)
        if action.kind == "wait" and action.wait == "file":
            return Attempt(kind="glob", target=values.render(action.command, scope), env=env, sensor=True,
                           secrets=self.secrets.spellings(), **common)
        if action.kind == "call":
            return self._call(action, key, kwargs, child, env, common)
        for k, v in kwargs.items():
            env["FLOW_ARG_" + k.upper()] = v if isinstance(v, str) else values.as_text(v)
        return self._shell(action, scope, env, common)

    def hook(self, hook: HookSpec, number: int, report: Dict[str, Any], status: str,
             timeout: Optional[float]) -> Attempt:
        """A hook's attempt: a callable gets the report; a command FLOW_STATUS, FLOW_FAILED_TASKS (the failed
        tasks' names) and FLOW_REPORT (the report's path, written as the hooks began). Raises EvalError."""
        failed = [k for k, t in report.get("tasks", {}).items() if t.get("status") == "failed" and "[" not in k]
        env = dict(self.env, FLOW_STATUS=status, FLOW_FAILED_TASKS=" ".join(failed),
                   FLOW_REPORT=os.path.join(self.run_folder, "report.json"))
        common = dict(key=hook.key, number=number, cwd=self.plan.folder, sys_path=self.plan.sys_path,
                      log_path=state.log_path(self.run_folder, hook.key, number), results="pickle",
                      timeout=timeout)
        if hook.action.kind == "run":
            hide = self.hidden(set(), "run", hook.action.target.split(":", 1)[0])
            return Attempt(kind="run", target=hook.action.target, args=(report,), env=env,
                           secrets=self.secrets.spellings(), hide=hide, **common)
        if hook.action.kind == "post":  # the report without results, as `flow run --json` has it, secrets masked
            import json

            body = dict(report, tasks={k: {f: v for f, v in t.items() if f != "result"}
                                       for k, t in report.get("tasks", {}).items()})
            url = values.render(hook.action.url, self.scope())
            text = self.secrets.mask(json.dumps(body, default=str))
            return Attempt(kind="post", target=url, args=(text,), secrets=self.secrets.spellings(), **common)
        scope = self.scope()
        scope.used = set()
        return self._shell(hook.action, scope, env, common)

    def _call(self, action: Action, key: str, params: Dict[str, Any], child: Optional[str],
              env: Dict[str, str], common: Dict[str, Any]) -> Attempt:
        """A `call`: `flow run` of the child pipeline in this state folder, as the run `child` (a resume of it
        when an earlier session started it). Its params travel in its environment, never in its argv."""
        import json

        from .launcher import flow_command

        if child is None or not state.is_run_id(child):
            child = state.new_run_id(self.child_pipeline(action.target), dt.datetime.now(dt.timezone.utc))
        state_root = os.path.dirname(os.path.dirname(self.run_folder))
        prefix = flow_command()
        while prefix and "=" in prefix[0]:  # `PYTHONPATH=...` for a checkout: given in the environment instead
            name, _, value = prefix.pop(0).partition("=")
            env[name] = value
        argv = tuple(prefix) + ("run", action.target, "--state-dir", state_root, "--json", "--call-run", child,
                                "--logical-date", self.run_values["logical_date"].isoformat())
        try:
            env[CALL_PARAMS] = json.dumps(params, default=values.as_text)
        except ValueError as e:
            raise EvalError(f"`{key}`: the params of `call` cannot be passed on: {e}") from None
        return Attempt(kind="call", target=action.target, argv=argv, kwargs=params, env=env,
                       secrets=self.secrets.spellings(), child=child, **common)

    def child_pipeline(self, path: str) -> str:
        """The name of the pipeline a `.flow` file declares (its stem without a pipeline block)."""
        from ..lang.loader import Loader

        name = self.child_names.get(path)
        if name is None:
            loaded = Loader().load(path)
            if loaded.program is None:
                raise EvalError(f"`call`: {path} cannot be read: "
                                + "; ".join(str(d) for d in loaded.diagnostics[:1]))
            name = self.child_names[path] = loaded.program.pipeline.name
        return name

    def _shell(self, action: Action, scope: Scope, env: Dict[str, str], common: Dict[str, Any]) -> Attempt:
        if action.kind in ("sh", "wait"):
            command, secret_env = values.shell_command(action.command, scope)
            env.update(secret_env)  # a secret travels in the command's environment, never in its text
            own_text = "".join(p for p in action.command.parts if type(p) is str)  # not the values in it
            return Attempt(kind="sh", target=command, env=env, secrets=self.secrets.spellings(),
                           hide=self.hidden(scope.used, "sh", own_text), shell=action.shell,
                           sensor=action.kind == "wait", **common)
        argv = evaluate(action.argv, scope)
        if not isinstance(argv, (list, tuple)) or not argv:
            raise EvalError("`exec` needs a non-empty list of arguments")
        argv = as_argv(argv)
        if any(self.secrets.holds(a) for a in argv):
            raise EvalError(f"`{common['key']}`: `exec` would put a secret in the program's arguments, which any "
                            "user of the machine can read (`ps`); pass it in the environment with "
                            "`with { key = secret(\"NAME\") }` (the program reads FLOW_ARG_KEY), or use `sh`, "
                            "which does that for a secret in its command")
        return Attempt(kind="exec", argv=argv, env=env, secrets=self.secrets.spellings(),
                       hide=self.hidden(scope.used, "exec", " ".join(argv)), **common)

    def masked(self, data: Optional[bytes]) -> Optional[bytes]:
        """A result with every secret it holds masked: the journal never keeps one."""
        secrets = self.secrets
        if not data or not secrets.values:
            return data
        spelled = [_utf8(v) for v in secrets.spellings()]
        if not any(v in data for v in spelled):
            return data
        value = codec.decode_result(data, allow_pickle=True)
        masked = codec.encode_result(_plain_masking(value, secrets), self.plan.results)
        if any(v in masked for v in spelled):
            # inside an object masking cannot reach: keep only a masked description
            masked = codec.encode_result(secrets.mask(repr(value))[:200], self.plan.results)
        return masked


def passed(args: ir.Expr, scope: Scope) -> Dict[str, Any]:
    """A Python task's `with` map: a bare reference to a result (an argument, or in a list or map written
    there) is passed as stored, for the task's worker to decode; everything else is evaluated here."""
    if not isinstance(args, ir.MapExpr):
        return evaluate(args, scope)
    return {e.key: _passed(e.value, scope) for e in args.entries}


def _passed(expr: ir.Expr, scope: Scope) -> Any:
    if isinstance(expr, ir.Ref) and not expr.path and isinstance(scope.results, LazyResults) \
            and expr.name in scope.results and not (scope.item is not None and scope.item[0] == expr.name) \
            and not (scope.value is not None and scope.value[0] == expr.name):
        return scope.results.stored(expr.name)
    if isinstance(expr, ir.ListExpr):
        items = [_passed(item, scope) for item in expr.items]
        return codec.Built(items) if any(map(codec.deferred, items)) else items
    if isinstance(expr, ir.MapExpr):
        entries = {e.key: _passed(e.value, scope) for e in expr.entries}
        return codec.Built(entries) if any(map(codec.deferred, entries.values())) else entries
    return evaluate(expr, scope)


CALL_PARAMS = "FLOW_CALL_PARAMS"  # a called run's params, as JSON, in its environment (never in `ps`)
SECRET_GIVEN = "\0a secret --param, not kept\0"  # the journal's stand-in (no argv can hold a NUL)


def evaluate_params(plan: ExecPlan, overrides: Dict[str, Any], run_values: Dict[str, Any],
                    secrets: Secrets, environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The run's params: each `--param` as given, else its default evaluated. Raises EvalError.

    A value given for a param whose default reads a `secret()` is itself a
    secret (taken as text when the default is a bare `secret()`). `secrets`
    learns which source variables each default read, so that a task using a
    param keeps that variable in its environment.
    """
    scope = Scope(params={}, run=run_values, secrets=secrets, environ=os.environ if environ is None else environ)
    params = {}
    for key, expr in plan.params:
        if key not in overrides:
            scope.used = set()
            params[key] = evaluate(expr, scope)
            secrets.params[key] = frozenset(scope.used)
            continue
        value = overrides[key]
        if value == SECRET_GIVEN:
            raise EvalError(f"`--param {key}` was given a secret when the run started, and flow does not keep "
                            f"secrets: give it again when resuming (`--param {key}=...`)")
        if values.secret_names(expr):
            if isinstance(expr, ir.EnvCall) and not isinstance(value, str):
                value = values.as_text(value)  # a secret is text (`--param token=123` is "123")
            secrets.add_data(value)
            secrets.given.add(key)
        params[key] = value
    return params


def as_argv(argv) -> tuple:
    """`exec`'s arguments as strings: strings as they are, other values as in interpolation."""
    return tuple(a if isinstance(a, str) else values.as_text(a) for a in argv)


def _secret_sources(plan: ExecPlan) -> Set[str]:
    """Every variable a `secret()` of the plan reads: what an attempt's environment loses unless it uses it.

    (A command's template holds references only, never a call.)
    """
    exprs = [expr for _, expr in plan.params]
    for spec in plan.tasks.values():
        exprs += [spec.args, spec.foreach_items, spec.action.argv]
    exprs += [hook.action.argv for hook in plan.hooks]
    return values.secret_names(*exprs)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


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


def pack_params(params: Dict[str, Any], secrets: Optional[Secrets] = None) -> bytes:
    """--param overrides as the journal keeps them for a resume: as typed, or as plain data.

    A secret one is kept as SECRET_GIVEN only: a resume asks for it again.
    """
    if secrets is not None and secrets.given:
        params = {k: SECRET_GIVEN if k in secrets.given else v for k, v in params.items()}
    try:
        return codec.pack(params)
    except codec.ResultTypeError:
        return codec.pack(plain(params))
