"""The validator: every check of the language reference's section 6.

`validate(program)` walks the IR once per concern and `report`s each problem
into a list; it never stops at the first one and never imports user code.
Codes and their meaning live in diagnostics.CATALOGUE.
"""

from __future__ import annotations

import os
import re

from . import ir, planner
from .diagnostics import Diagnostic, did_you_mean
from .ir import RESERVED, RUN_VALUES, Span
from .pysource import SourceIndex, lookup, signature

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

# the kinds of literals, for comparisons that can never hold: an int, a float and a duration compare as numbers
_KIND_WORDS = {"boolean": "a boolean", "integer": "a number", "float": "a number", "duration": "a number",
               "string": "a string", "list": "a list", "map": "a map", "any": "null"}

# field name, size of its range, first value: for the step warning (W104)
CRON_FIELDS = (("minute", 60, 0), ("hour", 24, 0), ("day-of-month", 31, 1), ("month", 12, 1), ("day-of-week", 7, 0))


class Validator:
    def __init__(self, program: ir.Program, targets: Sequence[str] = ()):
        self.program = program
        self.pipeline = program.pipeline
        self.targets = list(targets)
        self.diagnostics: List[Diagnostic] = []
        self.tasks: Dict[str, ir.Task] = {t.name: t for t in program.tasks}
        params = self.pipeline.params
        self.params: Dict[str, ir.Entry] = {e.key: e for e in params.entries} if params else {}
        self.used_params: Set[str] = set()
        base = os.path.dirname(os.path.abspath(program.file))
        dirs = [os.path.normpath(os.path.join(base, p.text)) for p in self.pipeline.pythonpath if p.is_constant]
        self.sources = SourceIndex([base] + dirs)
        self.called: List[str] = []  # the .flow files `call` tasks name, read for their params
        # a called file -> (its program, its errors), checked once
        self.children: Dict[str, Tuple[Optional[ir.Program], List[Diagnostic]]] = {}
        self.calling: Tuple[str, ...] = ()  # the files whose `call`s led here: a cycle is an error

    def report(self, code: str, message: str, span: Span, hint: Optional[str] = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def run(self) -> List[Diagnostic]:
        self.check_pipeline(self.pipeline)
        for task in self.program.tasks:
            self.check_task(task)
        graph = planner.edges(self.program)
        self.check_cycles(graph)
        self.check_targets(graph)
        for task in self.program.tasks:
            when = task.settings.when or self.pipeline.defaults.when
            if when is not None and when.value == "failure" and not graph[task.name]:
                self.report("W103", f"`when failure` on `{task.name}`, which has no upstream, means it never runs",
                            when.span if task.settings.when else task.name_span,
                            "give it `after` the tasks whose failure it handles")
        for key, entry in self.params.items():
            if key not in self.used_params and key not in RESERVED:
                self.report("W101", f"param `{key}` is never used", entry.key_span,
                            "refer to it as params." + key + " or remove it")
        return self.diagnostics  # in the order found: check() sorts them with the loader's

    # ---- pipeline ------------------------------------------------------------

    def check_pipeline(self, p: ir.PipelineDecl) -> None:
        for s in p.schedules:
            self.check_schedule(s)
        if p.window is not None:
            self.check_window(p.window)
        if p.concurrency is not None:
            self.whole_number(p.concurrency, "concurrency", minimum=1)
        if p.timeout is not None:
            self.duration(p.timeout, "the run's timeout", positive=True)
        for path in p.pythonpath:
            self.constant(path, "a pythonpath entry")
        if p.description is not None:
            self.constant(p.description, "a description")
        if p.executor is not None and p.executor.address is not None:
            self.dask_address(p.executor.address)
        if p.shell is not None:
            self.check_shell(p.shell)
        if p.env_file is not None:
            self.constant(p.env_file, "an env_file path")
        for path in p.ship:
            self.check_shipped(path)
        if p.params is not None:
            for entry in p.params.entries:
                if entry.key in RESERVED:
                    self.report("E204", f"`{entry.key}` is reserved and cannot name a param", entry.key_span)
                for ref in planner.iter_refs(entry.value):
                    if ref.name == "run":
                        self.check_run_ref(ref)
                    else:
                        self.report("E212", f"a param's default cannot refer to `{ref}`", ref.span,
                                    "param defaults may use literals, run values, env() and secret()")
        self.check_settings(p.defaults, None)
        for hook in p.hooks:
            self.check_hook(hook)

    def check_schedule(self, s: ir.Schedule) -> None:
        if s.kind == "cron":
            text = self.constant(s.expr, "a cron expression")
            if text is not None:
                self.check_cron(text, s.expr.span)
            if s.option is not None:
                self.time_zone(s.option)
        elif s.kind == "every":
            self.duration(s.expr, "a schedule interval", positive=True)
            if isinstance(s.expr, ir.Duration) and 0 < s.expr.seconds < 60:
                # a tick runs once a minute; a faster schedule would pile up slots no tick can fire
                self.report("E102", f"a schedule interval must be at least 1m, not {s.expr.text}: "
                                    f"`flow tick` runs once a minute", s.expr.span)
            if s.option is not None:
                self.iso(s.option)
        else:
            self.iso(s.expr)

    def check_cron(self, text: str, span: Span) -> None:
        from . import cronexpr

        why = cronexpr.problem(text)
        if why:
            self.report("E103", f"invalid cron expression `{text}`: {why}", span,
                        "minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6; e.g. \"*/15 9-17 * * 1-5\"")
            return
        fields = cronexpr.expand(text).split()
        for value, (name, size, first) in zip(fields, CRON_FIELDS):
            for part in value.split(","):
                m = re.fullmatch(r"\*/(\d+)", part)
                if not m or name == "day-of-month":  # months differ in length anyway
                    continue
                step = int(m.group(1))
                if step and size % step:
                    last = first + (size - 1) // step * step
                    self.report("W104", f"`{part}` in the {name} field does not mean every {step}", span,
                                f"it fires at {first}, {first + step}, ... {last}, then {first} again: "
                                f"a gap of {size - (last - first)} across the wrap")

    def check_window(self, w: ir.Window) -> None:
        start = self.iso(w.start)
        end = self.iso(w.end) if w.end is not None else None
        if start is not None and end is not None and end <= start:
            self.report("E107", "the window ends before it starts", w.span)

    def check_shipped(self, t: ir.Template) -> None:
        """`ship "PATH"`: a file or folder inside the pipeline's folder, which exists."""
        text = self.constant(t, "a shipped path")
        if text is None:
            return
        base = os.path.dirname(os.path.abspath(self.program.file))
        full = os.path.normpath(os.path.join(base, text))
        if os.path.isabs(text) or full == base or not full.startswith(base + os.sep):
            self.report("E101", f"`ship` takes a path inside the pipeline's folder, not `{text}`", t.span,
                        "a shipped file lands at the same place beside the code on each worker")
        elif not os.path.exists(full):
            self.report("E302", f"shipped path `{text}` not found", t.span, f"looked for {full}")

    def check_hook(self, hook: ir.Hook) -> None:
        action = hook.action
        if isinstance(action, ir.RunAction):
            self.check_callable(action.callable, None, hook=True)
        exprs = planner.action_exprs(action)
        if isinstance(action, ir.PostAction):
            exprs = [action.url]
            head = action.url.parts[0] if action.url.parts else ""
            if not (isinstance(head, str) and head.lower().startswith(("http://", "https://"))):
                self.report("E101", "`post` needs an http:// or https:// address", action.url.span,
                            "e.g. on failure post \"https://hooks.slack.com/services/...\"")
        for expr in exprs:
            if isinstance(action, ir.ExecAction):
                self.check_argv(action.argv)
            for ref in planner.iter_refs(expr):
                if ref.name == "params":
                    self.check_param_ref(ref)
                elif ref.name == "run":
                    self.check_run_ref(ref)
                else:
                    self.report("E212", f"a hook cannot refer to `{ref}`", ref.span,
                                "hooks may use params and run values; a callable hook receives the run report")

    # ---- tasks ---------------------------------------------------------------

    def check_task(self, task: ir.Task) -> None:
        if task.name in RESERVED:
            self.report("E204", f"`{task.name}` is reserved and cannot name a task", task.name_span)
        if task.description is not None:
            self.constant(task.description, "a description")
        in_scope = planner.foreach_names(task)
        if task.foreach is not None:
            self.check_foreach(task.foreach)
        self.after_dollar = _after_dollar([task.args] + planner.action_exprs(task.action))
        for ref, scoped in planner.task_refs(task):
            if scoped and ref.name in in_scope:
                continue
            self.check_ref(ref, task, scoped)
        for expr in [task.args] + planner.action_exprs(task.action):
            self.check_formats(expr)
        if task.condition is not None:
            self.check_condition(task.condition.expr)
        if task.every is not None:
            self.duration(task.every, "the time between checks (`every`)", positive=True)
            if not isinstance(task.action, ir.WaitAction):
                self.report("W103", "`every` has no effect on a task that does not `wait`", task.every.span,
                            "it sets the time between a sensor's checks")
        for name in task.after:
            if name.name not in self.tasks:
                self.report("E201", f"`after` names unknown task `{name.name}`", name.span,
                            did_you_mean(name.name, self.tasks))
        action = task.action
        # a `wait run`'s target is a CallableRef (`wait file`'s and `wait sh`'s are Templates)
        callable_ = action.callable if isinstance(action, ir.RunAction) else \
            action.target if isinstance(action, ir.WaitAction) and isinstance(action.target, ir.CallableRef) else None
        if callable_ is not None:
            self.check_callable(callable_, task.args)
            if task.settings.output is not None:
                kind = "wait run" if isinstance(action, ir.WaitAction) else "run"
                self.report("W103", f"`output` has no effect on a `{kind}` task", task.settings.output.span,
                            "the function's return value is the result")
        elif isinstance(action, ir.ExecAction):
            self.check_argv(action.argv)
        elif isinstance(action, ir.CallAction):
            self.check_call(action, task.args)
        self.check_settings(task.settings, task)

    def check_foreach(self, f: ir.Foreach) -> None:
        for name in (f.var, f.value) if f.value is not None else (f.var,):
            if name.name in RESERVED:
                self.report("E204", f"`{name.name}` is reserved and cannot name a foreach variable", name.span)
            elif name.name in self.tasks:
                self.report("W105", f"foreach variable `{name.name}` hides the task of that name", name.span,
                            "inside this task the name means the item, not the task's result")
        items = self.known(f.items)
        if f.value is None and isinstance(items, ir.MapExpr):
            self.report("E101", "`foreach` over a map needs two names", f.items.span,
                        "foreach key, value in ...  (or iterate a list)")
        elif f.value is not None and isinstance(items, (ir.Literal, ir.Duration, ir.ListExpr, ir.Template)):
            self.report("E101", "`foreach key, value` needs a map", f.items.span,
                        f"a map literal, a param holding a map, or an upstream task's result; "
                        f"for a list write foreach {f.var.name} in ...")
        elif isinstance(items, (ir.Literal, ir.Duration, ir.Template)):
            self.report("E101", "`foreach` needs a list", f.items.span,
                        "a list literal, a param holding a list, or an upstream task's result")

    def known(self, expr: ir.Expr) -> ir.Expr:
        """The literal an expression stands for where validate can see it (a param's default), else itself."""
        if isinstance(expr, ir.Ref) and expr.name == "params" and len(expr.path) == 1:
            entry = self.params.get(expr.path[0]) if isinstance(expr.path[0], str) else None
            if entry is not None and not isinstance(entry.value, (ir.Ref, ir.EnvCall)):
                return entry.value
        return expr

    def check_shell(self, e: ir.Expr) -> None:
        """`shell ["prog", "arg", ...]`: a non-empty list of constant strings."""
        if not isinstance(e, ir.ListExpr):
            self.report("E101", "`shell` takes a list such as [\"bash\", \"-eu\", \"-o\", \"pipefail\", \"-c\"]",
                        e.span, "the command is added as the last argument")
            return
        if not e.items:
            self.report("E102", "`shell` needs at least the program to run", e.span)
        for item in e.items:
            if not (isinstance(item, ir.Template) and item.is_constant):
                self.report("E101", "each `shell` argument is a constant string", item.span)

    def check_condition(self, expr: ir.Expr) -> None:
        """Comparisons between literals that can never hold, and `in` where the right side cannot hold anything."""
        stack: List[ir.Expr] = [expr]
        while stack:
            node = stack.pop()
            if isinstance(node, ir.BoolOp):
                stack.extend(node.items)
            elif isinstance(node, ir.Not):
                stack.append(node.operand)
            elif isinstance(node, ir.Compare):
                left, right = _literal_kind(self.known(node.left)), _literal_kind(self.known(node.right))
                if node.op in ("in", "not in"):
                    if right is not None and right not in ("a list", "a map", "a string"):
                        self.report("E101", f"`{node.op}` needs a list, a map or a string on its right, "
                                    f"not {right}", node.right.span)
                elif left is not None and right is not None and left != right:
                    always = {"==": "false", "!=": "true"}.get(node.op)
                    self.report("E108", f"`{node.op}` compares {left} with {right}", node.span,
                                f"values of different kinds are never equal: this is always {always}" if always
                                else "values of different kinds cannot be ordered: the run would fail here")

    def check_formats(self, expr: Optional[ir.Expr]) -> None:
        """A date format (`{x:%Y}`) on a value validate knows is not a date: run.date, run.id, a text param."""
        for node in planner.iter_templates(expr):
            for part in node.parts:
                if not isinstance(part, ir.Field) or not part.format or not _date_format(part.format):
                    continue
                ref = part.ref
                kind = None
                if ref.name == "run" and ref.path and ref.path[0] in ("date", "id", "pipeline", "trigger"):
                    kind = "a string"
                elif ref.name == "params":
                    known = self.known(ref)
                    if isinstance(known, ir.Template):
                        kind = "a string"
                    elif ref.path and isinstance(ref.path[0], str) and ref.path[0] in self.params:
                        default = self.params[ref.path[0]].value
                        if isinstance(default, ir.Ref) and default.name == "run" and \
                                default.path[:1] != ("logical_date",):
                            kind = "a string"
                if kind is not None:
                    self.report("E101", f"date format `{part.format}` applied to `{ref}`, which is {kind}, not a date",
                                part.span, "run.logical_date is a date; run.date is its YYYY-MM-DD text")

    def check_call(self, action: ir.CallAction, args: Optional[ir.MapExpr]) -> None:
        """`call "other.flow"`: the file exists and checks, `with` fits its params, no call cycle."""
        from .loader import Loader

        if not action.path.is_constant:
            return  # reported by the builder
        base = os.path.dirname(os.path.abspath(self.program.file))
        path = os.path.normpath(os.path.join(base, action.path.text))
        here = os.path.realpath(self.program.file)
        if os.path.realpath(path) in self.calling + (here,):
            chain = " → ".join(os.path.relpath(p) for p in self.calling + (here, os.path.realpath(path)))
            self.report("E303", f"call cycle: {chain}", action.path.span, "a pipeline cannot call itself, "
                        "directly or through the pipelines it calls")
            return
        if not os.path.isfile(path):
            self.report("E302", f"called pipeline `{action.path.text}` not found", action.path.span,
                        f"looked for {path}; the path is relative to this file's folder")
            return
        if path not in self.children:
            self.called.append(path)
            loaded = Loader().load(path)
            child = loaded.program
            errors = [d for d in loaded.diagnostics if d.severity == "error"]
            if child is not None and not errors:
                inner = Validator(child)
                inner.calling = self.calling + (here,)
                errors = sorted((d for d in inner.run() if d.severity == "error"), key=Diagnostic.sort_key)
                self.called.extend(inner.called)
            self.children[path] = (child, errors)
        child, errors = self.children[path]
        cycle = [d for d in errors if d.code == "E303" and d.message.startswith("call cycle")]
        if cycle:
            self.report("E303", cycle[0].message, action.path.span, cycle[0].hint)
            return
        if errors:
            first = errors[0]
            self.report("E302", f"called pipeline `{action.path.text}` has {len(errors)} error"
                        f"{'s' if len(errors) > 1 else ''}", action.path.span,
                        f"first: {first.span}: {first.message}; run `flow validate {action.path.text}`")
            return
        if child is None:
            return
        declared = {e.key: e for e in child.pipeline.params.entries} if child.pipeline.params else {}
        given = {e.key: e for e in args.entries} if args else {}
        for key, entry in given.items():
            if key not in declared:
                self.report("E403", f"`{action.path.text}` has no param `{key}`", entry.key_span,
                            did_you_mean(key, declared) or (
                                "its params: " + ", ".join(declared) if declared else "it declares no params"))
        for key, entry in declared.items():
            if key not in given and isinstance(entry.value, ir.Literal) and entry.value.value is None:
                self.report("E404", f"`{action.path.text}` needs param `{key}` (its default is null)",
                            args.span if args else action.span, f"give it: with {{ {key} = ... }}")


    def check_argv(self, argv: ir.Expr) -> None:
        if isinstance(argv, ir.ListExpr):
            if not argv.items:
                self.report("E102", "`exec` needs at least the program to run", argv.span)
            for item in argv.items:
                if isinstance(item, (ir.ListExpr, ir.MapExpr)):
                    self.report("E101", "each `exec` argument is one value, not a list or a map", item.span)
        elif not isinstance(argv, ir.Ref):
            self.report("E101", "`exec` takes a list such as [\"prog\", \"arg\"]", argv.span,
                        "for a command line with a shell, use `sh \"...\"`")

    def check_settings(self, s: ir.Settings, task: Optional[ir.Task]) -> None:
        if s.shell is not None:
            self.check_shell(s.shell)
        r = s.retry
        if r is not None:
            self.whole_number(r.count, "the retry count", minimum=0)
            if r.delay is not None:
                self.duration(r.delay, "the retry delay", positive=False)
            if r.max_delay is not None:
                self.duration(r.max_delay, "max_delay", positive=False)
            if r.backoff is not None:
                self.number(r.backoff, "backoff", low=1, high=None, hint="1 keeps the delay fixed; 2 doubles it")
            if r.jitter is not None:
                self.number(r.jitter, "jitter", low=0, high=1, hint="a fraction: 0.2 means ±20%")
        if s.timeout is not None:
            self.duration(s.timeout, "a timeout", positive=True)
        if s.cache is not None and s.cache.ttl is not None:
            self.duration(s.cache.ttl, "the cache's lifetime", positive=True)
        if s.resources is not None:
            self.check_resources(s.resources)

    def check_resources(self, resources: ir.MapExpr) -> None:
        """`resources { gpu = 1 }`: names of Dask worker resources, each with a positive amount."""
        hint = "an amount of an abstract resource that workers declare, e.g. `dask worker ... --resources GPU=2`"
        for entry in resources.entries:
            e = entry.value
            if not (isinstance(e, ir.Literal) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool)):
                self.report("E101", f"resource `{entry.key}` needs a number", e.span, hint)
            elif e.value <= 0:
                self.report("E102", f"resource `{entry.key}` must be more than 0, not {e.value}", e.span, hint)

    # ---- references ------------------------------------------------------------

    def check_ref(self, ref: ir.Ref, task: ir.Task, scoped: bool = True) -> None:
        if ref.name == "params":
            self.check_param_ref(ref)
        elif ref.name == "run":
            self.check_run_ref(ref)
        elif ref.name == task.name:
            self.report("E301", f"task `{task.name}` refers to its own result", ref.span)
        elif ref.name not in self.tasks:
            names = list(self.tasks) + ["params", "run"] + (list(planner.foreach_names(task)) if scoped else [])
            if id(ref) in getattr(self, "after_dollar", ()):  # `${HOME}`: the shell's variable, written in braces
                hint = (f"`{{...}}` is flow's interpolation: the shell's `${ref.name}` needs no braces here "
                        f"(write `${ref.name}`, or `${{{{{ref.name}}}}}` for the braces themselves)")
            else:
                hint = did_you_mean(ref.name, names) or \
                    "a reference names a task, a foreach variable, params.NAME or run.VALUE"
            self.report("E201", f"unknown name `{ref.name}`", ref.span, hint)

    def check_param_ref(self, ref: ir.Ref) -> None:
        if not ref.path:
            self.used_params.update(self.params)
            return
        key = ref.path[0]
        if not isinstance(key, str) or key not in self.params:
            hint = did_you_mean(str(key), self.params) or (
                "declared params: " + ", ".join(self.params) if self.params else "declare it in `params { ... }`")
            self.report("E205", f"unknown param `{key}`", ref.span, hint)
        else:
            self.used_params.add(key)

    def check_run_ref(self, ref: ir.Ref) -> None:
        if len(ref.path) > 1 and ref.path[0] in RUN_VALUES:
            self.report("E206", f"`run.{ref.path[0]}` has no part `{ref.path[1]}`", ref.span,
                        "run values are plain: " + ", ".join(RUN_VALUES))
            return
        if len(ref.path) != 1 or ref.path[0] not in RUN_VALUES:
            shown = str(ref.path[0]) if ref.path else ""
            message = f"unknown run value `run.{shown}`" if shown else "`run` needs a value: run.id, run.date, ..."
            hint = did_you_mean(shown, RUN_VALUES) or "run values: " + ", ".join(RUN_VALUES)
            self.report("E206", message, ref.span, hint)

    # ---- callables -------------------------------------------------------------

    def check_callable(self, c: ir.CallableRef, args: Optional[ir.MapExpr], hook: bool = False) -> None:
        source = self.sources.module(c.module)
        top = c.module.split(".")[0]
        # a str from module() or lookup() is OPAQUE
        if top in _stdlib_names() and source is not None and not isinstance(source, str) and not source.error and \
                any(os.path.dirname(source.path) == d or source.path.startswith(os.path.join(d, top) + os.sep)
                    for d in self.sources.pipeline_dirs):
            self.report("W106", f"module `{top}` has the name of a Python standard module", c.span,
                        f"Python's own `{top}` may be imported first and the task then fail; rename "
                        f"{os.path.relpath(source.path)}")
        if source is None:
            self.report("E401", f"module `{c.module}` not found", c.span,
                        "looked in " + ", ".join(self.sources.pipeline_dirs) + " and on the Python path; "
                        "add its folder with `pythonpath \"dir\"`")
            return
        if isinstance(source, str):  # OPAQUE
            return
        if source.error:
            self.report("E405", f"module `{c.module}` cannot be read: {source.error}", c.span)
            return
        node = lookup(source, c.attr)
        if node is None:
            top = c.attr.split(".")[0]
            self.report("E402", f"`{c.attr}` is not defined in {os.path.relpath(source.path)}", c.span,
                        did_you_mean(top, [n for n in source.names if not n.startswith("_")]))
            return
        if isinstance(node, str):  # OPAQUE
            return
        sig = signature(node, bound="." in c.attr)
        if sig is None:
            return
        if sig.kind == "class" and not sig.has_run:
            self.report("E402", f"class `{c.attr}` has no run() method", c.span,
                        "a class task defines run(); on_create, on_success, on_failure, on_destroy are optional")
        if hook:
            if sig.positional == 0 and not sig.any_keyword:
                self.report("E403", f"`{c}` takes no argument, but a hook receives the run report", c.span,
                            "give it one parameter, e.g. def notify(report): ...")
            elif len(sig.required) > 1:
                self.report("E404", f"`{c}` needs {len(sig.required)} arguments, but a hook receives one: "
                            "the run report", c.span, "give the others defaults")
            return
        given = {e.key: e for e in args.entries} if args else {}
        for key, entry in given.items():
            if key not in sig.accepted and not sig.any_keyword:
                self.report("E403", f"`{c}` does not take an argument `{key}`", entry.key_span,
                            did_you_mean(key, sig.accepted) or (
                                "it takes " + ", ".join(sig.accepted) if sig.accepted else "it takes no arguments"))
        for name in sig.required:
            if name.startswith("/"):
                self.report("E404", f"`{c}` needs positional-only argument `{name[1:]}`, which `with` cannot give",
                            c.span)
            elif name not in given:
                self.report("E404", f"`{c}` needs argument `{name}`", args.span if args else c.span,
                            f"add it: with {{ {name} = ... }}")

    # ---- graph -----------------------------------------------------------------

    def check_cycles(self, graph: Dict[str, List[planner.Edge]]) -> None:
        order = {t.name: i for i, t in enumerate(self.program.tasks)}
        for cycle in planner.find_cycles(graph):
            if len(cycle) == 1 and cycle[0].upstream in self.tasks and cycle[0].kind == "data":
                continue  # a task referring to itself is reported by check_ref
            names = [cycle[-1].upstream] + [e.upstream for e in cycle]
            start = min(names[:-1], key=order.__getitem__)
            i = names.index(start)
            rotated = names[i:-1] + names[:i] + [start]
            edge = cycle[(i) % len(cycle)]
            self.report("E301", "dependency cycle: " + " → ".join(rotated), edge.span,
                        "each task needs the next; remove one of these references or `after`s")

    def check_targets(self, graph: Dict[str, List[planner.Edge]]) -> None:
        if not self.targets:
            return
        needed = planner.upstream_closure(graph, [t for t in self.targets if t in graph])
        for task in self.program.tasks:
            if task.name not in needed:
                self.report("W102", f"task `{task.name}` is not needed by " + ", ".join(self.targets),
                            task.name_span, "it will not run with these targets")

    # ---- values ----------------------------------------------------------------

    def constant(self, t: ir.Expr, what: str) -> Optional[str]:
        if not isinstance(t, ir.Template):
            self.report("E101", f"{what} must be a string", t.span)
            return None
        if not t.is_constant:
            self.report("E106", f"{what} cannot hold interpolated fields", t.span, "write the text itself")
            return None
        return t.text

    def dask_address(self, t: ir.Template) -> None:
        from .addresses import problem

        text = self.constant(t, "the dask scheduler address")
        if text is not None:
            bad = problem(text)
            if bad is not None:
                self.report(bad.code, str(bad), t.span, "e.g. \"tcp://scheduler.internal:8786\"")

    def iso(self, t: ir.Expr) -> Optional[datetime]:
        from .timeutil import parse_iso

        text = self.constant(t, "a date")
        if text is None:
            return None
        try:
            return parse_iso(text)
        except ValueError as e:
            self.report("E105", str(e), t.span)
            return None

    def time_zone(self, t: ir.Template) -> None:
        from .timeutil import zone

        text = self.constant(t, "a time zone")
        if text is not None:
            try:
                zone(text)
            except ValueError as e:
                self.report("E104", str(e), t.span, "an IANA name such as Europe/Berlin or America/New_York")

    def duration(self, e: ir.Expr, what: str, positive: bool) -> None:
        if not isinstance(e, ir.Duration):
            self.report("E101", f"{what} must be a duration", e.span,
                        "write it like 500ms, 30s, 5m, 2h, 1d or 1h30m")
        elif positive and e.seconds <= 0:
            self.report("E102", f"{what} must be longer than zero", e.span)

    def whole_number(self, e: ir.Expr, what: str, minimum: int) -> None:
        if not (isinstance(e, ir.Literal) and isinstance(e.value, int) and not isinstance(e.value, bool)):
            self.report("E101", f"{what} must be a whole number", e.span)
        elif e.value < minimum:
            self.report("E102", f"{what} must be at least {minimum}, not {e.value}", e.span)

    def number(self, e: ir.Expr, what: str, low: float, high: Optional[float], hint: str) -> None:
        if not (isinstance(e, ir.Literal) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool)):
            self.report("E101", f"{what} must be a number", e.span, hint)
        elif e.value < low or (high is not None and e.value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.report("E102", f"{what} must be {bounds}, not {e.value}", e.span, hint)


def _date_format(fmt: str) -> bool:
    """strftime's `%Y`, not the number format's `.2%` (no regex: compiling one costs every start)."""
    return any(fmt[i] == "%" and fmt[i + 1].isalpha() for i in range(len(fmt) - 1))


def _literal_kind(expr: ir.Expr) -> Optional[str]:
    """What kind of value a literal expression holds, in words (None: not a literal, known only at run
    time). The kinds are typed params' (a duration is its seconds: a number, as an int and a float are)."""
    if not isinstance(expr, (ir.Literal, ir.Template, ir.ListExpr, ir.MapExpr, ir.Duration)):
        return None
    from .paramtypes import kind_of

    return _KIND_WORDS[kind_of(expr)]


_STDLIB: List[FrozenSet[str]] = []  # the standard library's module names, once looked up


def _stdlib_names() -> FrozenSet[str]:
    if _STDLIB:
        return _STDLIB[0]
    import sys

    names = getattr(sys, "stdlib_module_names", None)  # 3.10+
    if names is None:
        names = frozenset(sys.builtin_module_names) | frozenset((
            "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar", "collections", "copy",
            "csv", "datetime", "decimal", "email", "enum", "fractions", "functools", "glob", "hashlib", "heapq",
            "hmac", "html", "http", "inspect", "io", "json", "logging", "math", "operator", "os", "pathlib",
            "pickle", "platform", "queue", "random", "re", "secrets", "select", "shutil", "signal", "socket",
            "sqlite3", "ssl", "statistics", "string", "struct", "subprocess", "tempfile", "textwrap",
            "threading", "time", "token", "tokenize", "types", "typing", "unittest", "urllib", "uuid",
            "warnings", "weakref", "xml", "zipfile", "zlib"))
    _STDLIB.append(frozenset(names))
    return _STDLIB[0]


def validate(program: ir.Program, targets: Iterable[str] = (), modules: Optional[List[str]] = None) -> List[Diagnostic]:
    """Every problem of a loaded program, in the order found (`check` sorts); `modules` gets the Python
    files read."""
    validator = Validator(program, list(targets))
    diagnostics = validator.run()
    if modules is not None:
        modules.extend(validator.sources.paths())
        modules.extend(validator.called)
    return diagnostics


def _after_dollar(exprs: Iterable[Optional[ir.Expr]]) -> Set[int]:
    """ids of the references written as `${NAME}` in the strings of these expressions."""
    found: Set[int] = set()
    stack = list(exprs)
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Template):
            before = ""
            for part in node.parts:
                if isinstance(part, str):
                    before = part
                else:
                    if before.endswith("$") and not part.ref.path:
                        found.add(id(part.ref))
                    before = ""
        elif isinstance(node, ir.ListExpr):
            stack.extend(node.items)
        elif isinstance(node, ir.MapExpr):
            stack.extend(e.value for e in node.entries)
    return found

