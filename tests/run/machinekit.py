"""The run machine in a test tube: a fake clock, a fake backend, no process, no sleep.

`Sim(flow_text, behave)` checks the pipeline, lowers it and drives a
`run.machine.Machine` the way run.driver does, except that time is a number
the loop moves forward to the next thing that happens. `behave(key, number)`
says what attempt `number` of instance `key` does: an `Act`. Results are
deterministic (the attempt's command or callable and its arguments), so two
runs can be compared.

Journal records are kept in a list (`sim.records`); `sim.resume()` makes the
next session from them, as the driver does from a replayed journal.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

from flowdsl import check
from flowdsl.lang import execplan, planner
from flowdsl.lang.values import Secrets, run_values
from flowdsl.run.actions import Maker, evaluate_params
from flowdsl.run.machine import Machine
from flowdsl.run.worker import Began, Outcome
from flowdsl.store import checkpoint, codec, state

EPOCH = 1_800_000_000.0


@dataclass
class Act:
    """What one attempt does: succeed or fail after `takes` seconds, or never end (`hang`)."""

    ok: bool = True
    takes: float = 1.0
    error: str = "RuntimeError"
    hang: bool = False
    obeys_interrupt: bool = True  # ends (Interrupted) when asked to stop
    result: Any = None  # default: the attempt's command or callable, with its arguments
    queue_for: float = 0.0  # a queueing backend: seconds before it starts on a worker


def ok(takes: float = 1.0, **kw) -> Act:
    return Act(True, takes, **kw)


def fail(takes: float = 1.0, error: str = "RuntimeError", **kw) -> Act:
    return Act(False, takes, error, **kw)


def hang(**kw) -> Act:
    return Act(True, 0.0, hang=True, **kw)


def always(act: Act) -> Callable[[str, int], Act]:
    return lambda key, number: act


def script(plan: Dict[str, List[Act]], default: Optional[Act] = None) -> Callable[[str, int], Act]:
    """Attempt n of `key` does plan[key][n-1] (its last entry after that); other keys do `default` (ok)."""
    def behave(key: str, number: int) -> Act:
        acts = plan.get(key) or plan.get(key.split("[", 1)[0])
        if not acts:
            return default or ok()
        return acts[min(number, len(acts)) - 1]
    return behave


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return EPOCH + self.t


class Calls:
    """A reporter that remembers what it was told."""

    refresh = 1.0

    def __init__(self) -> None:
        self.calls: List[Tuple] = []

    def __getattr__(self, name: str):
        return lambda *args: self.calls.append((name,) + args)

    def of(self, name: str) -> List[Tuple]:
        return [c[1:] for c in self.calls if c[0] == name]


class FakeCache:
    def __init__(self) -> None:
        self.entries: Dict[str, Dict[str, Any]] = {}

    def get(self, fp: str, ttl: Optional[float]) -> Optional[Dict[str, Any]]:
        return self.entries.get(fp)

    def put(self, fp: str, result: Optional[bytes], run_id: str, task: str) -> None:
        self.entries[fp] = {"t": 0, "run": run_id, "task": task, "result": result}


class FakeBackend:
    """Attempts as entries with a start and an end time; the Sim's loop hands them back when the clock gets there."""

    def __init__(self, clock: FakeClock, behave, queues: bool = False) -> None:
        self.clock = clock
        self.behave = behave
        self.queues = queues
        self.running: Dict[str, List[Any]] = {}  # key -> [attempt, act, begins, ends, began told]
        self.submitted: List[Any] = []
        self.killed: List[str] = []
        self.interrupts = 0

    def submit(self, attempt) -> None:
        # a sensor's check: behave(key, number, sensor=True) may answer "not yet" (an Act failing with NotYet)
        act = self.behave(attempt.key, attempt.number, True) if attempt.sensor else \
            self.behave(attempt.key, attempt.number)
        self.submitted.append(attempt)
        begins = self.clock.now() + (act.queue_for if self.queues else 0.0)
        ends = None if act.hang else begins + act.takes
        self.running[attempt.key] = [attempt, act, begins, ends, not self.queues]

    def kill(self, key: str) -> None:
        self.killed.append(key)
        self.running.pop(key, None)

    def interrupt(self) -> None:
        self.interrupts += 1
        now = self.clock.now()
        for entry in self.running.values():
            if entry[1].obeys_interrupt:
                entry[1] = Act(False, 0.0, "Interrupted")
                entry[3] = max(now, entry[2]) + 0.1

    def next_event(self) -> Optional[float]:
        times = [e[3] if e[4] else e[2] for e in self.running.values()]
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def collect(self) -> List[Any]:
        """What has happened by now: Began and Outcome items, in time order."""
        now = self.clock.now()
        events = []
        for key, e in list(self.running.items()):
            attempt, act, begins, ends, told = e
            if not told and begins <= now:
                events.append((begins, 0, Began(key, attempt.number, EPOCH + begins)))
                e[4] = told = True
            if told and ends is not None and ends <= now:
                del self.running[key]
                events.append((ends, 1, outcome(attempt, act, EPOCH + begins, EPOCH + ends)))
        return [item for _, _, item in sorted(events, key=lambda x: (x[0], x[1]))]


def outcome(attempt, act: Act, started: float, finished: float) -> Outcome:
    if act.ok:
        value = act.result if act.result is not None else result_of(attempt)
        return Outcome(attempt.key, attempt.number, True, result=codec.encode_result(value, "msgpack"),
                       started=started, finished=finished)
    error = {"type": act.error, "message": f"{attempt.key} failed", "traceback": "", "names": [act.error, "Exception"]}
    return Outcome(attempt.key, attempt.number, False, error=error, started=started, finished=finished)


