"""What the HTML run report shows, as JSON-ready data: tasks by stage, every attempt, the critical path.

Everything comes from the run's journal (through `RunState.apply`, see
`store/attempts.py`) and its log files; the pipeline file is read only for
the edges between tasks, and only if it still loads (a run outlives edits to
its file: tasks the file no longer names are drawn without edges). Secrets
never reach the page: the journal's errors, params and results, and the
attempts' logs, were masked before they were written.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Tuple

from ..store import attempts as attempt_log
from ..store import journal, state

LOG_TAIL = 2000  # characters of each attempt's log kept on the page
STATES = ("success", "failed", "skipped", "cached", "kept", "running", "queued", "waiting", "pending")


def page_data(folder: str, now: Optional[float] = None) -> Dict[str, Any]:
    """The page's data for the run kept in `folder`. Raises journal.JournalError."""
    try:
        run, tries, last = attempt_log.read_attempts(folder)
    except journal.JournalError as e:
        if str(e).endswith("(the run never started)"):
            raise journal.never_started(state.journal_path(folder)) from None
        raise
    info = run.info
    names = [n for n in info.get("tasks", ()) if "[" not in n] or [k for k in run.tasks if "[" not in k]
    graph = _edges(_pipeline_file(info.get("file"), folder), names, folder, info.get("targets") or ())
    t0 = info.get("t") or 0.0
    end = (now or time.time()) if run.status == "running" else (run.finished or last or t0)
    rows, tasks = [], []
    for name in names:
        keys = run.instances.get(name, [])
        own = run.aggregate(name) if keys else run.tasks.get(name, state.TaskState())
        tasks.append({"name": name, "state": _state(own), "up": graph.get(name, []), "instances": keys})
        for key in [name] + keys:
            s = own if key == name else run.tasks.get(key, state.TaskState())
            rows.append(_row(folder, key, s, tries.get(key, []) if key != name or not keys else [], t0))
    layers, order = _layout(names, graph)
    for t in tasks:
        t["layer"] = layers[t["name"]]
    critical = _critical_path(tasks, {r["key"]: r for r in rows})
    counts: Dict[str, int] = {}
    for r in rows:
        if r["key"] not in run.instances:  # a foreach task counts by its instances
            counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {
        "run_id": info.get("run_id"), "pipeline": info.get("pipeline"), "file": info.get("file"),
        "status": run.status, "reason": run.reason, "trigger": info.get("trigger"),
        "logical_date": info.get("logical_date"), "started_at": state.iso(t0),
        "finished_at": state.iso(run.finished), "span": max(end - t0, 0.001), "t0": t0,
        "generated_at": state.iso(now or time.time()), "params": info.get("params", {}),
        "executor": info.get("executor"), "hooks": run.hooks, "tasks": tasks, "order": order,
        "rows": rows, "critical": critical, "counts": counts, "edges_known": bool(graph) or len(names) <= 1,
    }


def task_states(run: state.RunState) -> Dict[str, str]:
    """Each task's state in the run (a foreach task's from its instances), as the page colours it."""
    out = {}
    for name in [n for n in run.info.get("tasks", ()) if "[" not in n] or [k for k in run.tasks if "[" not in k]:
        s = run.aggregate(name) if name in run.instances else run.tasks.get(name, state.TaskState())
        out[name] = _state(s)
    return out


def _state(s: state.TaskState) -> str:
    if s.reused and s.status in ("success", "cached"):
        return "kept"
    return s.status if s.status in STATES else "pending"


def _row(folder: str, key: str, s: state.TaskState, found: List[attempt_log.AttemptRecord],
         t0: float) -> Dict[str, Any]:
    bars = []
    for a in found:
        bar = {"n": a.number, "start": round(a.started - t0, 4), "end": round((a.finished or a.started) - t0, 4),
               "status": a.status, "cpu": a.cpu, "session": a.session,
               "log": _tail(state.log_path(folder, key, a.number))}
        if a.error:
            bar["error"] = {"type": a.error.get("type"), "message": a.error.get("message"),
                            "traceback": a.error.get("traceback")}
        if a.retry_at:
            bar["retry_at"] = round(a.retry_at - t0, 4)
        bars.append(bar)
    row = {"key": key, "state": _state(s), "attempts": s.attempts, "bars": bars,
           "start": None if s.started is None else round(s.started - t0, 4),
           "end": None if s.finished is None else round(s.finished - t0, 4),
           "duration": round(s.finished - s.started, 4) if s.started and s.finished else None}
    if s.error:
        row["error"] = {"type": s.error.get("type"), "message": s.error.get("message"),
                        "traceback": s.error.get("traceback")}
    row.update(s.notes())
    return row


