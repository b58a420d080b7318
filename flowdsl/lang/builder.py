"""The builder: rule callbacks that make IR nodes while the parser runs.

The parser (lark, or the fast path in lalr.py) calls these methods as it
reduces each rule (the builder is given to the parser, so no parse tree is
ever built). They
never raise for a problem a user can fix; they record a Diagnostic and go on,
so one pass reports every problem of a file. The only exceptions are limits
that protect later stages (nesting depth), raised through `fail`.
"""

from __future__ import annotations

import math

from . import ir
from .diagnostics import Diagnostic, fail
from .ir import Span
from .lalr import Token  # for annotations: lark's tokens have the same fields
from .strings import scan
from .timeutil import parse_duration

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, Optional, Tuple, TypeVar, Union

    _N = TypeVar("_N", bound="ir.Expr")  # a node `_nest` hands back
    _V = TypeVar("_V")
    Stmt = Tuple[str, _V, Span]  # a statement: (keyword, value, keyword span), for task/pipeline

# Deeper lists and maps than this are refused: later stages walk expressions
# recursively, and no real pipeline nests 100 levels.
MAX_NESTING = 100
# Integers are kept to what msgpack and every consumer can carry.
MAX_INT = 2**63 - 1

# Statements a task may write in `defaults` (the rest are per task).
DEFAULTABLE = ("retry", "timeout", "when", "output", "cache", "tags", "resources", "shell")