def result_of(attempt) -> Any:
    """What an attempt computes: a function of what it was given, so equal inputs give equal results."""
    return {"did": attempt.target or list(attempt.argv), "with": attempt.kwargs or {}}


class Sim:
    def __init__(self, flow_text: str, behave=None, *, targets=(), from_=(), queues: bool = False,
                 uniform=None, run_id: str = "p-20270101T000000000-0000") -> None:
        self.folder = tempfile.mkdtemp(prefix="flow-machine-")
        self.path = os.path.join(self.folder, "p.flow")
        with open(self.path, "w") as f:
            f.write(textwrap.dedent(flow_text))
        loaded = check(self.path)
        errors = [d for d in loaded.diagnostics if d.severity == "error"]
        assert not errors, "\n".join(map(str, errors))
        self.program = loaded.program
        pplan = planner.make_plan(self.program, targets)
        self.forced = planner.downstream_closure(pplan.graph, from_) & set(pplan.tasks) if from_ else set()
        self.plan = execplan.lower(pplan)
        self.behave = behave or always(ok())
        self.queues = queues
        self.uniform = uniform
        self.run_id = run_id
        self.records: List[Dict[str, Any]] = []
        self.cache = FakeCache()
        self.sessions = 0
        self.state: Optional[state.RunState] = None

    # ---- one session ------------------------------------------------------------------

    def session(self, earlier: Optional[state.RunState] = None, earlier_id: Optional[str] = None,
                behave=None, stop_at: Optional[float] = None, signals: Tuple[Tuple[float, str], ...] = ()):
        """A new run (or, once there are records, a resume of it) driven to its end; returns the Machine.

        `signals`: (time, name) pairs, delivered when the clock passes them.
        `stop_at`: end the session there without finishing (the process died).
        """
        self.clock = clock = FakeClock()
        self.backend = backend = FakeBackend(clock, behave or self.behave, self.queues)
        self.reporter = Calls()
        resuming = bool(self.records)
        if resuming:
            run = state.RunState()
            for r in self.records:
                run.apply(r)
            previous = checkpoint.Previous(self.run_id, run, self.forced, earlier_id, earlier)
            resumed = run.status
            self.append({"e": "resume", "t": clock.wall(), "pid": 1, "tasks": list(self.plan.tasks),
                         "forced": sorted(self.forced)}, run=run)
        else:
            run = state.RunState()
            previous = checkpoint.Previous(forced=self.forced, earlier_id=earlier_id, earlier=earlier)
            resumed = None
            self.append({"e": "run", "v": 1, "run_id": self.run_id, "pipeline": self.plan.pipeline,
                         "file": self.path, "params": {}, "logical_date": "2027-01-01T00:00:00+00:00",
                         "trigger": "manual", "t": clock.wall(), "pid": 1, "targets": [],
                         "tasks": list(self.plan.tasks), "results": "msgpack", "executor": "process"}, run=run)
        self.state = run
        self.sessions += 1
        values = run_values(self.run_id, self.plan.pipeline, dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc),
                            "manual")
        secrets = Secrets()
        params = evaluate_params(self.plan, {}, values, secrets)
        maker = Maker(self.plan, run, values, params, secrets, os.path.join(self.folder, "run"))
        fps = checkpoint.Fingerprints(self.plan.source.tasks, self.plan.sys_path)
        kw = {"uniform": self.uniform} if self.uniform else {}
        self.machine = m = Machine(self.plan, run, previous, maker, fps, self.cache, self, self.reporter, clock,
                                   queues=self.queues, resumed=resumed, **kw)
        pending = sorted(signals)
        m.begin()
        steps = 0
        while not m.done:
            steps += 1
            assert steps < 100_000, "the machine does not finish"
            if m.kept_keys:
                m.flush_keeps()
            times = [t for t in (m.next_wake(), backend.next_event()) if t is not None]
            if pending:
                times.append(pending[0][0])
            if stop_at is not None:
                times.append(stop_at)
            assert times, "the machine waits for nothing: it would hang"
            clock.t = max(clock.t, min(times))
            if stop_at is not None and clock.t >= stop_at:
                return m
            for item in backend.collect():
                (m.began if isinstance(item, Began) else m.ended)(item)
            while pending and pending[0][0] <= clock.t:
                m.signalled(pending.pop(0)[1])
            m.timers()
        if m.kept_keys:
            m.flush_keeps()
        return m

    # ---- the machine's effects ------------------------------------------------------------

    def append(self, r: Dict[str, Any], sync: bool = False, run: Optional[state.RunState] = None) -> None:
        self.records.append(r)
        if run is not None:
            run.apply(r)

    def submit(self, attempt) -> None:
        self.backend.submit(attempt)

    def kill(self, key: str) -> None:
        self.backend.kill(key)

    def interrupt(self) -> None:
        self.backend.interrupt()

    def to_hooks(self) -> None:
        pass  # hooks on the same fake backend

    # ---- reading what happened --------------------------------------------------------------

    def starts(self, key: Optional[str] = None, session: Optional[int] = None) -> List[Dict[str, Any]]:
        out, s = [], 1
        for r in self.records:
            if r["e"] == "resume":
                s += 1
            if r["e"] == "start" and (key is None or r["task"] == key) and (session is None or s == session):
                out.append(r)
        return out

    def start_times(self, key: str) -> List[float]:
        return [round(r["t"] - EPOCH, 6) for r in self.starts(key)]

    def report(self) -> Dict[str, Any]:
        return self.state.report()

    def statuses(self) -> Dict[str, str]:
        return {k: v["status"] for k, v in self.report()["tasks"].items()}
