"""The run machine: every decision of a run, and no I/O.

It is fed events, each method one event: the run begins (a resumed run's
journal already replayed into its RunState), an attempt began or ended, time
passed, a signal came, the run must fail (its journal cannot be written, its
cluster is gone). It answers with commands through three ports it is given:

    effects   append a record, submit an attempt, kill one, interrupt all,
              move on to the hooks' backend (the driver: run.driver)
    reporter  what the user is told (run.progress)
    clock     now() for deadlines (monotonic), wall() for records

It never reads a clock of its own, a journal or a process, so its tests
(tests/run/test_machine.py) drive it with a fake clock and a fake backend in
microseconds, and the driver stays a thin loop.

Every state change goes through `record`: the record is appended to the
journal and applied to the RunState by `RunState.apply`, the one reducer of
records; so a resumed run is this machine fed its journal.

Tasks, the abort of a stopping run and the hooks are phases of one machine,
under the same deadlines: an attempt's timeout, the grace a stopping run
gives its attempts, the run's timeout (which hooks obey too).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from dataclasses import replace
from typing import Any, Deque, Dict, List, Optional, Tuple

from ..lang.execplan import ExecPlan, HookSpec, TaskSpec
from ..lang.values import EvalError
from ..store import checkpoint, codec, failures, state
from .actions import Maker
from .worker import Began, Outcome

INTERRUPT_GRACE = 5.0  # seconds running attempts get to stop (and call on_abort) when the run stops
HOOK_GRACE = 30.0  # a hook that starts after the run's timeout passed (a failure alert) gets this long
BIG_RESULT = 64 << 20  # bytes of an encoded result past which the run says to pass a path instead

TASKS, STOPPING, HOOKS, DONE = "tasks", "stopping", "hooks", "done"
SKIP = "flowdsl.cli.api.Skip"  # what `flowdsl.Skip` is, among a failure's class names

# records that mean this session did something (a session of only `keep`s changed nothing)
_WORK = frozenset(("start", "end", "skip", "reuse"))


class Inst:
    """One schedulable unit: a task, or one instance of a foreach task."""

    __slots__ = ("key", "name", "item", "has_item", "attempt", "base", "fp", "began", "wait_until", "waiting")

    def __init__(self, key: str, name: str, item: Any = None, has_item: bool = False, attempt: int = 0) -> None:
        self.key = key
        self.name = name
        self.item = item
        self.has_item = has_item
        self.attempt = attempt  # the last attempt's number
        self.base = attempt  # attempts made in earlier sessions of this run
        self.fp = ""
        self.began = False
        self.wait_until: Optional[float] = None  # a sensor's deadline (its `timeout`), clock.now() time
        self.waiting = False  # a sensor between checks: its next check writes no `start` record


class RunningHook:
    __slots__ = ("spec", "number", "deadline")

    def __init__(self, spec: HookSpec, number: int, deadline: Optional[float]) -> None:
        self.spec = spec
        self.number = number
        self.deadline = deadline


class Machine:
    def __init__(self, plan: ExecPlan, run_state: state.RunState, previous: checkpoint.Previous, maker: Maker,
                 fingerprints, cache, effects, reporter, clock, *, capacity: Optional[int] = None,
                 queues: bool = False, resumed: Optional[str] = None, hook_numbers: Optional[Dict[str, int]] = None,
                 uniform=random.uniform) -> None:
        self.plan = plan
        self.tasks = plan.tasks
        self.state = run_state
        self.previous = previous
        self.maker = maker
        self.fingerprints = fingerprints
        self.cache = cache  # checkpoint.ResultCache, or a test's stand-in
        self.effects = effects
        self.reporter = reporter
        self.clock = clock
        self.capacity = capacity or plan.capacity
        self.queues = queues  # the backend queues attempts: each is `queued` until its Began
        self.resumed = resumed  # the status the session before ended with (a resume)
        self.uniform = uniform
        self.run_id = maker.run_values["id"]
        self.phase = TASKS
        self.status: Optional[str] = None
        self.remaining = {name: len(spec.upstream) for name, spec in plan.tasks.items()}
        self.open_instances: Dict[str, int] = {}
        self.completed: set = set()
        self.finals: Deque[str] = deque()  # tasks whose instances are all final, to release in order
        self.releasing = False
        self.settled: Dict[str, int] = {}  # task -> the newest record of its final state (state.settled_seq)
        self.ready: Deque[Inst] = deque()
        self.retries: List[Tuple[float, int, Inst]] = []  # (due, tie-break, instance)
        self.running: Dict[str, Inst] = {}
        self.deadlines: Dict[str, float] = {}
        self.run_deadline: Optional[float] = None
        self.abort_deadline: Optional[float] = None
        self.stop_reason: Optional[str] = None
        self.failed_run = False  # the journal failed, or the cluster could not be had: the run fails
        self.start_error: Optional[Dict[str, str]] = None
        self.backend_lost = False  # the cluster went away mid-run: the run is interrupted
        self.signals = 0
        self.ties = 0  # retries due at the same instant keep their order
        self.kept_keys: List[str] = []
        self.worked = False
        self.pending_hooks: Deque[HookSpec] = deque()
        self.hook: Optional[RunningHook] = None
        self.hook_numbers: Dict[str, int] = dict(hook_numbers or {})  # hook key -> its last log's number

    # ---- events ---------------------------------------------------------------------

    def begin(self) -> None:
        """The run starts (or a resumed one continues): release every task with no upstream."""
        if self.plan.run_timeout:
            self.run_deadline = self.clock.now() + self.plan.run_timeout
        for name in [n for n, count in self.remaining.items() if count == 0]:
            self.become_ready(name)
        self.advance()

    def began(self, b: Began) -> None:
        """A queued attempt started on a worker: its timeout counts from now."""
        inst = self.running.get(b.key)
        if inst is None or inst.attempt != b.number or inst.began:
            return
        inst.began = True
        record = {"e": "began", "task": b.key, "n": b.number, "t": b.t}
        if b.worker is not None:
            record["w"] = b.worker
        self.record(record)
        self.reporter.started(b.key, b.number)
        timeout = self.tasks[inst.name].timeout
        if self.tasks[inst.name].action.kind == "wait":
            if inst.wait_until is not None:
                self.deadlines[b.key] = inst.wait_until  # a sensor's timeout bounds the whole wait
        elif timeout is not None:
            lag = max(0.0, self.clock.wall() - b.t)  # the news took this long to come
            self.deadlines[b.key] = self.clock.now() - lag + timeout
        self.advance()

    def ended(self, o: Outcome) -> None:
        """An attempt (a task's or a hook's) ended: succeeded, failed, timed out in its worker, or was lost."""
        if self.phase == HOOKS:
            if self.hook is not None and o.key == self.hook.spec.key and o.number == self.hook.number:
                self.hook_ended(o)
        else:
            self.task_ended(o)
        self.advance()

    def timers(self) -> None:
        """Time passed: deadlines of attempts, of the run, of a stopping run's grace, of a hook."""
        if self.phase == TASKS and not self.deadlines and self.run_deadline is None:
            return self.advance()  # nothing is timed: only retries may be due
        now = self.clock.now()
        if self.phase in (TASKS, STOPPING):
            if self.run_deadline is not None and now >= self.run_deadline and self.stop_reason is None:
                self.stop(f"the run's timeout ({self.plan.run_timeout_text}) passed")
            for key, deadline in list(self.deadlines.items()):
                if now >= deadline and key in self.deadlines:
                    self.expire(key)
            if self.phase == STOPPING and self.abort_deadline is not None and now >= self.abort_deadline:
                self.kill_all()
        elif self.phase == HOOKS and self.hook is not None and self.hook.deadline is not None \
                and now >= self.hook.deadline:
            hook = self.hook
            self.effects.kill(hook.spec.key)
            message = self.hook_timeout_message()
            self.hook_ended(self.stopped_outcome(hook.spec.key, hook.number, failures.TIMEOUT, message))
        self.advance()

    def signalled(self, name: str) -> None:
        """SIGINT or SIGTERM: the first stops the run (attempts get a grace), the second ends it now."""
        self.signals += 1
        if self.phase == TASKS:
            self.stop(f"interrupted by {name}")
        elif self.phase == STOPPING:
            if self.stop_reason is None:
                self.stop_reason = f"interrupted by {name}"
            if self.signals >= 2:
                self.kill_all()
        elif self.phase == HOOKS and self.signals >= 2 and self.hook is not None:
            hook = self.hook
            self.effects.kill(hook.spec.key)
            self.pending_hooks.clear()
            self.hook_ended(self.stopped_outcome(hook.spec.key, hook.number, failures.INTERRUPTED,
                                                 f"stopped by {name}"))
        self.advance()

    def lost(self, reason: str) -> None:
        """The backend can run nothing more (its cluster is gone): the run stops, interrupted and
        resumable; what was running ends as interrupted, spending no retry."""
        self.backend_lost = True
        self.stop(reason)
        self.advance()

    def fail(self, reason: str, cannot_start: bool = False) -> None:
        """The run cannot go on (its journal cannot be written, its cluster cannot be had): it fails, resumable.

        `cannot_start`: it never could (a secret unset, a cluster unreachable), which its `done` record
        keeps as the run's error.
        """
        self.failed_run = True
        if cannot_start:
            self.start_error = {"type": "CannotStart", "message": reason, "traceback": ""}
        self.stop(reason)
        self.advance()

    def next_wake(self) -> Optional[float]:
        """When `timers` has something to do (clock.now() time), or None."""
        if self.phase == TASKS and not self.deadlines and not self.retries and self.run_deadline is None:
            return None  # the common case, kept cheap: one turn a task
        times: List[float] = []
        if self.phase in (TASKS, STOPPING):
            if self.deadlines:
                times.append(min(self.deadlines.values()))
            if self.retries and self.stop_reason is None:
                times.append(self.retries[0][0])
            if self.run_deadline is not None and self.stop_reason is None:
                times.append(self.run_deadline)
            if self.phase == STOPPING and self.abort_deadline is not None:
                times.append(self.abort_deadline)
        elif self.phase == HOOKS and self.hook is not None and self.hook.deadline is not None:
            times.append(self.hook.deadline)
        return min(times) if times else None

    @property
    def done(self) -> bool:
        return self.phase == DONE

    # ---- moving on --------------------------------------------------------------------

    def advance(self) -> None:
        """Start what may start; end a phase whose work is over."""
        if self.phase == TASKS:
            if self.retries:
                now = self.clock.now()
                while self.retries and self.retries[0][0] <= now:
                    self.ready.append(heapq.heappop(self.retries)[2])
            if self.stop_reason is None:
                while self.ready and len(self.running) < self.capacity:
                    self.start(self.ready.popleft())
            if not self.running and (self.stop_reason is not None or (not self.ready and not self.retries)):
                self.end_tasks()
        elif self.phase == STOPPING and not self.running:
            self.end_tasks()
        if self.phase == HOOKS and self.hook is None:
            self.next_hook()

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.phase == TASKS:
            self.reporter.stopping(self.stop_reason)
            self.stop_waiting()
            if self.running:
                self.phase = STOPPING
                self.abort_deadline = self.clock.now() + INTERRUPT_GRACE
                self.effects.interrupt()

    def stop_waiting(self) -> None:
        """Sensors between checks end interrupted: pending, so that a resumed run waits again."""
        waiting = [inst for _, _, inst in sorted(self.retries, key=lambda entry: entry[1]) if inst.waiting]
        waiting += [inst for inst in self.ready if inst.waiting]
        if not waiting:
            return
        self.retries = [entry for entry in self.retries if not entry[2].waiting]
        heapq.heapify(self.retries)
        self.ready = deque(inst for inst in self.ready if not inst.waiting)
        for inst in waiting:
            inst.waiting = False
            error = failures.error(failures.INTERRUPTED, "stopped while waiting")
            self.record({"e": "end", "task": inst.key, "n": inst.attempt, "t": self.clock.wall(),
                         "status": "interrupted", "error": error})
            self.reporter.ended(inst.key, inst.attempt, "interrupted", 0.0, error, None)

    def kill_all(self) -> None:
        """The grace is over: what still runs is killed and recorded as interrupted."""
        for key, inst in list(self.running.items()):
            self.effects.kill(key)
            message = "stopped when the run was interrupted"
            self.task_ended(self.stopped_outcome(key, inst.attempt, failures.INTERRUPTED, message))

    def expire(self, key: str) -> None:
        inst = self.running.get(key)
        self.deadlines.pop(key, None)
        self.effects.kill(key)
        if inst is not None:
            spec = self.tasks[inst.name]
            if spec.action.kind == "wait":  # the whole wait's time is over, in the middle of a check
                del self.running[key]
                return self.wait_timed_out(inst, spec)
            self.task_ended(self.stopped_outcome(key, inst.attempt, failures.TIMEOUT,
                                                 f"timed out after {spec.timeout_text}"))

    def stopped_outcome(self, key: str, number: int, kind: str, message: str) -> Outcome:
        t = self.clock.wall()
        return Outcome(key, number, False, error={"type": kind, "message": message, "traceback": ""},
                       started=t, finished=t)

    # ---- a task becomes ready -------------------------------------------------------------

    def task_status(self, name: str) -> str:
        st = self.state
        return (st.aggregate(name) if name in st.instances else st.tasks[name]).status

    def become_ready(self, name: str) -> None:
        if self.stop_reason is not None:
            return  # a stopping run decides nothing more: what is left stays pending, for a resume
        spec = self.tasks[name]
        states = {u: self.task_status(u) for u in spec.upstream}
        failed = [u for u, s in states.items() if s == "failed"]
        when = spec.when
        if when == "success" and any(s not in state.SUCCEEDED for s in states.values()):
            bad = failed or [u for u, s in states.items() if s not in state.SUCCEEDED]
            verb = "failed" if failed else "did not succeed"
            return self.skip(name, f"upstream {', '.join(bad)} {verb}")
        if when == "failure" and not failed:
            return self.skip(name, "no upstream failed (when failure)")
        if when == "none_failed" and failed:
            return self.skip(name, f"upstream {', '.join(failed)} failed (when none_failed)")
        if spec.condition is not None and spec.foreach_items is None:
            try:
                holds = self.maker.condition(spec)
            except EvalError as e:
                return self.fail_without_attempt(name, name, e)
            if not holds:
                return self.skip(name, f"condition false: {spec.condition_text}")
        attempts = self.previous.attempts
        if spec.foreach_items is None:
            self.open_instances[name] = 1
            self.ready.append(Inst(name, name, attempt=attempts.get(name, 0)))
            return
        try:
            items = self.maker.foreach_items(spec)
        except EvalError as e:
            return self.fail_without_attempt(name, name, e)
        self.record({"e": "expand", "task": name, "count": len(items)})
        self.reporter.expanded(name, len(items))
        if not items:
            return self.complete(name)
        self.open_instances[name] = len(items)
        only = spec.only
        if only is not None and not any(i < len(items) for i in only):
            self.reporter.note(f"{name} has {len(items)} instance{'s' * (len(items) != 1)}: the --target "
                               + ", ".join(f"{name}[{i}]" for i in sorted(only)) + " names none of them")
        for i, item in enumerate(items):
            key = f"{name}[{i}]"
            if only is None or i in only:
                self.ready.append(Inst(key, name, item, True, attempts.get(key, 0)))
        if only is not None:  # `--target T[i]`: the other instances do not run
            for i in range(len(items)):
                if i not in only:
                    key = f"{name}[{i}]"
                    self.record({"e": "skip", "task": key, "t": self.clock.wall(), "reason": "not a --target"})
                    self.reporter.skipped(key, "not a --target")
                    self.instance_done(name)

    def skip(self, name: str, reason: str) -> None:
        self.record({"e": "skip", "task": name, "t": self.clock.wall(), "reason": reason})
        self.reporter.skipped(name, reason)
        self.complete(name)

    def instance_done(self, name: str) -> None:
        """One instance (of a foreach task, or the task itself) is final."""
        left = self.open_instances[name] - 1
        self.open_instances[name] = left
        if left == 0:
            self.complete(name)

    def complete(self, name: str) -> None:
        """A task (every instance of it) is final: publish its result, release its dependents.

        Releasing may skip a dependent, which completes it in turn: a queue,
        not recursion, so a long chain of skips cannot overflow the stack.
        """
        if name in self.completed:
            raise AssertionError(f"task {name} completed twice")
        self.completed.add(name)
        self.finals.append(name)
        if self.releasing:
            return
        self.releasing = True
        try:
            while self.finals:
                done = self.finals.popleft()
                if self.task_status(done) in state.SUCCEEDED:
                    self.maker.results.publish(done)
                for d in self.tasks[done].downstream:
                    self.remaining[d] -= 1
                    if self.remaining[d] == 0:
                        self.become_ready(d)
        finally:
            self.releasing = False

    # ---- attempts ----------------------------------------------------------------------

    def start(self, inst: Inst) -> None:
        spec = self.tasks[inst.name]
        if inst.key in self.previous.marked_skips and inst.attempt == inst.base and inst.name not in \
                self.previous.forced and inst.key not in self.previous.forced:  # `flow mark ... skipped`: it stays so
            self.kept_keys.append(inst.key)
            self.reporter.skipped(inst.key, "marked skipped by hand")
            return self.instance_done(inst.name)
        if inst.waiting:
            return self.check_again(inst, spec)
        if spec.condition is not None and inst.has_item and inst.attempt == inst.base:
            try:
                holds = self.maker.condition(spec, inst.item, True)
            except EvalError as e:
                return self.fail_without_attempt(inst.key, inst.name, e)
            if not holds:  # this instance is skipped; its result is null
                self.record({"e": "skip", "task": inst.key, "t": self.clock.wall(),
                             "reason": f"condition false: {spec.condition_text}"})
                self.reporter.skipped(inst.key, f"condition false: {spec.condition_text}")
                return self.instance_done(inst.name)
        inst.attempt += 1
        try:
            child = self.state.tasks[inst.key].child if spec.action.kind == "call" else None  # one to resume
            attempt = self.maker.task(spec, inst.key, inst.attempt, inst.item, inst.has_item, child)
        except EvalError as e:
            return self.fail_without_attempt(inst.key, inst.name, e)
        inst.fp = self.fingerprints.of(inst.name, attempt.kind, attempt.target, attempt.argv, attempt.env,
                                       attempt.kwargs, attempt.results == "pickle")
        if inst.attempt == inst.base + 1 and (self.keep(inst, spec) or self.from_cache(inst, spec)):
            inst.attempt -= 1
            return self.instance_done(inst.name)
        record = {"e": "start", "task": inst.key, "n": inst.attempt, "t": self.clock.wall(), "fp": inst.fp}
        if self.queues:
            record["q"] = 1
        if attempt.child:
            record["child"] = attempt.child
        self.record(record)
        self.running[inst.key] = inst
        sensor = spec.action.kind == "wait"
        if sensor and inst.wait_until is None and spec.timeout is not None:
            inst.wait_until = self.clock.now() + spec.timeout  # `timeout` bounds the whole wait
        if not self.queues:
            inst.began = True
            if sensor:
                if inst.wait_until is not None:
                    self.deadlines[inst.key] = inst.wait_until
            elif spec.timeout is not None:
                self.deadlines[inst.key] = self.clock.now() + spec.timeout
            self.reporter.started(inst.key, inst.attempt)
        self.effects.submit(attempt)

    # ---- sensors (`wait`) ---------------------------------------------------------------

    def check_again(self, inst: Inst, spec: TaskSpec) -> None:
        """A sensor's next check: the same attempt, submitted again; nothing is journaled until it says."""
        if inst.wait_until is not None and self.clock.now() >= inst.wait_until:
            return self.wait_timed_out(inst, spec)
        try:
            attempt = replace(self.maker.task(spec, inst.key, inst.attempt, inst.item, inst.has_item),
                              check=self.state.tasks[inst.key].checks)
        except EvalError as e:
            inst.waiting = False
            return self.fail_without_attempt(inst.key, inst.name, e)
        inst.waiting = False
        inst.began = not self.queues
        self.running[inst.key] = inst
        if inst.wait_until is not None:
            self.deadlines[inst.key] = inst.wait_until
        self.effects.submit(attempt)

    def not_yet(self, inst: Inst, spec: TaskSpec, message: str) -> None:
        """A check found the condition not true yet: the sensor waits, holding no worker."""
        checks = self.state.tasks[inst.key].checks + 1  # this session's: a resume puts a sensor back at 0
        self.record({"e": "wait", "task": inst.key, "t": self.clock.wall(), "checks": checks})
        if checks == 1:
            self.reporter.waiting(inst.key, message, spec.every_text)
        due = self.clock.now() + spec.every
        if inst.wait_until is not None:
            due = min(due, inst.wait_until)
        inst.waiting = True
        self.ties += 1
        heapq.heappush(self.retries, (due, self.ties, inst))

    def wait_timed_out(self, inst: Inst, spec: TaskSpec) -> None:
        self.deadlines.pop(inst.key, None)
        checks = self.state.tasks[inst.key].checks
        message = f"waited {spec.timeout_text} and the condition never held ({checks} check{'s' * (checks != 1)})"
        error = failures.error(failures.TIMEOUT, message)
        self.record({"e": "end", "task": inst.key, "n": inst.attempt, "t": self.clock.wall(), "status": "failed",
                     "error": error})
        self.reporter.ended(inst.key, inst.attempt, "failed", 0.0, error, None)
        self.instance_done(inst.name)

    def upstream_seq(self, spec: TaskSpec) -> int:
        newest = -1
        for u in spec.upstream:
            seq = self.settled.get(u)
            if seq is None:
                seq = self.settled[u] = self.state.settled_seq(u)
            newest = max(newest, seq)
        return newest

    def keep(self, inst: Inst, spec: TaskSpec) -> bool:
        """Keep what an earlier session of this run, or the run a --from run started from, left."""
        prev = self.previous
        own = prev.own.get(inst.key) if prev.own else None
        forced = inst.name in prev.forced or inst.key in prev.forced  # --from T, or --from T[i]
        if own is not None and not forced:
            if own.fp == state.MARKED:  # set by hand with `flow mark`: taken as it is
                self.kept_keys.append(inst.key)
                self.reporter.kept(inst.key)
                return True
            if own.seq <= self.upstream_seq(spec):
                return False  # an upstream result changed after it was made
            if not self.fingerprints.matches(own.fp, inst.fp, inst.name):
                self.reporter.note(f"{inst.key} runs again: {checkpoint.why_changed(own.fp, inst.fp)}")
                return False
            if not self.state.tasks[inst.key].intact():
                self.reporter.note(f"{inst.key} runs again: its result in the journal is damaged")
                return False
            self.kept_keys.append(inst.key)  # its state is in the journal already: one `keep` record names it
            self.reporter.kept(inst.key)
            return True
        kept = prev.earlier.get(inst.key) if prev.earlier else None
        if kept is None or inst.name in prev.earlier_forced or inst.key in prev.earlier_forced:
            return False
        if not all(self.state.carried(u, prev.earlier_id) for u in spec.upstream):
            return False
        if not self.fingerprints.matches(kept.fp, inst.fp, inst.name):
            self.reporter.note(f"{inst.key} runs again: {checkpoint.why_changed(kept.fp, inst.fp)}")
            return False
        if not kept.intact():
            self.reporter.note(f"{inst.key} runs again: its result in {prev.earlier_id} is damaged")
            return False
        self.record({"e": "reuse", "task": inst.key, "status": kept.status, "n": kept.attempts,
                     "started": kept.started, "finished": kept.finished, "result": kept.result, "rc": kept.crc,
                     "fp": inst.fp, "run": prev.earlier_id})
        self.reporter.kept(inst.key)
        return True

    def from_cache(self, inst: Inst, spec: TaskSpec) -> bool:
        """`cache [TTL]`: an earlier success with the same fingerprint, young enough."""
        if not spec.cache or self.cache is None:
            return False
        entry = self.cache.get(inst.fp, spec.cache_ttl)
        if entry is None:
            legacy = self.fingerprints.legacy(inst.fp, inst.name)  # an entry an older release wrote
            entry = self.cache.get(legacy, spec.cache_ttl) if legacy else None
            if entry is None:
                return False
        result = entry["result"]
        self.record({"e": "end", "task": inst.key, "n": 0, "t": self.clock.wall(), "status": "cached",
                     "result": result, "rc": codec.checksum(result), "fp": inst.fp,
                     "from": entry.get("run")})
        self.reporter.ended(inst.key, 0, "cached", 0.0, None, None)
        return True

    def fail_without_attempt(self, key: str, name: str, e: EvalError) -> None:
        error = failures.error(failures.EVAL_ERROR, self.maker.secrets.mask(str(e)))
        self.record({"e": "end", "task": key, "n": 0, "t": self.clock.wall(), "status": "failed", "error": error})
        self.reporter.ended(key, 0, "failed", 0.0, error, None)
        if key == name and name not in self.open_instances:
            self.complete(name)  # the task itself (its foreach list, or its only instance)
        else:
            self.instance_done(name)

    def task_ended(self, o: Outcome) -> None:
        inst = self.running.get(o.key)
        if inst is None or inst.attempt != o.number:
            return  # an attempt already given up on (its timeout passed, it was killed)
        del self.running[o.key]
        self.deadlines.pop(o.key, None)
        duration = max(0.0, o.finished - o.started)
        spec = self.tasks[inst.name]
        if o.ok:
            result = self.maker.masked(o.result)
            if result is not None and len(result) > BIG_RESULT:
                self.reporter.note(f"{inst.key}'s result is {len(result) >> 20} MB: results travel through the "
                                   "journal; write data this large to a file and return its path")
            end = {"e": "end", "task": inst.key, "n": inst.attempt, "t": self.clock.wall(),
                   "status": "success", "result": result, "rc": codec.checksum(result), "cpu": o.cpu}
            if o.worker is not None:
                end["w"] = o.worker
            self.record(end)
            if spec.cache and self.cache is not None:
                self.cache.put(inst.fp, result, self.run_id, inst.key)
            self.reporter.ended(inst.key, inst.attempt, "success", duration, None, None)
            self.instance_done(inst.name)
            return
        error = dict(o.error or {})
        names = error.pop("names", None) or [error.get("type", "")]
        if error.get("type") == failures.NOT_YET and self.stop_reason is None:
            return self.not_yet(inst, spec, error.get("message") or "not yet")
        if SKIP in names:  # the task raised flowdsl.Skip: skipped, with its reason
            reason = error.get("message") or "skipped by the task"
            self.record({"e": "skip", "task": inst.key, "t": self.clock.wall(), "reason": reason})
            self.reporter.skipped(inst.key, reason)
            return self.instance_done(inst.name)
        # an attempt that stopped because the run asked it to (a sensor's check that found nothing yet,
        # in a run that is stopping); one that raised on its own failed
        interrupted = self.stop_reason is not None and (error.get("type") in (failures.INTERRUPTED, failures.NOT_YET)
                                                        or self.backend_lost)
        delay = None if interrupted else self.retry_delay(inst, spec, names)
        status = "interrupted" if interrupted else "failed"
        retry_at = self.clock.wall() + delay if delay is not None else None
        error = self.maker.secrets.mask_data(error)
        end = {"e": "end", "task": inst.key, "n": inst.attempt, "t": self.clock.wall(), "status": status,
               "error": error, "retry_at": retry_at, "cpu": o.cpu}
        if o.worker is not None:
            end["w"] = o.worker
        self.record(end)
        self.reporter.ended(inst.key, inst.attempt, status, duration, error, delay)
        if interrupted:
            return  # pending: a resume runs it
        if delay is not None:
            if self.stop_reason is None:  # a stopping run retries nothing; the record says it was due
                self.ties += 1
                heapq.heappush(self.retries, (self.clock.now() + delay, self.ties, inst))
            return
        self.instance_done(inst.name)

    def retry_delay(self, inst: Inst, spec: TaskSpec, names: List[str]) -> Optional[float]:
        """Seconds until the next attempt, or None when the task is out of retries."""
        if spec.retry is None:
            return None
        return spec.retry.delay_before(inst.attempt - inst.base, names, self.uniform)  # a resume retries afresh

    # ---- the end ---------------------------------------------------------------------------

    def final_status(self) -> str:
        if self.failed_run:
            return "failed"
        if self.stop_reason is not None and (self.signals or self.backend_lost):
            return "interrupted"
        if self.stop_reason is not None:
            return "failed"
        for name in self.tasks:
            if self.task_status(name) == "failed":
                return "failed"
        return "success"

    def end_tasks(self) -> None:
        """No task runs or will: settle the status, then the hooks."""
        self.status = status = self.final_status()
        hooks = [] if status == "interrupted" else self.plan.hooks_for(status)
        if hooks and self.resumed == status and not self.worked:
            self.reporter.note(f"the run had already ended {status}; its hooks ran then")
            hooks = []
        if not hooks:
            return self.finish()
        self.phase = HOOKS
        self.pending_hooks.extend(hooks)
        self.effects.to_hooks()

    def hook_timeout(self) -> Optional[float]:
        """A hook obeys the run's timeout; one that starts after it passed gets HOOK_GRACE."""
        if self.run_deadline is None:
            return None
        left = self.run_deadline - self.clock.now()
        return left if left > 0 else HOOK_GRACE

    def hook_timeout_message(self) -> str:
        return f"the hook was stopped by the run's timeout ({self.plan.run_timeout_text})"

    def next_hook(self) -> None:
        while self.pending_hooks:
            hook = self.pending_hooks.popleft()
            number = self.hook_numbers[hook.key] = self.hook_numbers.get(hook.key, 0) + 1  # on_failure.1 first
            # a callable gets every result; a command reads $FLOW_REPORT, and `post` sends none
            report = self.state.report(self.maker.secrets, None if hook.action.kind == "run" else 0)
            report["status"] = self.status
            timeout = self.hook_timeout()
            try:
                attempt = self.maker.hook(hook, number, report, self.status, timeout)
            except EvalError as e:
                error = failures.error(failures.EVAL_ERROR, self.maker.secrets.mask(str(e)))
                self.record({"e": "hook", "event": hook.event, "status": "failed", "error": error,
                             "t": self.clock.wall()})
                self.reporter.hook_ended(hook.event, error)
                continue
            deadline = None if timeout is None else self.clock.now() + timeout
            self.hook = RunningHook(hook, number, deadline)
            self.effects.submit(attempt)
            return
        self.finish()

    def hook_ended(self, o: Outcome) -> None:
        hook, self.hook = self.hook, None
        error = None
        if not o.ok:
            error = dict(o.error or failures.error(failures.INTERRUPTED, ""))
            error.pop("names", None)
            error = self.maker.secrets.mask_data(error)
        self.record({"e": "hook", "event": hook.spec.event, "status": "failed" if error else "success",
                     "error": error, "t": self.clock.wall()})
        self.reporter.hook_ended(hook.spec.event, error, hook.spec.key, hook.number)

    def finish(self) -> None:
        reason = self.stop_reason if self.status != "success" else None
        done = {"e": "done", "status": self.status, "t": self.clock.wall(), "reason": reason}
        if self.start_error is not None:
            done["error"] = self.start_error
        self.record(done, sync=True)
        self.phase = DONE

    # ---- the journal --------------------------------------------------------------------------

    def record(self, r: Dict[str, Any], sync: bool = False) -> None:
        if self.kept_keys:
            self.flush_keeps()  # the keeps came first: the journal keeps the order
        if r["e"] in _WORK:
            self.worked = True
        self.effects.append(r, sync)
        self.state.apply(r)

    def flush_keeps(self) -> None:
        """The results kept since the last record, as one `keep` record."""
        keep = {"e": "keep", "tasks": self.kept_keys}
        self.kept_keys = []
        self.effects.append(keep, False)
        self.state.apply(keep)
