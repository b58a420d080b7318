"""The runner: the one loop that decides everything about a run.

Readiness, `when`, retries and their delays, timeouts, skips, concurrency,
foreach expansion and the journal are decided here, single-threaded; the
backend only executes attempts. The loop waits on the backend and on the
next deadline (a retry's due time, an attempt's timeout, the run's timeout)
at once, so nothing polls.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set, Tuple

from ..lang import ir, planner
from ..store import checkpoint, codec, history, journal, state
from . import values
from .backends import make_backend
from .values import EvalError, Scope, Secrets, evaluate
from .worker import Attempt, Interrupted, Outcome

INTERRUPT_GRACE = 5.0  # seconds running attempts get to stop (and call on_abort)
SHELL_TIMEOUT_SLACK = 5.0  # a shell attempt enforces its own timeout; the runner backs it up


@dataclass
class RunOptions:
    params: Dict[str, Any] = field(default_factory=dict)  # --param overrides, already parsed
    targets: List[str] = field(default_factory=list)
    executor: Optional[str] = None
    workers: Optional[int] = None
    logical_date: Optional[dt.datetime] = None
    trigger: str = "manual"
    state_dir: Optional[str] = None
    run_id: Optional[str] = None
    resume: bool = False  # continue the journal of `run_id`
    forced: Set[str] = field(default_factory=set)  # tasks that run again whatever they left (--from)
    earlier_id: Optional[str] = None  # a --from run: the run whose results it keeps
    earlier: Optional[state.RunState] = None
    dask_address: Optional[str] = None  # the executor's address (run.daskconfig: command line, environment, file)
    dask_timeout: float = 10.0  # seconds to reach the scheduler (run.daskconfig.timeout)
    backend: Any = None  # a backend made before the run was opened (a dask client, connected)


@dataclass
class Instance:
    """One schedulable unit: a task, or one instance of a foreach task."""

    key: str
    name: str
    item: Any = None
    has_item: bool = False
    attempt: int = 0
    base: int = 0  # attempts made in earlier sessions of this run
    fp: str = ""


class Runner:
    def __init__(self, plan: planner.Plan, options: RunOptions, reporter) -> None:
        self.plan = plan
        self.program = plan.program
        self.pipeline = plan.program.pipeline
        self.options = options
        self.reporter = reporter
        self.secrets = Secrets()
        self.state = state.RunState()
        self.folder = os.path.dirname(os.path.abspath(self.program.file))
        base = self.folder
        self.sys_path = tuple([base] + [os.path.normpath(os.path.join(base, p.text)) for p in self.pipeline.pythonpath])
        self.remaining: Dict[str, int] = {}
        self.downstream: Dict[str, List[str]] = {name: [] for name in plan.tasks}
        self.ready: deque = deque()
        self.retries: List[Tuple[float, int, Instance]] = []
        self.deadlines: Dict[str, float] = {}
        self.running: Dict[str, Instance] = {}
        self.open_instances: Dict[str, int] = {}
        self.stop_reason: Optional[str] = None
        self.journal_error: Optional[journal.WriteError] = None
        self.signals = 0
        self.seq = 0
        self.fingerprints = checkpoint.Fingerprints(plan.tasks, self.sys_path)
        self.fresh: Set[str] = set()  # tasks that did not keep an earlier result in this session
        self.hook_base = 0
        self.kept_keys: List[str] = []  # kept in this turn, for its `keep` record

    # ---- setup ------------------------------------------------------------------

    def evaluate_params(self, run: Dict[str, Any]) -> Dict[str, Any]:
        scope = Scope(params={}, run=run, secrets=self.secrets)
        params: Dict[str, Any] = {}
        if self.pipeline.params is not None:
            for entry in self.pipeline.params.entries:
                if entry.key in self.options.params:
                    params[entry.key] = self.options.params[entry.key]
                else:
                    params[entry.key] = evaluate(entry.value, scope)
        return params

    def run(self) -> Dict[str, Any]:
        self.open()
        return self.execute()

    def open(self) -> None:
        """Create the run (or take over the journal of the run to resume) and write its first record.

        Raises journal.Busy when the run to resume is still alive. After
        `open`, the run may be forked away (`--detach`) before `execute`.
        """
        p = self.pipeline
        o = self.options
        now = dt.datetime.now(dt.timezone.utc)
        logical = o.logical_date or now.astimezone()
        run_id = o.run_id or state.new_run_id(p.name, now)
        self.run_values = values.run_values(run_id, p.name, logical, o.trigger)
        self.env = {"FLOW_RUN_ID": run_id, "FLOW_PIPELINE": p.name, "FLOW_LOGICAL_DATE": logical.isoformat()}
        self.params = self.evaluate_params(self.run_values)
        self.state_root = state.state_dir(self.program.file, o.state_dir)
        self.cache = checkpoint.ResultCache(self.state_root, p.name)
        program_fp = fingerprint(self.program)
        if o.resume:
            self.run_folder = state.run_dir(self.state_root, run_id)
            self.journal = journal.Writer(state.journal_path(self.run_folder), create=False)
            earlier, end = history.replay(self.run_folder)  # under the lock: nobody else writes it now
            if end is not None and end < self.journal.size:
                self.journal.truncate(end)  # a torn last record
            self.previous = checkpoint.Previous(run_id, earlier, o.forced, same_run=True)
            self.fingerprints.know(self.previous, program_fp, earlier.info.get("fingerprint"))
            self.hook_base = earlier.hook_records
            self.state = earlier
            self.resumed = earlier.status
        else:
            self.run_folder = state.make_run_dir(self.state_root, run_id)
            self.journal = journal.Writer(state.journal_path(self.run_folder))
            self.previous = checkpoint.Previous(o.earlier_id, o.earlier, o.forced, same_run=False)
            if o.earlier is not None:
                self.fingerprints.know(self.previous, program_fp, o.earlier.info.get("fingerprint"))
            self.resumed = None
        results_mode = p.results.value if p.results else "msgpack"
        self.results_mode = results_mode
        if results_mode == "pickle":  # unpickling a result may import the task's modules
            for d in reversed(self.sys_path):
                if d not in sys.path:
                    sys.path.insert(0, d)
        executor = self.options.executor or (p.executor.kind if p.executor else "process")
        concurrency = int(p.concurrency.value) if isinstance(p.concurrency, ir.Literal) else (os.cpu_count() or 1)
        workers = self.options.workers or concurrency
        self.capacity = max(1, min(concurrency, workers) if self.options.workers else concurrency)
        self.executor = executor
        if o.resume:
            self.record({"e": "resume", "t": time.time(), "pid": os.getpid(), "fingerprint": program_fp,
                         "tasks": list(self.plan.tasks), "forced": sorted(o.forced)}, sync=True)
        else:
            self.record({
                "e": "run", "v": journal.VERSION, "run_id": run_id, "pipeline": p.name,
                "file": self.program.file, "fingerprint": program_fp,
                "params": self.secrets.mask_data(_plain(self.params)), "logical_date": logical.isoformat(),
                "trigger": o.trigger, "t": time.time(), "pid": os.getpid(),
                "targets": list(o.targets), "tasks": list(self.plan.tasks),
                "results": results_mode, "executor": executor, "overrides": _pack_params(o.params),
            }, sync=True)
        self.results = LazyResults(self.state, p.results)
        if self.journal_error is not None:
            raise self.journal_error

    def write_summary(self) -> None:
        try:
            state.write_json_atomic(os.path.join(self.run_folder, "summary.json"), self.state.summary())
        except OSError:
            pass  # `flow runs` falls back to the journal

    def write_snapshot(self, status: str) -> None:
        """A run likely to be resumed saves its final state, so the resume need not replay the journal."""
        path = os.path.join(self.run_folder, state.SNAPSHOT)
        try:
            if status == "success":
                if os.path.exists(path):
                    os.unlink(path)
            else:
                digest = state.journal_digest(state.journal_path(self.run_folder))
                state.write_json_atomic(path, self.state.snapshot(digest))
        except (OSError, TypeError, ValueError):
            pass  # a resume replays the journal instead

    def execute(self) -> Dict[str, Any]:
        """Run the opened run to its end; the report."""
        p = self.pipeline
        self.state.info["pid"] = os.getpid()  # a detached run continues in a child
        self.write_summary()
        self.reporter.run_started({"run_id": self.run_values["id"], "tasks": self.plan.tasks}, self.run_folder)
        kept = len({k.split("[", 1)[0] for k in self.previous.kept})
        forced = [t for t in self.plan.tasks if t in self.previous.forced]
        again = f"; {', '.join(forced)} run again (--from)" if forced else ""
        if self.resumed is not None:
            self.reporter.note(f"resuming a {self.resumed} run: {kept} finished task{'s' * (kept != 1)} "
                               f"may be kept{again}")
        elif self.previous:
            self.reporter.note(f"keeping what {self.previous.run_id} finished{again}")
        self.backend = self.make_backend()
        run_timeout = p.timeout.seconds if isinstance(p.timeout, ir.Duration) else None
        self.run_deadline = time.monotonic() + run_timeout if run_timeout else None
        previous = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        status = self.final_status()
        if status != "interrupted":
            self.run_hooks(status)
        reason = self.stop_reason if status != "success" else None
        self.record({"e": "done", "status": status, "t": time.time(), "reason": reason}, sync=True)
        self.backend.close()
        try:
            self.journal.close()
            self.write_snapshot(status)
        except journal.WriteError:
            self.journal.release()
        report = self.state.report(self.secrets)
        try:
            state.write_json_atomic(os.path.join(self.run_folder, "report.json"), report)
        except OSError as e:
            self.reporter.note(f"cannot write {self.run_folder}/report.json: {e.strerror or e}")
        self.write_summary()
        self.reporter.run_finished(report)
        return report

    def make_backend(self):
        if self.executor != "dask":
            return make_backend(self.executor, min(self.capacity, max(1, len(self.plan.tasks))))
        from . import dask  # only a run on a Dask cluster imports it

        try:  # the address and timeout were chosen and checked before the run opened (cli.run, schedule.launch)
            backend = self.options.backend or dask.DaskBackend(
                self.options.dask_address, self.sys_path, self.options.dask_timeout)
        except dask.DaskUnavailable as e:  # a detached or scheduled run whose cluster went away since its check
            self.reporter.note(str(e))
            self.stop_reason = str(e)
            return make_backend("inline", 1)  # nothing runs on it: the loop stops at once
        if self.pipeline.concurrency is None:  # --workers, else the cluster's threads (not this machine's CPUs)
            self.capacity = max(1, self.options.workers or backend.capacity)
        backend.resources = {name: {e.key: e.value.value for e in tp.settings.resources.entries}
                             for name, tp in self.plan.tasks.items() if tp.settings.resources is not None}
        return backend

    def on_signal(self, signum, frame) -> None:
        self.signals += 1
        if self.stop_reason is None:
            self.stop_reason = f"interrupted by {signal.Signals(signum).name}"
        if getattr(self.backend, "executing", False):  # inline: the attempt runs right here
            raise Interrupted()

    def record(self, r: Dict[str, Any], sync: bool = False) -> None:
        self.queue_keeps()  # the keeps came first: the journal keeps the order
        self.journal.append(r)
        self.state.apply(r)
        if sync:
            self.commit(sync=True)

    def commit(self, sync: bool = False) -> None:
        """Write what is queued; a journal that cannot be written stops the run (it stays resumable)."""
        self.queue_keeps()
        try:
            if sync:
                self.journal.sync()
            else:
                self.journal.group_commit()
        except journal.WriteError as e:
            self.journal.pending = []
            if self.journal_error is None:
                self.journal_error = e
                self.reporter.note(f"{e}: the run stops; free some space, then `flow run --resume`")
            if self.stop_reason is None:
                self.stop_reason = str(e)

    def queue_keeps(self) -> None:
        """The tasks a resumed session kept since the last record, as one `keep` record."""
        if self.kept_keys:
            self.journal.append({"e": "keep", "tasks": self.kept_keys})
            self.kept_keys = []

    # ---- the loop -----------------------------------------------------------------

    def loop(self) -> None:
        for name, tp in self.plan.tasks.items():
            ups = [u for u in tp.upstream if u in self.plan.tasks]
            self.remaining[name] = len(ups)
            for u in ups:
                self.downstream[u].append(name)
        for name, count in self.remaining.items():
            if count == 0:
                self.become_ready(name)
        while self.stop_reason is None:
            self.start_ready()
            if not self.running and not self.ready and not self.retries:
                break
            self.commit()  # this turn's records, in one write
            outcomes = self.backend.wait(self.wait_time())
            for outcome in outcomes:
                self.finish(outcome)
            self.expire(time.monotonic())
            self.reporter.tick(self.running)
        if self.stop_reason is not None:
            self.abort()

    def wait_time(self) -> Optional[float]:
        now = time.monotonic()
        times = list(self.deadlines.values())
        if self.retries:
            times.append(self.retries[0][0])
        if self.run_deadline is not None:
            times.append(self.run_deadline)
        wait = max(0.0, min(times) - now) if times else None
        if self.ready and len(self.running) < self.capacity:
            wait = 0.0
        # Signals set a flag; wake often enough to see it, and to refresh a live display.
        return min(wait, self.reporter.refresh) if wait is not None else self.reporter.refresh

    def start_ready(self) -> None:
        now = time.monotonic()
        while self.retries and self.retries[0][0] <= now:
            _, _, inst = heapq.heappop(self.retries)
            self.ready.append(inst)
        while self.ready and len(self.running) < self.capacity:
            self.start(self.ready.popleft())

    def expire(self, now: float) -> None:
        if self.run_deadline is not None and now >= self.run_deadline:
            self.stop_reason = f"the run's timeout ({self.pipeline.timeout.text}) passed"
            return
        for key, deadline in list(self.deadlines.items()):
            if now >= deadline:
                inst = self.running.get(key)
                self.backend.kill(key)
                if inst is not None:
                    timeout = self.plan.tasks[inst.name].settings.timeout
                    t = time.time()
                    self.finish(Outcome(key, inst.attempt, False, error={
                        "type": "Timeout", "message": f"timed out after {timeout.text}", "traceback": ""},
                        started=t, finished=t))

    # ---- a task becomes ready ------------------------------------------------------

    def become_ready(self, name: str) -> None:
        tp = self.plan.tasks[name]
        when = tp.settings.when.value if tp.settings.when else "success"
        ups = [u for u in tp.upstream if u in self.plan.tasks]
        states = {u: self.task_status(u) for u in ups}
        failed = [u for u, s in states.items() if s == "failed"]
        if when == "success" and any(s not in ("success", "cached") for s in states.values()):
            bad = failed or [u for u, s in states.items() if s not in ("success", "cached")]
            verb = "failed" if failed else "did not succeed"
            return self.skip(name, f"upstream {', '.join(bad)} {verb}")
        if when == "failure" and not failed:
            return self.skip(name, "no upstream failed (when failure)")
        task = tp.task
        attempts = self.previous.attempts
        if task.foreach is None:
            self.open_instances[name] = 1
            n = attempts.get(name, 0)
            self.ready.append(Instance(name, name, attempt=n, base=n))
            return
        try:
            items = evaluate(task.foreach.items, self.scope(None))
            if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
                raise EvalError(f"`foreach {task.foreach.var.name} in ...` needs a list, got {type(items).__name__}")
            items = list(items)
        except EvalError as e:
            return self.fail_without_attempt(name, name, e)
        self.record({"e": "expand", "task": name, "count": len(items)})
        if not items:
            self.complete(name)
            return
        self.open_instances[name] = len(items)
        for i, item in enumerate(items):
            n = attempts.get(f"{name}[{i}]", 0)
            self.ready.append(Instance(f"{name}[{i}]", name, item, True, attempt=n, base=n))

    def task_status(self, name: str) -> str:
        s = self.state.aggregate(name) if name in self.state.instances else self.state.tasks[name]
        return s.status

    def skip(self, name: str, reason: str) -> None:
        self.fresh.add(name)
        self.record({"e": "skip", "task": name, "t": time.time(), "reason": reason})
        self.reporter.skipped(name, reason)
        self.complete(name)

    def scope(self, inst: Optional[Instance]) -> Scope:
        item = None
        if inst is not None and inst.has_item:
            item = (self.plan.tasks[inst.name].task.foreach.var.name, inst.item)
        return Scope(self.params, self.run_values, self.results, item, self.secrets)

    # ---- attempts -----------------------------------------------------------------

    def start(self, inst: Instance) -> None:
        tp = self.plan.tasks[inst.name]
        inst.attempt += 1
        try:
            attempt = self.make_attempt(inst, tp)
        except EvalError as e:
            return self.fail_without_attempt(inst.key, inst.name, e)
        inst.fp = self.fingerprints.of(inst.name, attempt)
        if inst.attempt == inst.base + 1 and (self.keep(inst) or self.from_cache(inst, tp)):
            inst.attempt -= 1
            return self.instance_done(inst.name, ok=True)
        self.fresh.add(inst.name)
        self.record({"e": "start", "task": inst.key, "n": inst.attempt, "t": time.time(), "fp": inst.fp})
        self.running[inst.key] = inst
        if attempt.timeout is not None:
            slack = 0 if attempt.kind == "run" else SHELL_TIMEOUT_SLACK
            self.deadlines[inst.key] = time.monotonic() + attempt.timeout + slack
        self.reporter.started(inst.key, inst.attempt)
        self.backend.submit(attempt)

    def keep(self, inst: Instance) -> bool:
        """Keep the result an earlier session left, if the task and everything upstream are unchanged."""
        prev = self.previous
        if not prev.kept or inst.name in prev.forced:
            return False
        if any(u in self.fresh for u in self.plan.tasks[inst.name].upstream):
            return False
        kept = prev.kept.get(inst.key)
        if kept is None:
            return False
        if kept.fp != inst.fp:
            self.reporter.note(f"{inst.key} runs again: {checkpoint.why_changed(kept.fp, inst.fp)}")
            return False
        if self.options.resume:  # the result is in this journal already: one `keep` record per turn names it
            self.kept_keys.append(inst.key)
            self.state.keep(inst.key)
        else:
            self.record({"e": "reuse", "task": inst.key, "status": kept.status, "n": kept.attempts,
                         "started": kept.started, "finished": kept.finished, "result": kept.result,
                         "fp": inst.fp, "run": prev.run_id})
        self.reporter.kept(inst.key)
        return True

    def from_cache(self, inst: Instance, tp: planner.TaskPlan) -> bool:
        """`cache [TTL]`: an earlier success with the same fingerprint, young enough."""
        c = tp.settings.cache
        if c is None:
            return False
        entry = self.cache.get(inst.fp, c.ttl.seconds if isinstance(c.ttl, ir.Duration) else None)
        if entry is None:
            return False
        self.fresh.add(inst.name)
        self.record({"e": "end", "task": inst.key, "n": 0, "t": time.time(), "status": "cached",
                     "result": entry["result"], "fp": inst.fp, "from": entry.get("run")})
        self.reporter.ended(inst.key, 0, "cached", 0.0, None, None)
        return True

    def make_attempt(self, inst: Instance, tp: planner.TaskPlan) -> Attempt:
        task = tp.task
        scope = self.scope(inst)
        s = tp.settings
        env = dict(self.env, FLOW_TASK=inst.key)
        kwargs = evaluate(task.args, scope) if task.args is not None else {}
        common = dict(
            key=inst.key, number=inst.attempt, cwd=self.folder, sys_path=self.sys_path,
            log_path=state.log_path(self.run_folder, inst.key, inst.attempt),
            timeout=s.timeout.seconds if isinstance(s.timeout, ir.Duration) else None,
            output=s.output.value if s.output else "text", results=self.results_mode,
            secrets=tuple(self.secrets.values),
        )
        action = task.action
        if isinstance(action, ir.RunAction):
            return Attempt(kind="run", target=str(action.callable), kwargs=kwargs, env=env, **common)
        for k, v in kwargs.items():
            env["FLOW_ARG_" + k.upper()] = v if isinstance(v, str) else values.as_text(v)
        common["secrets"] = tuple(self.secrets.values)  # evaluation may have read more
        if isinstance(action, ir.ShAction):
            command = values.render(action.command, scope, quote=True)
            return Attempt(kind="sh", target=command, env=env, **common)
        argv = evaluate(action.argv, scope)
        if not isinstance(argv, (list, tuple)) or not argv:
            raise EvalError("`exec` needs a non-empty list of arguments")
        common["secrets"] = tuple(self.secrets.values)
        return Attempt(kind="exec", argv=as_argv(argv), env=env, **common)

    def fail_without_attempt(self, key: str, name: str, e: EvalError) -> None:
        self.fresh.add(name)
        error = {"type": "EvalError", "message": self.secrets.mask(str(e)), "traceback": ""}
        self.record({"e": "end", "task": key, "n": 0, "t": time.time(), "status": "failed", "error": error})
        self.reporter.ended(key, 0, "failed", 0.0, error, None)
        self.instance_done(name, ok=False)

    def finish(self, outcome: Outcome) -> None:
        inst = self.running.pop(outcome.key, None)
        if inst is None or inst.attempt != outcome.number:
            return  # an attempt already given up on (its timeout passed)
        self.deadlines.pop(outcome.key, None)
        duration = max(0.0, outcome.finished - outcome.started)
        if outcome.ok:
            result = self.masked(outcome.result)
            self.record({"e": "end", "task": inst.key, "n": inst.attempt, "t": time.time(),
                         "status": "success", "result": result, "cpu": outcome.cpu})
            if self.plan.tasks[inst.name].settings.cache is not None:
                self.cache.put(inst.fp, result, self.run_values["id"], inst.key)
            self.reporter.ended(inst.key, inst.attempt, "success", duration, None, None)
            self.instance_done(inst.name, ok=True)
            return
        error = dict(outcome.error or {})
        names = error.pop("names", None) or [error.get("type", "")]
        interrupted = error.get("type") == "Interrupted"
        delay = None if interrupted else self.retry_delay(inst, names)
        status = "interrupted" if interrupted else "failed"
        retry_at = time.time() + delay if delay is not None else None
        error = self.secrets.mask_data(error)
        self.record({"e": "end", "task": inst.key, "n": inst.attempt, "t": time.time(), "status": status,
                     "error": error, "retry_at": retry_at, "cpu": outcome.cpu})
        self.reporter.ended(inst.key, inst.attempt, status, duration, error, delay)
        if interrupted:
            return
        if delay is not None:
            self.seq += 1
            heapq.heappush(self.retries, (time.monotonic() + delay, self.seq, inst))
        else:
            self.instance_done(inst.name, ok=False)

    def masked(self, data: Optional[bytes]) -> Optional[bytes]:
        """A result with every secret it holds masked: the journal never keeps one."""
        if not data or not any(v.encode() in data for v in self.secrets.values):
            return data
        value = codec.decode_result(data, allow_pickle=True)
        masked = codec.encode_result(_plain_masking(value, self.secrets), self.results_mode)
        if any(v.encode() in masked for v in self.secrets.values):
            # inside an object masking cannot reach: keep only a masked description
            masked = codec.encode_result(self.secrets.mask(repr(value))[:200], self.results_mode)
        return masked

    def retry_delay(self, inst: Instance, names: List[str]) -> Optional[float]:
        """Seconds until the next attempt, or None when the task is out of retries."""
        r = self.plan.tasks[inst.name].settings.retry
        made = inst.attempt - inst.base  # in this session: a resume gets the retries afresh
        if r is None or made > r.count.value:
            return None
        if r.on and not any(n.name in names for n in r.on):
            return None
        delay = r.delay.seconds if r.delay is not None else 0.0
        backoff = r.backoff.value if r.backoff is not None else 1
        delay *= backoff ** (made - 1)
        if r.max_delay is not None:
            delay = min(delay, r.max_delay.seconds)
        if r.jitter is not None and delay:
            delay *= 1 + random.uniform(-r.jitter.value, r.jitter.value)
        return max(0.0, delay)

    def instance_done(self, name: str, ok: bool) -> None:
        """One instance (of a foreach task, or the task itself) is final; `ok` is recorded in the journal."""
        self.open_instances[name] = self.open_instances.get(name, 1) - 1
        if self.open_instances[name] <= 0:
            self.complete(name)

    def complete(self, name: str) -> None:
        """A task (all its instances) is final: publish its result, release its dependents."""
        if self.task_status(name) in ("success", "cached"):
            self.results.publish(name)
        for d in self.downstream[name]:
            self.remaining[d] -= 1
            if self.remaining[d] == 0:
                self.become_ready(d)

    # ---- the end ----------------------------------------------------------------------

    def abort(self) -> None:
        """Stop every running attempt: ask first (on_abort runs), then kill."""
        self.reporter.stopping(self.stop_reason)
        self.backend.interrupt()
        give_up = time.monotonic() + INTERRUPT_GRACE
        while self.running and time.monotonic() < give_up and self.signals < 2:
            for outcome in self.backend.wait(0.1):
                self.finish(outcome)
        for key, inst in list(self.running.items()):
            self.backend.kill(key)
            t = time.time()
            self.finish(Outcome(key, inst.attempt, False, error={
                "type": "Interrupted", "message": "stopped when the run was interrupted", "traceback": ""},
                started=t, finished=t))
        self.commit(sync=True)

    def final_status(self) -> str:
        if self.journal_error is not None:
            return "failed"
        if self.stop_reason is not None and self.signals:
            return "interrupted"
        if self.stop_reason is not None:
            return "failed"
        for name in self.plan.tasks:
            if self.task_status(name) == "failed":
                return "failed"
        return "success"

    def run_hooks(self, status: str) -> None:
        hooks = [h for h in self.pipeline.hooks if h.event == ("success" if status == "success" else "failure")]
        hooks += [h for h in self.pipeline.hooks if h.event == "finish"]
        if not hooks:
            return
        self.backend.close()
        self.backend = make_backend("inline" if self.options.executor == "inline" else "process", 1)
        for i, hook in enumerate(hooks):
            report = self.state.report(self.secrets)
            report["status"] = status
            key = f"on_{hook.event}"
            try:
                attempt = self.hook_attempt(hook, key, self.hook_base + i + 1, report, status)
            except EvalError as e:
                error = {"type": "EvalError", "message": self.secrets.mask(str(e)), "traceback": ""}
                self.record({"e": "hook", "event": hook.event, "status": "failed", "error": error, "t": time.time()})
                self.reporter.hook_ended(hook.event, error)
                continue
            self.backend.submit(attempt)
            outcomes: List[Outcome] = []
            while not outcomes:
                outcomes = self.backend.wait(None if self.signals < 2 else 0)
                if self.signals >= 2:
                    break
            error = None if outcomes and outcomes[0].ok else self.secrets.mask_data(
                (outcomes[0].error if outcomes else None) or {"type": "Interrupted", "message": "", "traceback": ""})
            if error:
                error.pop("names", None)
            self.record({"e": "hook", "event": hook.event, "status": "failed" if error else "success",
                         "error": error, "t": time.time()})
            self.reporter.hook_ended(hook.event, error)

    def hook_attempt(self, hook: ir.Hook, key: str, n: int, report: Dict[str, Any], status: str) -> Attempt:
        env = dict(self.env, FLOW_STATUS=status)
        scope = self.scope(None)
        common = dict(key=key, number=n, cwd=self.folder, sys_path=self.sys_path, env=env,
                      log_path=state.log_path(self.run_folder, key, n), results="pickle",
                      secrets=tuple(self.secrets.values))
        action = hook.action
        if isinstance(action, ir.RunAction):
            return Attempt(kind="run", target=str(action.callable), args=(report,), **common)
        if isinstance(action, ir.ShAction):
            return Attempt(kind="sh", target=values.render(action.command, scope, quote=True), **common)
        argv = evaluate(action.argv, scope)
        return Attempt(kind="exec", argv=as_argv(argv), **common)


def as_argv(argv) -> tuple:
    """`exec`'s arguments as strings: strings as they are, other values as in interpolation."""
    return tuple(a if isinstance(a, str) else values.as_text(a) for a in argv)


