"""The planner: a Program's dependency graph, its order, its cycles, subgraphs.

An edge comes from every reference to a task (in `with`, `sh`, `exec`,
`foreach`) and from every `after`. Everything here is linear in the number
of tasks and edges: Tarjan's algorithm finds the cycles, Kahn's the order.
"""

from __future__ import annotations

from collections import namedtuple

from . import ir
from .records import finish, record

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple


def iter_refs(expr: Optional[ir.Expr]) -> Iterator[ir.Ref]:
    """Every reference inside an expression, interpolated fields included."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        if isinstance(node, ir.Ref):
            yield node
        elif isinstance(node, ir.Template):
            for part in node.parts:
                if isinstance(part, ir.Field):
                    yield part.ref
        elif isinstance(node, ir.ListExpr):
            stack.extend(reversed(node.items))
        elif isinstance(node, ir.MapExpr):
            stack.extend(e.value for e in reversed(node.entries))
        elif isinstance(node, ir.EnvCall):
            stack.append(node.default)
        elif isinstance(node, ir.Compare):
            stack.extend((node.right, node.left))
        elif isinstance(node, ir.BoolOp):
            stack.extend(reversed(node.items))
        elif isinstance(node, ir.Not):
            stack.append(node.operand)


def iter_templates(expr: Optional[ir.Expr]) -> Iterator[ir.Template]:
    """Every string inside an expression."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Template):
            yield node
        elif isinstance(node, ir.ListExpr):
            stack.extend(node.items)
        elif isinstance(node, ir.MapExpr):
            stack.extend(e.value for e in node.entries)


def action_exprs(action: Optional[ir.Action]) -> List[Optional[ir.Expr]]:
    if isinstance(action, ir.ShAction):
        return [action.command]
    if isinstance(action, ir.ExecAction):
        return [action.argv]
    if isinstance(action, ir.WaitAction) and action.kind != "run" and isinstance(action.target, ir.Template):
        return [action.target]  # a file pattern or a command (`run`'s is a CallableRef)
    return []


def task_refs(task: ir.Task) -> Iterator[Tuple[ir.Ref, bool]]:
    """(reference, inside the foreach scope) for every reference a task makes.

    The foreach expression itself is evaluated outside the instance, so the
    loop variable is not in scope there.
    """
    if task.foreach is not None:
        for ref in iter_refs(task.foreach.items):
            yield ref, False
    scoped = task.foreach is not None
    condition = [task.condition.expr] if task.condition is not None else []
    for expr in [task.args] + action_exprs(task.action) + condition:
        for ref in iter_refs(expr):
            yield ref, scoped


def foreach_names(task: ir.Task) -> Tuple[str, ...]:
    """The names a foreach task's instance binds: its variable, and the value's for `foreach k, v in MAP`."""
    f = task.foreach
    if f is None:
        return ()
    return (f.var.name, f.value.name) if f.value is not None else (f.var.name,)


# An edge into a task: upstream (a task name), kind ("data" for a reference, or
# "after") and the span that makes it.
Edge = namedtuple("Edge", "upstream kind span")


def edges(program: ir.Program) -> Dict[str, List[Edge]]:
    """For each task, its upstream edges in source order, one per upstream."""
    names = {t.name for t in program.tasks}
    out: Dict[str, List[Edge]] = {}
    for task in program.tasks:
        seen: Set[str] = set()
        lst: List[Edge] = []
        names_in_scope = foreach_names(task)
        for ref, scoped in task_refs(task):
            if scoped and ref.name in names_in_scope:
                continue
            if ref.name in names and ref.name not in seen:
                seen.add(ref.name)
                lst.append(Edge(ref.name, "data", ref.span))
        for name in task.after:
            if name.name in names and name.name not in seen:
                seen.add(name.name)
                lst.append(Edge(name.name, "after", name.span))
        out[task.name] = lst
    return out


def find_cycles(graph: Dict[str, List[Edge]]) -> List[List[Edge]]:
    """One cycle per strongly connected component that has one, as its edges."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    components: List[List[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = graph[node]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i].upstream
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or any(e.upstream == node for e in graph[node]):
                    components.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    order = {name: i for i, name in enumerate(graph)}
    return [_cycle_in(sorted(comp, key=order.__getitem__), graph) for comp in components]


def _cycle_in(component: List[str], graph: Dict[str, List[Edge]]) -> List[Edge]:
    """A cycle through the component's first task, found by breadth-first search."""
    members = set(component)
    start = component[0]
    came: Dict[str, Tuple[str, Edge]] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for e in graph[node]:
                if e.upstream not in members:
                    continue
                if e.upstream == start:
                    path = [e]
                    while node != start:
                        prev, edge = came[node]
                        path.append(edge)
                        node = prev
                    path.reverse()
                    return path
                if e.upstream not in came:
                    came[e.upstream] = (node, e)
                    nxt.append(e.upstream)
        frontier = nxt
    return []


