"""The driver: the thin loop around the run machine.

It owns what the machine must not touch: the state folder and the journal,
the backend, the reporter, signals and the clock. `open` creates the run (or
takes over the journal of the run to resume) and writes its first record;
`execute` feeds the machine until it is done: what the backend hands back,
the signals that came, and the time (the machine's `timers`), waiting on the
backend and the machine's next deadline at once, so nothing polls.

Backends implement the protocol written in run.backends: `submit`, `wait`
(Outcomes, and Began for a backend that queues), `kill`, `interrupt`,
`close`, and `capacity`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Set

from ..lang import execplan, planner, values
from ..lang.diagnostics import UsageError
from ..lang.values import EvalError, Secrets
from ..store import checkpoint, history, journal, state
from .actions import Maker, evaluate_params, pack_params, plain
from .backends import Lost, make_backend
from .machine import Machine
from .worker import Began, Interrupted


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
    earlier_id: Optional[str] = None  # a --from run (or a resume of one): the run whose results it keeps
    earlier: Optional[state.RunState] = None
    earlier_forced: Set[str] = field(default_factory=set)  # a resumed --from run's own --from tasks
    dask_address: Optional[str] = None  # the executor's address (run.daskconfig: command line, environment, file)
    dask_timeout: float = 10.0  # seconds to reach the scheduler (run.daskconfig.timeout)
    backend: Any = None  # a backend made before the run was opened (a dask client, connected; a test's)
    # A scheduled or backfilled run whose slot is claimed becomes a run even when it cannot start
    # (cli.md, "Scheduled runs that cannot start"): failed, with the reason as its error, resumable.
    start_anyway: bool = False
    start_error: Optional[str] = None  # why it cannot start, known before it opened (its executor)


class Clock:
    """The real time: monotonic for deadlines, wall for records."""

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)


class Runner:
    def __init__(self, plan: planner.Plan, options: RunOptions, reporter) -> None:
        self.options = options
        self.reporter = reporter
        self.program = plan.program
        self.plan = execplan.lower(plan, options.executor, options.workers, tuple(options.targets))
        self.sys_path = self.plan.sys_path
        self.secrets = Secrets()
        self.state = state.RunState()
        self.signals: List[str] = []
        self.journal_error: Optional[journal.WriteError] = None
        self.backend: Any = None
        self.start_error: Optional[str] = None  # set by `open`: why this run cannot start, if it cannot
        self.hook_numbers: Dict[str, int] = {}  # a resumed run's hooks: the last log number of each
        self.elastic = False
        self.machine: Optional[Machine] = None

    @property
    def shipped(self) -> Dict[str, str]:
        """The pipeline's `ship` paths, for a Dask backend: {path relative to its folder: local path}."""
        return dict(self.plan.ship)

    @property
    def resources(self) -> Dict[str, Dict[str, Any]]:
        """Each task's `resources { ... }`, for a Dask backend made with them."""
        return {name: spec.resources for name, spec in self.plan.tasks.items() if spec.resources is not None}

    def run(self) -> Dict[str, Any]:
        self.open()
        return self.execute(full=True)

    # ---- opening the run --------------------------------------------------------------------

    def open(self) -> None:
        """Create the run (or take over the journal of the run to resume) and write its first record.

        Raises journal.Busy when the run to resume is still alive, EvalError for
        a param that cannot be evaluated. After `open`, the run may be forked
        away (`--detach`) before `execute`.
        """
        plan, o = self.plan, self.options
        now = dt.datetime.now(dt.timezone.utc)
        logical = o.logical_date or now.astimezone()
        run_id = o.run_id or state.new_run_id(plan.pipeline, now)
        self.run_values = values.run_values(run_id, plan.pipeline, logical, o.trigger)
        self.start_error = o.start_error
        self.environ, self.file_env = os.environ, {}
        try:
            if plan.env_file:  # `env_file`: its lines for env() and secret(); the process's environment wins
                self.file_env = values.read_env_file(plan.env_file, "env_file")
                self.environ = dict(self.file_env, **os.environ)
            self.params = evaluate_params(plan, o.params, self.run_values, self.secrets, self.environ)
        except (EvalError, UsageError) as e:
            if not o.start_anyway:
                raise
            self.params, self.start_error = {}, str(e)
        self.state_root = state.state_dir(self.program.file, o.state_dir)
        program_fp = fingerprint(self.program)
        self.fingerprints = checkpoint.Fingerprints(plan.source.tasks, plan.sys_path)
        if o.resume:
            self.run_folder = state.run_dir(self.state_root, run_id)
            self.journal = journal.Writer(state.journal_path(self.run_folder), create=False)
            earlier, end = history.replay(self.run_folder)  # under the lock: nobody else writes it now
            if end is not None and end < self.journal.size:
                self.journal.truncate(end)  # a torn last record
            self.previous = checkpoint.Previous(run_id, earlier, o.forced, o.earlier_id, o.earlier,
                                                o.earlier_forced)
            self.fingerprints.know(self.previous, program_fp, earlier.info.get("fingerprint"))
            self.number_after_logs()
            self.state = earlier
            # a session that died without a `done` record left the run `running`: it was interrupted
            self.resumed: Optional[str] = "interrupted" if earlier.status == "running" else earlier.status
        else:
            self.run_folder = state.make_run_dir(self.state_root, run_id)
            self.journal = journal.Writer(state.journal_path(self.run_folder))
            self.previous = checkpoint.Previous(forced=o.forced, earlier_id=o.earlier_id, earlier=o.earlier)
            if o.earlier is not None:
                self.fingerprints.know(self.previous, program_fp, o.earlier.info.get("fingerprint"))
            self.resumed = None
        if plan.results == "pickle":  # unpickling a result may import the task's modules
            for d in reversed(plan.sys_path):
                if d not in sys.path:
                    sys.path.insert(0, d)
        if o.resume:
            self.first_record({"e": "resume", "t": time.time(), "pid": os.getpid(), "fingerprint": program_fp,
                               "tasks": list(plan.tasks), "forced": sorted(o.forced)})
        else:
            first = {
                "e": "run", "v": journal.VERSION, "run_id": run_id, "pipeline": plan.pipeline,
                "file": self.program.file, "fingerprint": program_fp,
                "params": self.secrets.mask_data(plain(self.params)), "logical_date": logical.isoformat(),
                "trigger": o.trigger, "t": time.time(), "pid": os.getpid(),
                "targets": list(o.targets), "tasks": list(plan.tasks),
                "results": plan.results, "executor": plan.executor, "overrides": pack_params(o.params, self.secrets),
            }
            if o.earlier_id is not None:  # a --from run: what a resume of it may still take from that run
                first.update(from_run=o.earlier_id, forced=sorted(o.forced))
            self.first_record(first)

    def number_after_logs(self) -> None:
        """Attempts (and hooks) of this session are numbered after every log file already there.

        The journal alone can undercount: a session cut off may have lost the
        `start` of an attempt whose log it had begun; numbering from the journal
        would write over that log.
        """
        import re

        try:
            names = os.listdir(os.path.join(self.run_folder, "logs"))
        except OSError:
            return
        for name in names:
            m = re.fullmatch(r"(.+)\.([0-9]{1,9})\.log", name)
            if m is None:
                continue
            key, n = m.group(1), int(m.group(2))
            if key.startswith("on_") and key[3:] in ("success", "failure", "finish"):
                self.hook_numbers[key] = max(self.hook_numbers.get(key, 0), n)
            elif n > self.previous.attempts.get(key, 0):
                self.previous.attempts[key] = n

    def first_record(self, r: Dict[str, Any]) -> None:
        self.journal.append(r)
        self.state.apply(r)
        self.journal.sync()  # raises WriteError: the run does not start

    def write_summary(self) -> None:
        path = os.path.join(self.run_folder, "summary.json")
        try:
            state.write_json_atomic(path, self.state.summary())
        except OSError:
            # `flow runs` falls back to the journal, provided no summary of an earlier session
            # (`failed`, when this one succeeded) is left to be believed: unlinking needs no room
            try:
                os.unlink(path)
            except OSError:
                pass

    def write_snapshot(self, status: str) -> None:
        """A run likely to be resumed saves its final state, so the resume need not replay the journal."""
        path = os.path.join(self.run_folder, state.SNAPSHOT)
        try:
            if status == "success" or self.journal_error is not None:
                # after a failed write this state holds records the journal lost: a resume must replay
                if os.path.exists(path):
                    os.unlink(path)
            else:
                journal_bytes = state.read_journal_bytes(state.journal_path(self.run_folder))
                state.write_json_atomic(path, self.state.snapshot(journal_bytes))
        except (OSError, TypeError, ValueError):
            pass  # a resume replays the journal instead

    # ---- running it ----------------------------------------------------------------------------

    def execute(self, full: bool = False) -> Dict[str, Any]:
        """Run the opened run to its end; the report (as report.json holds it, results up to
        state.REPORT_RESULT_BYTES; `full`: every result, for `--json` and the API)."""
        self.state.info["pid"] = os.getpid()  # a detached run continues in a child
        self.write_summary()
        self.reporter.run_started({"run_id": self.run_values["id"], "tasks": self.plan.tasks}, self.run_folder)
        self.say_what_is_kept()
        if self.start_error is not None:  # nothing will run: hooks may still
            self.reporter.note(f"the run cannot start: {self.start_error}")
            self.backend, unavailable = make_backend("inline", 1), self.start_error
        else:
            unavailable = self.make_backend()
        maker = Maker(self.plan, self.state, self.run_values, self.params, self.secrets, self.run_folder)
        if self.file_env:
            maker.use_env_file(self.environ, self.file_env)
        capacity = None
        # --workers or the pipeline's concurrency, else what the cluster offers, as it changes
        self.elastic = bool(getattr(self.backend, "elastic", False)) and self.plan.concurrency is None \
            and not self.options.workers
        if self.plan.executor == "dask" and self.plan.concurrency is None:
            capacity = max(1, self.options.workers or getattr(self.backend, "capacity", 1))
        self.machine = m = Machine(
            self.plan, self.state, self.previous, maker, self.fingerprints,
            checkpoint.ResultCache(self.state_root, self.plan.pipeline), self, self.reporter, Clock,
            capacity=capacity, queues=getattr(self.backend, "queues", False), resumed=self.resumed,
            hook_numbers=self.hook_numbers)
        previous = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if unavailable:
                m.fail(unavailable, cannot_start=True)
            m.begin()
            self.loop(m)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.backend.close()
        try:
            self.journal.close()
            self.write_snapshot(m.status)
        except journal.WriteError:
            self.journal.release()
        report = self.state.report(self.secrets, None if full else state.REPORT_RESULT_BYTES)
        try:
            kept = self.state.trimmed(report, state.REPORT_RESULT_BYTES) if full else report
            state.write_json_atomic(os.path.join(self.run_folder, "report.json"), kept)
        except OSError as e:
            self.reporter.note(f"cannot write {self.run_folder}/report.json: {e.strerror or e}")
            try:  # an earlier session's report would say what this session did not end with
                os.unlink(os.path.join(self.run_folder, "report.json"))
            except OSError:
                pass
        self.write_summary()
        self.reporter.run_finished(report)
        return report

    def loop(self, m: Machine) -> None:
        refresh = self.reporter.refresh  # signals set a flag: wake often enough to see it, and to redraw
        while not m.done:
            self.commit(m)
            if self.journal_error is not None and not m.failed_run:
                m.fail(str(self.journal_error))  # before anything else happens: nothing is journaled now
                continue
            wake = m.next_wake()
            wait = refresh if wake is None else min(refresh, max(0.0, wake - time.monotonic()))
            items = self.backend.wait(wait)
            notes = getattr(self.backend, "notes", None)  # what a backend says (a Dask scheduler lost, found again)
            while notes:
                self.reporter.note(notes.pop(0))
            while self.signals:  # first: an attempt that a signal stopped must be seen as interrupted
                m.signalled(self.signals.pop(0))
            for item in items:
                kind = type(item)
                if kind is Began:
                    m.began(item)
                elif kind is Lost:
                    m.lost(item.reason)
                else:
                    m.ended(item)
            if self.elastic:
                m.capacity = max(1, self.backend.capacity)
            m.timers()
            self.reporter.tick(m.running)
        self.commit(m)

    def say_what_is_kept(self) -> None:
        prev = self.previous
        kept = len({k.split("[", 1)[0] for k in (prev.own or prev.earlier)})
        forced = [t for t in self.plan.tasks if t in prev.forced]
        again = f"; {', '.join(forced)} run again (--from)" if forced else ""
        if self.resumed is not None:
            article = "an" if self.resumed[:1] in "aeiou" else "a"
            self.reporter.note(f"resuming {article} {self.resumed} run: {kept} finished task{'s' * (kept != 1)} "
                               f"may be kept{again}")
        elif prev:
            self.reporter.note(f"keeping what {prev.earlier_id} finished{again}")

    def make_backend(self) -> Optional[str]:
        """The backend the tasks run on; the reason it cannot be had (a lost Dask cluster), or None."""
        plan = self.plan
        if self.options.backend is not None and plan.executor != "dask":  # made by the caller (a test's)
            self.backend = self.options.backend
            return None
        if plan.executor != "dask":
            self.backend = make_backend(plan.executor, min(plan.capacity, max(1, len(plan.tasks))))
            return None
        from . import dask  # only a run on a Dask cluster imports it

        try:  # the address and timeout were chosen and checked before the run opened (cli.run, schedule.launch)
            self.backend = self.options.backend or dask.DaskBackend(
                self.options.dask_address, self.sys_path, self.options.dask_timeout, self.resources,
                data=self.shipped)
        except dask.DaskUnavailable as e:  # a detached or scheduled run whose cluster went away since its check
            self.reporter.note(str(e))
            self.backend = make_backend("inline", 1)  # nothing runs on it: the run fails at once
            return str(e)
        return None

    def on_signal(self, signum, frame) -> None:
        self.signals.append(signal.Signals(signum).name)
        if getattr(self.backend, "executing", False):  # inline: the attempt runs right here
            raise Interrupted()

    # ---- the machine's effects ---------------------------------------------------------------------

    def append(self, record: Dict[str, Any], sync: bool = False) -> None:
        self.journal.append(record)
        if sync:
            self.commit(None, sync=True)

    def submit(self, attempt) -> None:
        self.backend.submit(attempt)

    def kill(self, key: str) -> None:
        self.backend.kill(key)

    def interrupt(self) -> None:
        self.backend.interrupt()

    def to_hooks(self) -> None:
        """Hooks run on a backend of their own, in this machine (never on a cluster); the report as the
        tasks left it is written first, for a hook to read ($FLOW_REPORT)."""
        report = self.state.report(self.secrets, state.REPORT_RESULT_BYTES)
        if self.machine is not None:
            report["status"] = self.machine.status
        try:
            state.write_json_atomic(os.path.join(self.run_folder, "report.json"), report)
        except OSError:
            pass  # the final report is written at the end all the same
        if getattr(self.backend, "runs_hooks", False):
            return
        self.backend.close()
        self.backend = make_backend("inline" if self.plan.executor == "inline" else "process", 1)

    def commit(self, m: Optional[Machine], sync: bool = False) -> None:
        """Write what is queued; a journal that cannot be written stops the run (it stays resumable)."""
        if m is not None and m.kept_keys:
            m.flush_keeps()
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


def fingerprint(program) -> str:
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