class LazyResults(Mapping):
    """Finished tasks' results, decoded from the journal's bytes on first use.

    Most results are never referenced (`after` edges carry none), so most are
    never decoded.
    """

    def __init__(self, run_state: state.RunState, results: Optional[ir.Word]) -> None:
        self.state = run_state
        self.allow_pickle = results is not None and results.value == "pickle"
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


def fingerprint(program: ir.Program) -> str:
    """Of the plan's source: every file the program was read from."""
    h = hashlib.sha256()
    for path in program.files:
        h.update(path.encode())
        try:
            with open(path, "rb") as f:
                h.update(f.read())
        except OSError:
            pass
    return h.hexdigest()[:16]


def _plain_masking(value: Any, secrets: Secrets) -> Any:
    """Containers rebuilt so that mask_data reaches every string inside them."""
    if isinstance(value, str):
        return secrets.mask(value)
    if isinstance(value, bytes):
        return secrets.mask(value.decode("utf-8", "replace")).encode()
    if isinstance(value, dict):
        return {_plain_masking(k, secrets): _plain_masking(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return type(value)(_plain_masking(v, secrets) for v in value)
    return value


def _pack_params(params: Dict[str, Any]) -> bytes:
    """--param overrides as the journal keeps them for a resume: as typed, or as plain data."""
    try:
        return codec.pack(params)
    except codec.ResultTypeError:
        return codec.pack(_plain(params))


def _plain(value: Any) -> Any:
    """Params as msgpack-able data for the journal's run record."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    return repr(value)