def dependents(graph: Dict[str, List[Edge]]) -> Dict[str, List[str]]:
    """The graph reversed: each task's direct dependents, in source order."""
    downstream: Dict[str, List[str]] = {name: [] for name in graph}
    for name, es in graph.items():
        for e in es:
            downstream[e.upstream].append(name)
    return downstream


def topological_order(graph: Dict[str, List[Edge]]) -> List[str]:
    """Tasks with every upstream first; ties keep source order. Assumes no cycle."""
    remaining = {name: len(es) for name, es in graph.items()}
    downstream = dependents(graph)
    ready = [name for name, n in remaining.items() if n == 0]
    order: List[str] = []
    i = 0
    while i < len(ready):
        name = ready[i]
        i += 1
        order.append(name)
        for d in downstream[name]:
            remaining[d] -= 1
            if remaining[d] == 0:
                ready.append(d)
    return order


def layers(graph: Dict[str, List[Edge]]) -> Dict[str, int]:
    """Each task's depth: 0 for tasks with no upstream, else 1 + the deepest upstream."""
    depth: Dict[str, int] = {}
    for name in topological_order(graph):
        depth[name] = 1 + max((depth[e.upstream] for e in graph[name]), default=-1)
    return depth


def upstream_closure(graph: Dict[str, List[Edge]], targets: Iterable[str]) -> Set[str]:
    """The targets and everything they need."""
    seen: Set[str] = set()
    stack = list(targets)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(e.upstream for e in graph[name])
    return seen


def downstream_closure(graph: Dict[str, List[Edge]], sources: Iterable[str]) -> Set[str]:
    """The given tasks and everything that depends on them."""
    downstream = dependents(graph)
    seen: Set[str] = set()
    stack = list(sources)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(downstream[name])
    return seen


# ---- the plan a run follows ----------------------------------------------------


@record
class TaskPlan:
    """One task with the pipeline's defaults applied (a task's statement wins whole)."""

    task: ir.Task
    settings: ir.Settings
    upstream: Tuple[str, ...]


@record
class Plan:
    program: ir.Program
    tasks: Dict[str, TaskPlan]  # the selected tasks, in topological order
    graph: Dict[str, List[Edge]]

    @property
    def order(self) -> List[str]:
        return list(self.tasks)


finish()


def effective(task: ir.Task, defaults: ir.Settings) -> ir.Settings:
    s = task.settings
    return ir.Settings(
        retry=s.retry or defaults.retry, timeout=s.timeout or defaults.timeout, when=s.when or defaults.when,
        output=s.output or defaults.output, cache=s.cache or defaults.cache, tags=s.tags or defaults.tags,
        resources=s.resources or defaults.resources, shell=s.shell or defaults.shell)


def split_instance(text: str) -> Tuple[str, Optional[int]]:
    """(`fetch`, 2) for `fetch[2]` (one instance of a foreach task); (text, None) for anything else."""
    import re

    m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\[([0-9]{1,9})\]", text)
    return (m.group(1), int(m.group(2))) if m else (text, None)


def target_instances(targets: Iterable[str]) -> Dict[str, Set[int]]:
    """The foreach tasks that `--target T[i]` limits to some of their instances (a task also given whole is not)."""
    whole = {t for t in targets if split_instance(t)[1] is None}
    out: Dict[str, Set[int]] = {}
    for t in targets:
        base, index = split_instance(t)
        if index is not None and base not in whole:
            out.setdefault(base, set()).add(index)
    return out


def make_plan(program: ir.Program, targets: Iterable[str] = (), from_: Iterable[str] = ()) -> Plan:
    """The tasks a run executes: all, or what `targets` need, or what depends on `from_`.

    A target may be one instance of a foreach task (`fetch[2]`): the plan holds the task and what it
    needs; the run limits it to that instance (target_instances).
    """
    graph = edges(program)
    selected: Optional[Set[str]] = None
    targets, from_ = [split_instance(t)[0] for t in targets], list(from_)
    if targets:
        selected = upstream_closure(graph, targets)
    if from_:
        down = downstream_closure(graph, from_)
        selected = down if selected is None else selected & down
    by_name = {t.name: t for t in program.tasks}
    tasks: Dict[str, TaskPlan] = {}
    for name in topological_order(graph):
        if selected is not None and name not in selected:
            continue
        task = by_name[name]
        tasks[name] = TaskPlan(task, effective(task, program.pipeline.defaults),
                               tuple(e.upstream for e in graph[name]))
    return Plan(program, tasks, graph)