class Builder:
    """One instance serves every parse; `begin` resets it for the next file.

    Both parsers call its methods by rule name (lark's and lalr.FastParser),
    so it imports neither lark nor a base class of lark's.
    """

    def __init__(self) -> None:
        self.begin("<string>")

    def begin(self, file: str, text: str = "") -> None:
        self.file = file
        self.text = text
        self._line_starts: Optional[List[int]] = None
        self._parens: Dict[int, Span] = {}
        self.diagnostics: List[Diagnostic] = []
        self._depth: Dict[int, int] = {}

    # ---- helpers -----------------------------------------------------------

    def report(self, code: str, message: str, span: Span, hint: Optional[str] = None) -> None:
        self.diagnostics.append(Diagnostic(code, message, span, hint))

    def span(self, tok: Token) -> Span:
        return Span(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def string(self, tok: Token) -> ir.Template:
        return scan(tok.value, tok.line, tok.column, self.file, self.report)

    def expr(self, child: Union[Token, ir.Expr]) -> ir.Expr:
        """Children that are bare string tokens become Templates (no method returns a plain str)."""
        if isinstance(child, str):
            return self.string(child)
        return child

    def word(self, tok: Token) -> ir.Word:
        return ir.Word(tok.value, self.span(tok))

    # ---- values ------------------------------------------------------------

    def number(self, c: List[Any]) -> ir.Literal:
        tok = c[0]
        text = tok.value.replace("_", "")
        span = self.span(tok)
        if any(ch in text for ch in ".eE"):
            value = float(text)
            if not math.isfinite(value):
                self.report("E010", f"number `{_cut(tok.value)}` is too large", span)
                value = 0.0
        else:
            digits = len(text.lstrip("-"))
            value = int(text) if digits <= 19 else MAX_INT + 1
            if abs(value) > MAX_INT:
                self.report("E010", f"number `{_cut(tok.value)}` is out of range",
                            span, f"whole numbers must lie within ±{MAX_INT}")
                value = 0
        return ir.Literal(value, span)

    def duration(self, c: List[Any]) -> ir.Duration:
        tok = c[0]
        seconds = parse_duration(tok.value)
        if seconds > 100 * 365 * 86400:
            self.report("E010", f"duration `{_cut(tok.value)}` is out of range", self.span(tok),
                        "durations are limited to 100 years")
            seconds = 100 * 365 * 86400
        return ir.Duration(seconds, tok.value, self.span(tok))

    def true(self, c: List[Any]) -> ir.Literal:
        return ir.Literal(True, self.span(c[0]))

    def false(self, c: List[Any]) -> ir.Literal:
        return ir.Literal(False, self.span(c[0]))

    def null(self, c: List[Any]) -> ir.Literal:
        return ir.Literal(None, self.span(c[0]))

    def _nest(self, node: _N, children: Iterable[ir.Expr]) -> _N:
        depth = 1 + max((self._depth.get(id(ch), 0) for ch in children), default=0)
        # a statement's own map (`with { ... }`) is not a level of nesting
        if depth > MAX_NESTING + isinstance(node, ir.MapExpr):
            fail("E009", f"lists and maps nest deeper than {MAX_NESTING} levels", node.span)
        self._depth[id(node)] = depth
        return node

    def list(self, c: List[Any]) -> ir.ListExpr:
        items = tuple(self.expr(x) for x in c[1:-1] if x is not None)
        return self._nest(ir.ListExpr(items, self.span(c[0]).to(self.span(c[-1]))), items)

    def map(self, c: List[Any]) -> ir.MapExpr:
        entries: List[ir.Entry] = []
        for i in range(1, len(c) - 1, 2):
            key = c[i]
            name = self.string(key).text if key.type == "STRING" else key.value
            entries.append(ir.Entry(name, self.span(key), self.expr(c[i + 1])))
        seen: Dict[str, ir.Entry] = {}
        for e in entries:
            if e.key in seen:
                first = seen[e.key].key_span
                self.report("E203", f"key `{e.key}` is given twice", e.key_span,
                            f"first given at line {first.line}, column {first.col}")
            else:
                seen[e.key] = e
        node = ir.MapExpr(tuple(entries), self.span(c[0]).to(self.span(c[-1])))
        return self._nest(node, [e.value for e in entries])

    def ref(self, c: List[Any]) -> ir.Ref:
        path: List[Any] = []
        for tok in c[1:]:
            if tok.type == "NUMBER":
                text = tok.value.replace("_", "")
                if not text.isdigit() or len(text) > 18:
                    self.report("E101", f"index `{_cut(tok.value)}` is not a whole number from 0", self.span(tok))
                    path.append(0)
                else:
                    path.append(int(text))
            elif tok.type == "STRING":
                path.append(self.string(tok).text)
            else:
                path.append(tok.value)
        return ir.Ref(c[0].value, tuple(path), self.span(c[0]).to(self.span(c[-1])))

    def env_call(self, c: List[Any]) -> ir.EnvCall:
        name = self.string(c[1])
        default = self.expr(c[2]) if c[2] is not None else None
        end = default.span if default is not None else name.span
        return ir.EnvCall(self._constant(name, "a variable name"), default, False, self.span(c[0]).to(end))

    def secret_call(self, c: List[Any]) -> ir.EnvCall:
        name = self.string(c[1])
        return ir.EnvCall(self._constant(name, "a secret's name"), None, True, self.span(c[0]).to(name.span))

    # ---- conditions (`if EXPR`) ------------------------------------------------

    # An operand in parentheses is the expression inside; its span with the
    # parentheses is kept aside, so that what contains it spans them too.

    def outer(self, node: ir.Expr) -> Span:
        return self._parens.get(id(node), node.span)

    def condition(self, c: List[Any]) -> Stmt[ir.Condition]:
        expr = self.expr(c[1])
        span = self.outer(expr)
        self._parens.clear()
        return ("if", ir.Condition(expr, self.source(span), span), self.span(c[0]))

    def _bool(self, op: str, c: List[Any]) -> ir.BoolOp:
        items = tuple(self.expr(x) for x in c[0::2])
        return self._nest(ir.BoolOp(op, items, self.outer(items[0]).to(self.outer(items[-1]))), items)

    def cond_or(self, c: List[Any]) -> ir.BoolOp:
        return self._bool("or", c)

    def cond_and(self, c: List[Any]) -> ir.BoolOp:
        return self._bool("and", c)

    def cond_not(self, c: List[Any]) -> ir.Not:
        operand = self.expr(c[1])
        return self._nest(ir.Not(operand, self.span(c[0]).to(self.outer(operand))), [operand])

    def compare(self, c: List[Any]) -> ir.Compare:
        left, right = self.expr(c[0]), self.expr(c[-1])
        op = "not in" if len(c) == 4 else c[1].value
        return self._nest(ir.Compare(op, left, right, self.outer(left).to(self.outer(right))), [left, right])

    def paren(self, c: List[Any]) -> ir.Expr:
        inner = self.expr(c[1])
        self._parens[id(inner)] = self.span(c[0]).to(self.span(c[2]))
        return inner

    def source(self, span: Span) -> str:
        """The text a span covers, on one line (for messages)."""
        if not self.text:
            return ""
        if self._line_starts is None:
            starts = [0]
            at = self.text.find("\n")
            while at >= 0:
                starts.append(at + 1)
                at = self.text.find("\n", at + 1)
            self._line_starts = starts
        starts = self._line_starts
        start = starts[span.line - 1] + span.col - 1
        end = starts[span.end_line - 1] + span.end_col - 1
        text = self.text[start:end]
        return " ".join(part.strip() for part in text.splitlines()) if "\n" in text else text

    def _constant(self, t: ir.Template, what: str) -> str:
        if not t.is_constant:
            self.report("E106", f"{what} cannot hold interpolated fields", t.span, "write the text itself")
        return t.text

    # ---- task statements ---------------------------------------------------
    # Each returns (statement keyword, value, keyword span) for task/pipeline.

    def description(self, c: List[Any]) -> Stmt[ir.Template]:
        return ("description", self.string(c[1]), self.span(c[0]))

    def run_action(self, c: List[Any]) -> Stmt[ir.RunAction]:
        module, attr = c[1].value.split(":", 1)
        callable_ = ir.CallableRef(module, attr, self.span(c[1]))
        return ("action", ir.RunAction(callable_, self.span(c[0]).to(callable_.span)), self.span(c[0]))

    def sh_action(self, c: List[Any]) -> Stmt[ir.ShAction]:
        command = self.string(c[1])
        return ("action", ir.ShAction(command, self.span(c[0]).to(command.span)), self.span(c[0]))

    def exec_action(self, c: List[Any]) -> Stmt[ir.ExecAction]:
        argv = self.expr(c[1])
        return ("action", ir.ExecAction(argv, self.span(c[0]).to(argv.span)), self.span(c[0]))

    def wait_file(self, c: List[Any]) -> Stmt[ir.WaitAction]:
        pattern = self.string(c[2])
        return ("action", ir.WaitAction("file", pattern, self.span(c[0]).to(pattern.span)), self.span(c[0]))

    def wait_sh(self, c: List[Any]) -> Stmt[ir.WaitAction]:
        command = self.string(c[2])
        return ("action", ir.WaitAction("sh", command, self.span(c[0]).to(command.span)), self.span(c[0]))

    def wait_run(self, c: List[Any]) -> Stmt[ir.WaitAction]:
        module, attr = c[2].value.split(":", 1)
        callable_ = ir.CallableRef(module, attr, self.span(c[2]))
        return ("action", ir.WaitAction("run", callable_, self.span(c[0]).to(callable_.span)), self.span(c[0]))

    def call_action(self, c: List[Any]) -> Stmt[ir.CallAction]:
        path = self.string(c[1])
        self._constant(path, "a called pipeline's path")
        return ("action", ir.CallAction(path, self.span(c[0]).to(path.span)), self.span(c[0]))

    def post_action(self, c: List[Any]) -> Stmt[ir.PostAction]:
        url = self.string(c[1])
        return ("action", ir.PostAction(url, self.span(c[0]).to(url.span)), self.span(c[0]))

    def every(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("every", self.expr(c[1]), self.span(c[0]))

    def shell(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("shell", self.expr(c[1]), self.span(c[0]))

    def ship(self, c: List[Any]) -> Stmt[Tuple[ir.Template, ...]]:
        return ("ship", tuple(self.string(t) for t in c[1:]), self.span(c[0]))

    def env_file(self, c: List[Any]) -> Stmt[ir.Template]:
        return ("env_file", self.string(c[1]), self.span(c[0]))

    def with_args(self, c: List[Any]) -> Stmt[ir.MapExpr]:
        return ("with", c[1], self.span(c[0]))

    def after(self, c: List[Any]) -> Stmt[Tuple[ir.Name, ...]]:
        return ("after", tuple(ir.Name(t.value, self.span(t)) for t in c[1:]), self.span(c[0]))

    def retry(self, c: List[Any]) -> Stmt[ir.Retry]:
        options: Dict[str, Any] = {}
        for kind, value, span in c[2:]:
            if kind in options:
                self.report("E207", f"`{kind}` is given twice in this retry", span)
            options[kind] = value
        count = self.expr(c[1])
        last = c[-1][1] if len(c) > 2 else count
        end = last[-1].span if isinstance(last, tuple) else last.span
        node = ir.Retry(count, options.get("delay"), options.get("backoff"), options.get("max_delay"),
                        options.get("jitter"), options.get("on", ()), self.span(c[0]).to(end))
        return ("retry", node, self.span(c[0]))

    def retry_delay(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("delay", self.expr(c[1]), self.span(c[0]))

    def retry_backoff(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("backoff", self.expr(c[1]), self.span(c[0]))

    def retry_max_delay(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("max_delay", self.expr(c[1]), self.span(c[0]))

    def retry_jitter(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("jitter", self.expr(c[1]), self.span(c[0]))

    def retry_on(self, c: List[Any]) -> Stmt[Tuple[ir.Name, ...]]:
        return ("on", tuple(c[1:]), self.span(c[0]))

    def dotted_name(self, c: List[Any]) -> ir.Name:
        return ir.Name(".".join(t.value for t in c), self.span(c[0]).to(self.span(c[-1])))

    def timeout(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("timeout", self.expr(c[1]), self.span(c[0]))

    def when(self, c: List[Any]) -> Stmt[ir.Word]:
        return ("when", self.word(c[1]), self.span(c[0]))

    def foreach(self, c: List[Any]) -> Stmt[ir.Foreach]:
        items = self.expr(c[-1])
        value = ir.Name(c[2].value, self.span(c[2])) if c[2] is not None else None
        node = ir.Foreach(ir.Name(c[1].value, self.span(c[1])), items, self.span(c[0]).to(items.span), value)
        if value is not None and value.name == node.var.name:
            self.report("E202", f"`{value.name}` names both the key and the value", value.span,
                        "give them two names: foreach key, value in ...")
        return ("foreach", node, self.span(c[0]))

    def output(self, c: List[Any]) -> Stmt[ir.Word]:
        return ("output", self.word(c[1]), self.span(c[0]))

    def cache(self, c: List[Any]) -> Stmt[ir.Cache]:
        ttl = self.expr(c[1]) if c[1] is not None else None
        return ("cache", ir.Cache(ttl, self.span(c[0]).to(ttl.span if ttl else self.span(c[0]))), self.span(c[0]))

    def tags(self, c: List[Any]) -> Stmt[Tuple[ir.Name, ...]]:
        names: List[ir.Name] = []
        for t in c[1:]:
            names.append(ir.Name(self.string(t).text if t.type == "STRING" else t.value, self.span(t)))
        return ("tags", tuple(names), self.span(c[0]))

    def resources(self, c: List[Any]) -> Stmt[ir.MapExpr]:
        return ("resources", c[1], self.span(c[0]))

    def _settings(self, stmts: Dict[str, Any]) -> ir.Settings:
        return ir.Settings(stmts.get("retry"), stmts.get("timeout"), stmts.get("when"),
                           stmts.get("output"), stmts.get("cache"), stmts.get("tags", ()), stmts.get("resources"),
                           stmts.get("shell"))

    def _collect(self, stmts: Iterable[Stmt[Any]], where: str, repeatable: Tuple[str, ...] = (
            "schedule", "hook", "pythonpath", "after", "tags", "ship")) -> Dict[str, Any]:
        """Statements by keyword; a statement given twice is reported once."""
        out: Dict[str, Any] = {}
        first: Dict[str, Span] = {}
        for kind, value, span in stmts:
            if kind in repeatable:
                out.setdefault(kind, []).append(value)
                continue
            if kind in out:
                keyword = "run`, `sh` or `exec" if kind == "action" else "if" if kind == "if" else kind
                prior = first[kind]
                code, msg = ("E209", f"{where} has more than one action") if kind == "action" else \
                    ("E207", f"`{keyword}` is given twice in {where}")
                self.report(code, msg, span, f"the first is at line {prior.line}, column {prior.col}")
                continue
            out[kind] = value
            first[kind] = span
        return out

    def task(self, c: List[Any]) -> ir.Task:
        name = c[1]
        where = f"task `{name.value}`"
        stmts = self._collect(c[2:], where)
        after = tuple(n for group in stmts.get("after", ()) for n in group)
        stmts["tags"] = tuple(n for group in stmts.get("tags", ()) for n in group)
        span = self.span(c[0]).to(self.span(name))
        if "action" not in stmts:
            self.report("E208", f"task `{name.value}` has no action", self.span(name),
                        "give it one of `run module:function`, `sh \"command\"`, `exec [\"prog\", ...]`, "
                        "`wait ...` or `call \"other.flow\"`")
        return ir.Task(name.value, self.span(name), stmts.get("action"), stmts.get("with"), after,
                       stmts.get("foreach"), stmts.get("description"), self._settings(stmts), span,
                       stmts.get("if"), stmts.get("every"))

    # ---- pipeline statements -----------------------------------------------

    def schedule_cron(self, c: List[Any]) -> Stmt[ir.Schedule]:
        expr = self.string(c[2])
        tz = self.string(c[4]) if len(c) > 4 else None
        return ("schedule", ir.Schedule("cron", expr, tz, self.span(c[0]).to((tz or expr).span)), self.span(c[0]))

    def schedule_every(self, c: List[Any]) -> Stmt[ir.Schedule]:
        interval = self.expr(c[2])
        anchor = self.string(c[4]) if len(c) > 4 else None
        end = (anchor or interval).span
        return ("schedule", ir.Schedule("every", interval, anchor, self.span(c[0]).to(end)), self.span(c[0]))

    def schedule_at(self, c: List[Any]) -> Stmt[ir.Schedule]:
        when = self.string(c[2])
        return ("schedule", ir.Schedule("at", when, None, self.span(c[0]).to(when.span)), self.span(c[0]))

    def window(self, c: List[Any]) -> Stmt[ir.Window]:
        start = self.string(c[1])
        end = self.string(c[3]) if len(c) > 3 else None
        return ("window", ir.Window(start, end, self.span(c[0]).to((end or start).span)), self.span(c[0]))

    def catchup(self, c: List[Any]) -> Stmt[ir.Word]:
        return ("catchup", self.word(c[1]), self.span(c[0]))

    def overlap(self, c: List[Any]) -> Stmt[ir.Word]:
        return ("overlap", self.word(c[1]), self.span(c[0]))

    def results(self, c: List[Any]) -> Stmt[ir.Word]:
        return ("results", self.word(c[1]), self.span(c[0]))

    def concurrency(self, c: List[Any]) -> Stmt[ir.Expr]:
        return ("concurrency", self.expr(c[1]), self.span(c[0]))

    def executor(self, c: List[Any]) -> Stmt[ir.Executor]:
        address = self.string(c[2]) if len(c) > 2 else None
        end = address.span if address else self.span(c[1])
        return ("executor", ir.Executor(c[1].value, address, self.span(c[0]).to(end)), self.span(c[0]))

    def pythonpath(self, c: List[Any]) -> Stmt[Tuple[ir.Template, ...]]:
        return ("pythonpath", tuple(self.string(t) for t in c[1:]), self.span(c[0]))

    def params(self, c: List[Any]) -> Stmt[ir.MapExpr]:
        return ("params", c[1], self.span(c[0]))

    def defaults(self, c: List[Any]) -> Stmt[ir.Settings]:
        allowed: List[Stmt[Any]] = []
        for stmt in c[1:]:
            kind, _, span = stmt
            if kind in DEFAULTABLE:
                allowed.append(stmt)
            else:
                keyword = "run`, `sh` or `exec" if kind == "action" else "if" if kind == "if" else kind
                self.report("E210", f"`{keyword}` cannot be given in `defaults`", span,
                            "defaults may hold " + ", ".join(f"`{k}`" for k in DEFAULTABLE))
        stmts = self._collect(allowed, "`defaults`")
        stmts["tags"] = tuple(n for group in stmts.get("tags", ()) for n in group)
        return ("defaults", self._settings(stmts), self.span(c[0]))

    def hook(self, c: List[Any]) -> Stmt[ir.Hook]:
        _, action, _ = c[2]
        return ("hook", ir.Hook(c[1].value, action, self.span(c[0]).to(action.span)), self.span(c[0]))

    def pipeline(self, c: List[Any]) -> ir.PipelineDecl:
        name = c[1]
        stmts = self._collect(c[2:], "the pipeline")
        return ir.PipelineDecl(
            name=name.value, name_span=self.span(name), description=stmts.get("description"),
            schedules=tuple(stmts.get("schedule", ())), window=stmts.get("window"),
            catchup=stmts.get("catchup"), overlap=stmts.get("overlap"),
            concurrency=stmts.get("concurrency"), executor=stmts.get("executor"),
            timeout=stmts.get("timeout"),
            pythonpath=tuple(p for group in stmts.get("pythonpath", ()) for p in group),
            params=stmts.get("params"), defaults=stmts.get("defaults", ir.Settings()),
            results=stmts.get("results"), hooks=tuple(stmts.get("hook", ())),
            span=self.span(c[0]).to(self.span(name)), shell=stmts.get("shell"), env_file=stmts.get("env_file"),
            ship=tuple(p for group in stmts.get("ship", ()) for p in group),
        )

    def include(self, c: List[Any]) -> ir.Include:
        path = self.string(c[1])
        text = self._constant(path, "an include path")
        return ir.Include(text if path.is_constant else None, self.span(c[0]).to(path.span))

    def start(self, c: List[Any]) -> List[Any]:
        return c


def _cut(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


if TYPE_CHECKING:
    Blocks = Tuple[Optional[ir.PipelineDecl], Tuple[ir.Task, ...], Tuple[ir.Include, ...], List[Diagnostic]]


def split_blocks(file: str, blocks: List[Any]) -> Blocks:
    pipelines = [b for b in blocks if isinstance(b, ir.PipelineDecl)]
    diagnostics: List[Diagnostic] = []
    for extra in pipelines[1:]:
        assert extra.span is not None and pipelines[0].span is not None  # pipeline() gives every block its span
        diagnostics.append(Diagnostic("E211", f"a second pipeline block (`{extra.name}`)", extra.span,
                                      f"a file holds one pipeline; the first is `{pipelines[0].name}` "
                                      f"at line {pipelines[0].span.line}"))
    tasks = tuple(b for b in blocks if isinstance(b, ir.Task))
    includes = tuple(b for b in blocks if isinstance(b, ir.Include))
    return (pipelines[0] if pipelines else None), tasks, includes, diagnostics