def _tail(path: str) -> Optional[str]:
    try:  # never through a link planted in the state folder (its target would be on the page)
        with os.fdopen(state.open_file(path, os.O_RDONLY), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - LOG_TAIL))
            data = f.read()
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    return ("…" + text[text.find("\n") + 1:] if size > LOG_TAIL and "\n" in text else text) or None


def _pipeline_file(path: Optional[str], folder: str) -> Optional[str]:
    """The run's file as it was named (relative to where the run started), else beside the state folder."""
    if not path or os.path.isabs(path) or os.path.isfile(path):
        return path
    beside = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(folder))))  # <state>/runs/<id>
    for candidate in (os.path.join(beside, path), os.path.join(beside, os.path.basename(path))):
        if os.path.isfile(candidate):
            return candidate
    return path


def _edges(path: Optional[str], names: List[str], folder: str, targets) -> Dict[str, List[List[str]]]:
    """Each task's upstream tasks as [name, kind], from the pipeline file if it still loads.

    The run cached its checked program in the state folder (store/ircache.py),
    which saves parsing the file again: half the time of a 10,000-task page.
    """
    if not path or not os.path.isfile(path):
        return {}
    from ..lang.loader import Loader
    from ..lang.planner import edges
    from ..store import ircache

    state_root = os.path.dirname(os.path.dirname(os.path.abspath(folder)))  # <state>/runs/<run_id>
    try:
        loaded = ircache.load(ircache.folder(state_root), path, list(targets)) or Loader().load(path)
    except Exception:  # a file changed beyond reading since the run: draw without edges
        return {}
    if loaded.program is None:
        return {}
    known = set(names)
    try:
        graph = edges(loaded.program)
    except Exception:
        return {}
    return {n: [[e.upstream, e.kind] for e in es if e.upstream in known] for n, es in graph.items() if n in known}


def _layout(names: List[str], graph: Dict[str, List[List[str]]]) -> Tuple[Dict[str, int], List[List[str]]]:
    """(each task's stage, the tasks of each stage in drawing order).

    A stage is the depth of the longest chain of upstreams; within a stage,
    tasks sit near the mean position of their upstreams (one pass of the
    barycentre heuristic), which keeps most edges short without a layout engine.
    """
    layer: Dict[str, int] = {}
    visiting = set()

    def depth(name: str) -> int:
        # iterative deepening would be overkill: chains are checked acyclic, and a
        # cycle from an edited file only stops at the name being visited
        stack = [(name, iter(u for u, _ in graph.get(name, ())))]
        visiting.add(name)
        while stack:
            node, ups = stack[-1]
            pushed = False
            for u in ups:
                if u not in layer and u not in visiting:
                    visiting.add(u)
                    stack.append((u, iter(x for x, _ in graph.get(u, ()))))
                    pushed = True
                    break
            if not pushed:
                stack.pop()
                layer[node] = 1 + max((layer.get(u, -1) for u, _ in graph.get(node, ())), default=-1)
        return layer[name]

    for n in names:
        if n not in layer:
            depth(n)
    stages: List[List[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for n in names:
        stages[layer[n]].append(n)
    position: Dict[str, float] = {}
    for stage in stages:
        keyed = {}
        for i, n in enumerate(stage):
            ups = [position[u] for u, _ in graph.get(n, ()) if u in position]
            keyed[n] = sum(ups) / len(ups) if ups else i / len(stage)
        stage.sort(key=keyed.__getitem__)  # stable: ties keep source order
        for i, n in enumerate(stage):
            position[n] = i / len(stage)
    return layer, stages


def _critical_path(tasks: List[Dict[str, Any]], rows: Dict[str, Dict[str, Any]]) -> List[str]:
    """The chain of tasks that set the run's length, last first reversed to run order.

    From the task that finished last, step to the upstream that finished last
    before it started (the one it waited for), until a task waited for none.
    """
    ends = {t["name"]: rows[t["name"]]["end"] for t in tasks if rows[t["name"]]["end"] is not None}
    if not ends:
        return []
    ups = {t["name"]: [u for u, _ in t["up"]] for t in tasks}
    current: Optional[str] = max(ends, key=lambda n: ends[n])
    path: List[str] = []
    while current is not None and current not in path:
        path.append(current)
        start = rows[current]["start"]
        gating = [u for u in ups.get(current, ()) if u in ends and (start is None or ends[u] <= start + 0.05)]
        current = max(gating, key=lambda u: ends[u]) if gating else None
    return path[::-1]
