"""The dask executor, the runner's side: attempts travel to a Dask distributed cluster.

Everything else stays in the runner (readiness, `when`, retries, timeouts,
concurrency, foreach, secrets, the journal, hooks); this backend only
submits attempts as futures and turns finished futures back into Outcomes.
`distributed` is imported here alone, and only when a run uses it. The
attempts of one turn of the runner's loop go in one `client.map` (one
graph update on the scheduler, not one per attempt), and a small outcome
comes back as an event on the run's topic ahead of its future, so that a
turn costs no `gather` round trip (run.daskhost, `EARLY_BYTES`).

A run leaves the cluster as it found it. It changes no setting of the
scheduler; it sets itself up with two plugins of its own, named after the
run (its tag: a random token, and a generation after a reconnection):
* on the scheduler, the run's guard (`Guard`; it and the rest of what runs
  on the cluster are in run.daskremote): it lets each attempt start once
  (see daskhost: a worker claims the key of an attempt queued on it before a
  thread takes it, and a second start, which Dask makes after a worker died,
  is refused), tells
  the run of the workers as they come and go, and when the run's client
  leaves (the run ended, or died even by SIGKILL) removes everything the run
  set up, the files plugin below included;
* on the workers, the run's files (`Files`): flow itself and the run's code
  (the `.py` files of the pipeline's folder and of its `pythonpath`
  folders) and the files it ships, as deflated zips (run.daskupload) written
  to `flow-runs/<tag>/` of each worker's directory, also on a worker that
  joins later; its setup starts the run's helper processes, its teardown
  kills them and removes the folder.

What travels, and how:
* an attempt: a plain dict, its arguments in the run's `results` codec; the
  outcome comes back as a plain dict with the result's codec bytes and the
  attempt's output, which is appended to the run's log file here. Its Dask
  key names the pipeline and the task (`orders.extract-1-<tag>`), so Dask's
  dashboard groups a run's attempts by task.
* the output while the attempt runs: the worker sends what its log gained
  (masked there, whole lines) as Dask events on the run's topic
  (`Worker.log_event`), which this client subscribes to; the handler only
  queues them, and `wait`, on the runner's thread, appends them to the
  attempt's log file. Each chunk names its first byte, so the outcome's
  whole log adds only what the events did not bring (a chunk that arrives
  late, out of order or twice is dropped); a worker that dies leaves what
  had arrived.
* the start of an attempt: a future waits in Dask's queue until a worker's
  thread is free, so the backend says `queues = True`; the worker sends
  `{"began": dask key, "t": wall time, "worker": address}` on the same topic
  when a thread takes it. `wait` returns it as a `worker.Began`,
  before the attempt's Outcome, once per attempt: one whose event was lost
  gets its Began (t = the Outcome's `started`) right before its Outcome. The
  runner counts the attempt's timeout from there, and kills it through
  `kill`; the worker's own deadline is a later backup (daskhost).
* the cluster's workers: the guard sends `{"workers": {address: [threads,
  resources]}}` whenever one joins or leaves. `capacity` follows it (the
  backend is `elastic`), and an attempt that no worker can take (none has
  the `resources` it asks for, or there is no worker at all) is named in a
  note at once and fails as `NoWorker` once it has waited
  FLOW_DASK_PLACEMENT_TIMEOUT seconds (default 60).

Losing the scheduler is not the attempts' failure. The client notices at
once (its futures are cancelled for `scheduler-connection-lost`); the
workers, which lose it too, shut down and stop the attempts they ran
(daskhost). The backend lets the old client go and dials the address again
for FLOW_DASK_RECONNECT seconds (default 30): once connected, it sets the
run up again (plugins, upload) and sends the attempts that were in flight,
and those submitted meanwhile, again, under the same attempt numbers: the
machine saw none of them end. If the scheduler does not come back in time,
`wait` returns a `Lost`: the run stops `interrupted`, spending no retry, and
`--resume` continues it. Dask's own log lines are kept out of flow's output;
the backend says what happens in `notes`, which the driver reports.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import signal
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence

from ..store import failures
from . import daskconfig
from .backends import Lost
from .capture import open_log
from .daskconfig import DEFAULT_TIMEOUT
from .daskremote import Remote
from .daskupload import MAX_CODE_BYTES, code_files, data_files, package_files, zip_files
from .worker import Attempt, Began, Outcome

# The runner's variables that describe its own machine: a task that names them sees the worker's values.
MACHINE_ENV = frozenset(("PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "LOGNAME", "HOSTNAME", "TMPDIR", "TMP",
                         "TEMP", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD",
                         "DISPLAY", "TERM"))
_SHELL_NAME = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")
# a file an attempt did not find (Python's FileNotFoundError, a command's stderr)
_MISSING = re.compile(r"No such file or directory: '([^'\n]+)'|([^\s:'\"]+): No such file or directory")
_PYTHON_NAME = re.compile(r"""(?:environ\s*\[\s*|environ\.get\(\s*|getenv\(\s*|environ\.setdefault\(\s*)"""
                          r"""["']([A-Za-z_][A-Za-z0-9_]*)["']""")
LOOK = 0.5  # seconds between looks for queued attempts that no worker can take
SHOWN_WORKERS = 4  # workers named in a note about an attempt no worker can take


class DaskUnavailable(Exception):
    """The dask executor cannot start: `distributed` is missing, or the scheduler cannot be reached."""


def import_distributed():
    try:
        import distributed
    except ImportError as e:
        import sys

        raise DaskUnavailable(
            f"the dask executor needs Dask's `distributed` package, which {sys.executable} cannot import ({e}); "
            "install it with: pip install 'dask[distributed]' (or pip install 'flowdsl[dask]')") from None
    return distributed


def probe(address: str, timeout: float) -> None:
    """A TCP connection to the scheduler's port, before a run is opened; raises DaskUnavailable."""
    import socket

    host, _, port = address.split("://", 1)[1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise DaskUnavailable(f"cannot reach the Dask scheduler at {address}: {e.strerror or e}") from None


class _Quiet(logging.Filter):
    """Keeps Dask's own log lines (a lost scheduler's ERRORs, its reconnection notices) out of flow's
    output while a run uses the cluster: the backend says what happens in flow's words."""

    def __init__(self) -> None:
        super().__init__()
        self.handlers: List[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("distributed") or record.name.startswith("tornado"))

    def install(self) -> _Quiet:
        loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                   if name.split(".")[0] in ("distributed", "tornado")]
        for logger in loggers + [logging.getLogger("distributed"), logging.root]:
            for h in logger.handlers:
                if h not in self.handlers:
                    h.addFilter(self)
                    self.handlers.append(h)
        return self

    def remove(self) -> None:
        for h in self.handlers:
            h.removeFilter(self)
        self.handlers = []


# ---- the backend -------------------------------------------------------------------------


class DaskBackend:
    """Attempts as futures on a Dask cluster; `wait` gathers the finished ones.

    An attempt waits in Dask's queue until a worker thread takes it: `wait`
    reports that moment as a Began, before the attempt's Outcome (see the
    module's docstring).
    """

    queues = True  # a submitted attempt is queued until its Began
    elastic = True  # `capacity` follows the cluster's workers

    def __init__(self, address: str, code_folders: Sequence[str], timeout: float = DEFAULT_TIMEOUT,
                 resources: Optional[Dict[str, Dict[str, float]]] = None, *, reconnect: Optional[float] = None,
                 placement: Optional[float] = None, data: Optional[Dict[str, str]] = None) -> None:
        """`data`: files and folders shipped with the code, {path relative to the pipeline's folder: local
        path}; on a worker that lacks the pipeline's folder, attempts run in a folder that holds them."""
        self.distributed = import_distributed()
        self.address = address
        self.timeout = timeout
        try:
            self.reconnect = daskconfig.reconnect_window() if reconnect is None else reconnect
            self.placement = daskconfig.placement_timeout() if placement is None else placement
        except ValueError as e:
            raise DaskUnavailable(str(e)) from None
        self.resources = resources or {}  # task -> its `resources { ... }`
        self.token = uuid.uuid4().hex[:12]
        self.generation = 0  # connections made after losing the scheduler
        self.done: queue.Queue[Any] = queue.Queue()
        self.futures: Dict[str, Any] = {}  # dask key -> future
        self.attempts: Dict[str, Attempt] = {}  # dask key -> the attempt
        self.keys: Dict[str, str] = {}  # attempt key -> dask key
        self.written: Dict[str, int] = {}  # dask key -> bytes of its log appended from events so far
        self.submitted: Dict[str, float] = {}  # dask key -> wall time it was submitted
        self.began: Dict[str, tuple] = {}  # dask key -> (worker's time it began, that time on our clock)
        self.reported: set = set()  # dask keys whose Began `wait` has returned
        self.pending: List[Outcome] = []  # attempts ended here (not sent, stopped in the queue): the next `wait`
        self.notes: List[str] = []  # what the user should hear (the driver reports them each turn)
        self.workers: Dict[str, tuple] = {}  # address -> (threads, resources), as the guard last told
        self.capacity = 1
        self.unplaced: Dict[str, float] = {}  # dask key -> since when no worker can take it
        self.told: set = set()  # (task, why) already said in a note
        self.looked = 0.0
        self.module_env: Dict[tuple, set] = {}  # (module, path) -> the environment variables its source names
        self.client: Any = None
        self.connected = False
        self.waiting: List[Attempt] = []  # to send once connected again: in flight when the scheduler was lost
        self.outbox: List[Attempt] = []  # submitted this turn, sent together when `wait` begins
        self.early: Dict[str, Dict[str, Any]] = {}  # dask key -> a small outcome its worker sent as an event
        self.lost_at: Optional[float] = None
        self.redialing = False
        self.rejoined: queue.Queue[Any] = queue.Queue()  # a client the redial connected
        self.gone = False  # Lost was returned: nothing more runs here
        self.closing = False
        self.quiet = _Quiet().install()
        try:
            self.remote = Remote()
            flow = zip_files(package_files(), "flowdsl")
            files = code_files(code_folders)
            code = zip_files(files, "flowcode") if files else None
            shipped = data_files(data or {})
            extra = zip_files(shipped, "flowdata") if shipped else None
            for upload, what in ((code, "code"), (extra, "data")):
                if upload is not None and len(upload[1]) > MAX_CODE_BYTES:
                    raise DaskUnavailable(f"the {what} to upload is {len(upload[1]) >> 20} MB; deploy it on the "
                                          "workers instead")
            self.uploads = [flow] + [u for u in (code, extra) if u is not None]
            self.flow_zip = flow[0]
            self.code_zip = code[0] if code else None
            self._attach(_connect(self.distributed, address, timeout))
        except Exception as e:  # a scheduler that refuses pickled plugins, a worker whose upload failed...
            self.quiet.remove()
            if isinstance(e, DaskUnavailable):
                raise
            raise DaskUnavailable(f"cannot prepare the Dask cluster at {address}: {type(e).__name__}: {e}") from None

    # ---- setting the run up on a scheduler -------------------------------------------------------

    def _attach(self, client) -> None:
        """Set the run up behind a connected client: its topic, its guard on the scheduler, its files on the
        workers (each setup starts the run's helpers there). Closes the client if that fails."""
        tag = self.token if not self.generation else f"{self.token}r{self.generation}"
        try:
            self.tag, self.topic, self.folder = tag, f"flow-output-{tag}", f"flow-runs/{tag}"
            self.guard, files, claim = f"flow-guard-{tag}", f"flow-run-{tag}", f"flow_claim_{tag}"
            client.subscribe_topic(self.topic, self.done.put)  # on the client's event loop: only a hand-over
            info = client.scheduler_info()
            self._cluster({a: [w.get("nthreads", 1), w.get("resources") or {}] for a, w in info["workers"].items()})
            register = getattr(client, "register_plugin", None)
            guard = self.remote.Guard(tag, client.id, self.topic, self.guard, files, claim)
            upload = self.remote.Files(tag, self.folder, self.uploads, self.flow_zip, claim)
            if register is not None:
                register(guard, name=self.guard)
                register(upload, name=files)
            else:  # before distributed 2023.9
                client.register_scheduler_plugin(guard, name=self.guard)
                client.register_worker_plugin(upload, name=files)
        except BaseException:
            _close_quietly(client)
            raise
        self.client = client
        self.scheduler = _scheduler_id(client)
        self.connected = True

    def _cluster(self, workers: Dict[str, Any]) -> None:
        """The cluster's workers, as the guard tells them: capacity is their threads."""
        self.workers = {a: (int(w[0]), dict(w[1] or {})) for a, w in workers.items()}
        self.capacity = sum(n for n, _ in self.workers.values())

    # ---- attempts -----------------------------------------------------------------------------

    def submit(self, attempt: Attempt) -> None:
        if not self.connected:
            self.waiting.append(attempt)  # sent once the scheduler is back (or stopped with the run)
            return
        # Sent with the others of this turn when `wait` begins: one message to the scheduler for all of
        # them (client.map), where one each costs the scheduler a graph update per attempt.
        self.outbox.append(attempt)

    def _flush(self) -> None:
        outbox, self.outbox = self.outbox, []
        if outbox:
            self._send(outbox)

    def _dask_key(self, attempt: Attempt) -> str:
        """`pipeline.task-N[-i][-cC]-tag`: Dask's dashboard groups tasks by the part before the first number.
        A sensor's checks of one attempt are starts of their own (`-cC`): the guard lets each start once."""
        pipeline = attempt.env.get("FLOW_PIPELINE", "flow").replace("-", "_")
        name, _, index = attempt.key.partition("[")
        index = index.rstrip("]")
        check = f"c{attempt.check}-" if attempt.check else ""
        return f"{pipeline}.{name}-{attempt.number}-{index + '-' if index else ''}{check}{self.tag}"

    def _send(self, attempts: List[Attempt]) -> None:
        """Submit attempts: those that take the same resources in one `client.map`."""
        from .daskhost import attempt_to_plain

        groups: Dict[tuple, List[tuple]] = {}  # resources -> [(attempt, dask key, payload)]
        for attempt in attempts:
            dask_key = self._dask_key(attempt)
            try:
                payload = attempt_to_plain(attempt, self.tag, dask_key)
                payload["topic"] = self.topic
                passed = self._environment(attempt)
                if attempt.kind == "run":  # a callable reads the helper's own environment, set for the attempt
                    payload["runner_env"] = passed
                else:  # a command's environment is the attempt's
                    payload["env"] = dict(passed, **payload["env"])
            except Exception as e:  # an argument the run's codec cannot carry
                self._end_here(attempt, type(e).__name__, f"cannot send the attempt to Dask: {e}")
                continue
            resources = self.resources.get(attempt.key.split("[", 1)[0])
            groups.setdefault(tuple(sorted((resources or {}).items())), []).append((attempt, dask_key, payload))
        for resources, batch in groups.items():
            if not self.connected or self.client.status != "running":
                # lost: the client would keep them for a scheduler without the run
                self.waiting.extend(a for a, _, _ in batch)
                self._disconnect()
                continue
            keys = [k for _, k, _ in batch]
            for attempt, dask_key, _ in batch:
                self.attempts[dask_key] = attempt
                self.keys[attempt.key] = dask_key
                self.submitted[dask_key] = time.time()
            try:
                futures = self.client.map(self.remote.attempt, [p for _, _, p in batch], [self.folder] * len(batch),
                                          [self.flow_zip] * len(batch), key=keys, pure=False, retries=0,
                                          resources=dict(resources) or None)
            except Exception as e:
                lost = self.client.status != "running"
                for attempt, dask_key, _ in batch:
                    self._forget(dask_key)
                    if lost:
                        self.waiting.append(attempt)
                    else:
                        self._end_here(attempt, "DaskError", f"cannot submit the attempt: {type(e).__name__}: {e}")
                if lost:
                    self._disconnect()
                continue
            for dask_key, future in zip(keys, futures):
                self.futures[dask_key] = future
                future.add_done_callback(self.done.put)  # on the client's event loop: only a hand-over

    def _environment(self, attempt: Attempt) -> Dict[str, str]:
        """The variables of the runner's environment that the attempt names, as a local attempt sees them: `$X`
        in a command, `os.environ["X"]`, `os.environ.get("X")` or `os.getenv("X")` in the module of a callable.
        Nothing else travels: not the runner's other variables (its secrets above all), nor those of its
        machine (MACHINE_ENV), for which the worker's own values fit."""
        if attempt.kind == "run":
            names = self._names_in_module(attempt.target.split(":", 1)[0], attempt.sys_path)
        else:
            names = set(_SHELL_NAME.findall(attempt.target if attempt.kind == "sh" else " ".join(attempt.argv)))
        return {n: os.environ[n] for n in sorted(names)
                if n in os.environ and n not in MACHINE_ENV and not n.startswith("FLOW_")}

    def _names_in_module(self, module: str, sys_path: Sequence[str]) -> set:
        """The environment variables a module's source names (read, never imported), once per run."""
        key = (module, tuple(sys_path))
        names = self.module_env.get(key)
        if names is None:
            names = set()
            parts = module.split(".")
            for base in sys_path:
                found = [p for p in (os.path.join(base, *parts) + ".py", os.path.join(base, *parts, "__init__.py"))
                         if os.path.isfile(p)]
                if found:
                    try:
                        with open(found[0], encoding="utf-8", errors="replace") as f:
                            names = set(_PYTHON_NAME.findall(f.read()))
                    except OSError:
                        pass
                    break
            self.module_env[key] = names
        return names

    def _end_here(self, attempt: Attempt, kind: str, message: str) -> None:
        """An attempt that ends without running: reported by the next `wait`."""
        now = time.time()
        self.pending.append(Outcome(attempt.key, attempt.number, False, started=now, finished=now,
                                    error={"type": kind, "message": message, "traceback": ""}))

    def _forget(self, dask_key: str) -> Optional[Attempt]:
        attempt = self.attempts.pop(dask_key, None)
        self.futures.pop(dask_key, None)
        if attempt is not None and self.keys.get(attempt.key) == dask_key:
            del self.keys[attempt.key]
        self.written.pop(dask_key, None)
        self.submitted.pop(dask_key, None)
        self.began.pop(dask_key, None)
        self.reported.discard(dask_key)
        self.unplaced.pop(dask_key, None)
        self.early.pop(dask_key, None)
        return attempt

    def wait(self, timeout: Optional[float]) -> List[Any]:
        """Outcomes and Began items in the order they happened, within `timeout`; a Lost once the scheduler
        is gone for good.

        An attempt's Began always comes before its Outcome (in the same list or
        an earlier one), once; none comes for an attempt that was killed.
        """
        if self.connected and (self.client.status != "running" or _scheduler_id(self.client) != self.scheduler):
            self._disconnect()  # lost, or (a Dask whose client dialled again by itself) another scheduler now
        if self.connected:
            self._flush()
        if self.pending:  # attempts that ended here are reported at once
            pending, self.pending = self.pending, []
            out: List[Any] = []
            for outcome in pending:
                self._report(out, outcome)
            return out
        if not self.connected:
            return self._reconnecting(timeout)
        end = None if timeout is None else time.monotonic() + timeout
        if self.unplaced and (end is None or end > time.monotonic() + LOOK):
            end = time.monotonic() + LOOK  # attempts no worker can take: look again soon
        items: List[Any] = []  # finished futures and (dask key, Began), as they arrived
        ended: set = set()  # the futures in `items`
        wrote = False
        while True:  # output events are written as they come; finished futures and starts end the wait
            left = None if end is None else end - time.monotonic()
            try:
                if items or wrote or (left is not None and left <= 0):
                    item = self.done.get_nowait()
                else:
                    item = self.done.get(timeout=left)
            except queue.Empty:
                break
            if not isinstance(item, (tuple, list)):
                if item not in ended:
                    ended.add(item)
                    items.append(item)
                continue
            event = item[1] if len(item) > 1 else None
            if not isinstance(event, dict):
                continue
            if "began" in event:  # (timestamp, {"began", "t", "worker"}): it started
                began = self._began(event)
                if began is not None:
                    # Futures that ended before it (their state came first, on the same stream from the
                    # scheduler) come before it, although their done callbacks (on a thread of Dask's) may
                    # not have reached the queue yet: the attempt that left a thread free ends before the
                    # one that took it begins. Only an attempt that began can have left a thread: those
                    # are looked at (a few per worker thread), not every future in flight.
                    for k in list(self.began):
                        f = self.futures.get(k)
                        if f is not None and f not in ended and (f.done() or k in self.early):
                            ended.add(f)
                            items.append(f)
                    items.append((event["began"], began))
            elif "done" in event:  # a small outcome, sent by its worker ahead of the future (run.daskhost)
                if event["done"] in self.attempts and isinstance(event.get("outcome"), dict):
                    self.early[event["done"]] = event["outcome"]
            elif "workers" in event:  # the guard's word that the cluster changed
                if isinstance(event["workers"], dict):
                    self._cluster(event["workers"])
            else:  # (scheduler's timestamp, {"key", "at", "data"}): output
                self._append(event)
                wrote = True
        out = self._settle(items)
        if self.connected:
            out.extend(self._look())
        return out

    def _settle(self, items: List[Any]) -> List[Any]:
        """What `wait` collected, as Began items and Outcomes; attempts cut off by a lost scheduler wait to be
        sent again instead."""
        items = [x for x in items if isinstance(x, tuple) or self.futures.get(x.key) is x]  # not one killed
        done = [x for x in items if not isinstance(x, tuple)]
        early = {f.key: self.early[f.key] for f in done if f.key in self.early}  # no gather for these
        finished = [f for f in done if f.status == "finished" and f.key not in early]
        plains: List[Any] = []
        if finished:
            try:
                plains = self.client.gather(finished)
            except Exception:  # lost between finishing and the gather: one by one
                plains = [_result_or_none(f) for f in finished]
        by_key = dict(zip([f.key for f in finished], plains))
        by_key.update(early)
        broken = self.client.status != "running" or any(_connection_lost(f) for f in done)
        out: List[Any] = []
        for x in items:
            if isinstance(x, tuple):  # (dask key, Began): not if its outcome came first and brought it along
                if x[0] in self.attempts and x[0] not in self.reported:
                    self.reported.add(x[0])
                    out.append(x[1])
                continue
            plain = by_key.get(x.key)
            if broken and plain is None and x.status != "error":
                continue  # the scheduler went with it: left to `_disconnect`, sent again after reconnecting
            written = self.written.get(x.key, 0)
            submitted = self.submitted.get(x.key)
            began_at = self.began.get(x.key)
            reported = x.key in self.reported
            attempt = self._forget(x.key)
            if plain is None:
                outcome = _lost(attempt, x, began_at[1] if began_at else None)
            else:
                outcome = self._outcome(attempt, plain, written, began_at, submitted)
            self._report(out, outcome, reported)
        if broken:
            self._disconnect()
        return out

    def _report(self, out: List[Any], outcome: Outcome, reported: bool = False) -> None:
        """The Outcome, after its Began if none was returned yet (its event was late or lost, or it never left
        the queue). Its `started` is the Began's time, whichever it is."""
        if not reported:
            out.append(Began(outcome.key, outcome.number, outcome.started, outcome.worker))
        out.append(outcome)

    def _began(self, event: Dict[str, Any]) -> Optional[Began]:
        """The guard's word that an attempt started; None for one killed or ended, or a second word."""
        dask_key, t = event.get("began"), event.get("t")
        attempt = self.attempts.get(dask_key) if isinstance(dask_key, str) else None
        if attempt is None or dask_key in self.began or not isinstance(t, (int, float)):
            return None
        self.began[dask_key] = (t, self._our_clock(t, self.submitted.get(dask_key)))
        self.unplaced.pop(dask_key, None)
        worker = event.get("worker") if isinstance(event.get("worker"), str) else None
        return Began(attempt.key, attempt.number, self.began[dask_key][1], worker)

    @staticmethod
    def _our_clock(t: float, submitted: Optional[float]) -> float:
        """A worker's wall time, kept between the submission and now: another machine's clock may be off."""
        return min(max(t, submitted if submitted is not None else t), time.time())

    def _append(self, chunk: Any) -> None:
        """A piece of a running attempt's log, from its worker: appended if it is the next one."""
        try:
            dask_key, at, data = chunk["key"], chunk["at"], chunk["data"]
        except (TypeError, KeyError):
            return
        attempt = self.attempts.get(dask_key)
        written = self.written.get(dask_key, 0)
        if attempt is None or not isinstance(data, bytes) or at > written or at + len(data) <= written:
            return  # ended or killed, a gap (the outcome fills it), or already written
        data = data[written - at:]
        try:
            with open_log(attempt.log_path) as f:
                f.write(data)
        except OSError:
            return
        self.written[dask_key] = written + len(data)

    def _outcome(self, attempt: Attempt, plain: Dict[str, Any], written: int = 0, began: Optional[tuple] = None,
                 submitted: Optional[float] = None) -> Outcome:
        log = plain.get("log")
        if log:
            log = log[written:]  # the events brought the first `written` bytes
        if log:
            with open_log(attempt.log_path) as f:
                f.write(log)
        fields = {k: v for k, v in plain.items() if k in Outcome.__dataclass_fields__}  # cpu, worker, if known
        fields.update(key=attempt.key, number=attempt.number)
        # `started` is when the worker took it up (its Began), on our clock: the worker's times move with it
        worker_t, ours = began if began is not None else (fields.get("started", 0.0), None)
        if ours is None:
            ours = self._our_clock(worker_t, submitted)
        shift = ours - worker_t
        fields["started"] = ours
        fields["finished"] = fields.get("finished", worker_t) + shift
        if isinstance(fields.get("error"), dict):
            fields["error"] = _hint_missing_file(attempt, fields["error"])
        return Outcome(**fields)

    # ---- attempts no worker can take ---------------------------------------------------------

    def _look(self) -> List[Any]:
        """Queued attempts that no worker of the cluster can take (none offers the resources they ask for, or
        there is no worker): said at once, failed as NoWorker once they waited `placement` seconds."""
        now = time.monotonic()
        if now - self.looked < LOOK:
            return []
        self.looked = now
        out: List[Any] = []
        for dask_key in [k for k in self.futures if k not in self.began]:
            attempt = self.attempts[dask_key]
            name = attempt.key.split("[", 1)[0]
            why = self._unplaceable(self.resources.get(name))
            if why is None:
                self.unplaced.pop(dask_key, None)
                continue
            since = self.unplaced.setdefault(dask_key, now)
            if (name, why) not in self.told:
                self.told.add((name, why))
                self.notes.append(f"{attempt.key} waits in Dask's queue: {why}; it fails if no worker can take it "
                                  f"within {self.placement:g}s")
            if now - since >= self.placement:
                future = self.futures.get(dask_key)
                self._forget(dask_key)
                try:
                    future.cancel()
                except Exception:
                    pass
                t = time.time()
                self._report(out, Outcome(attempt.key, attempt.number, False, started=t, finished=t, error={
                    "type": "NoWorker", "message": f"no Dask worker could take it within {self.placement:g}s: {why}",
                    "traceback": ""}))
        return out

    def _unplaceable(self, need: Optional[Dict[str, float]]) -> Optional[str]:
        """Why no worker can take an attempt that needs `need`, or None when one can."""
        if not self.workers:
            return f"the cluster at {self.address} has no workers"
        if not need:
            return None
        for _, offered in self.workers.values():
            if all(_number(offered.get(k)) >= _number(v) for k, v in need.items()):
                return None
        asked = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in need.items())
        shown = []
        for address, (_, offered) in sorted(self.workers.items())[:SHOWN_WORKERS]:
            text = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in offered.items())
            shown.append(f"{address}: {text or 'none'}")
        more = len(self.workers) - len(shown)
        return (f"it asks for resources {asked}, which no worker offers (offered: {'; '.join(shown)}"
                + (f"; and {more} more" if more > 0 else "") + ")")

    # ---- losing the scheduler, and finding it again ---------------------------------------------

    def _disconnect(self) -> None:
        """The scheduler is lost: the attempts in flight wait to be sent again, and the address is dialled
        until FLOW_DASK_RECONNECT seconds have passed."""
        if not self.connected:
            return
        self.connected = False
        self.lost_at = time.monotonic()
        again = [a for k, a in self.attempts.items()]
        for dask_key in list(self.attempts):
            if dask_key in self.began:  # it had started: its log says where the second start begins
                _note_in_log(self.attempts[dask_key], "the Dask scheduler was lost: this attempt starts again "
                                                      "once flow reconnects")
            self._forget(dask_key)
        self.waiting = again + self.waiting + self.outbox
        self.outbox = []
        old, self.client = self.client, None
        threading.Thread(target=_close_quietly, args=(old,), daemon=True, name="flow-dask-close").start()
        self.notes.append(f"lost the Dask scheduler at {self.address}; reconnecting for up to {self.reconnect:g}s"
                          + (f" ({len(self.waiting)} attempt{'s' * (len(self.waiting) != 1)} to send again)"
                             if self.waiting else ""))
        self._redial()

    def _redial(self) -> None:
        self.redialing = True
        deadline = self.lost_at + self.reconnect

        def dial() -> None:
            try:
                while not self.closing and time.monotonic() < deadline:
                    left = deadline - time.monotonic()
                    try:
                        client = _connect(self.distributed, self.address, max(0.5, min(left, self.timeout, 5.0)))
                    except DaskUnavailable:
                        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
                        continue
                    if self.closing:
                        _close_quietly(client)
                    else:
                        self.rejoined.put(client)
                    return
            finally:
                self.redialing = False

        threading.Thread(target=dial, daemon=True, name="flow-dask-redial").start()

    def _reconnecting(self, timeout: Optional[float]) -> List[Any]:
        """`wait` while the scheduler is lost: a reconnection sets the run up again and sends what waits; a
        Lost once the time to reconnect is over."""
        if self.gone:
            if timeout:
                time.sleep(min(timeout, 1.0))
            return []
        try:
            client = self.rejoined.get(timeout=0.5 if timeout is None else max(0.0, min(timeout, 0.5)))
        except queue.Empty:
            if not self.redialing and self.rejoined.empty():
                self.gone = True
                return [Lost(f"the Dask scheduler at {self.address} was lost and did not come back within "
                             f"{self.reconnect:g}s")]
            return []
        self.generation += 1
        try:
            self._attach(client)
        except Exception as e:  # it answered, and failed to take the run: dial on while there is time
            self.notes.append(f"reconnected to {self.address}, but cannot set the run up there: "
                              f"{type(e).__name__}: {e}")
            if time.monotonic() < self.lost_at + self.reconnect:
                self._redial()
            return []
        again, self.waiting = self.waiting, []
        self.notes.append(f"reconnected to the Dask scheduler at {self.address} and uploaded the run's code again"
                          + (f"; {len(again)} attempt{'s' * (len(again) != 1)} sent again" if again else ""))
        if again:
            self._send(again)
        return []

    # ---- stopping ---------------------------------------------------------------------------------

    def kill(self, key: str) -> None:
        """Stop one attempt (its timeout passed): cancel its future; the worker kills its process group."""
        self.waiting = [a for a in self.waiting if a.key != key]
        self.outbox = [a for a in self.outbox if a.key != key]
        dask_key = self.keys.get(key)
        future = self.futures.get(dask_key) if dask_key else None
        if future is not None:
            self._forget(dask_key)
            try:
                self.client.run(self.remote.signal, self.tag, signal.SIGKILL, key, self.folder, self.flow_zip,
                                wait=False)
                future.cancel()
            except Exception:
                pass  # the scheduler is gone: its workers stop what it ran

    def interrupt(self) -> None:
        """Ask every running attempt to stop (SIGINT in its process: on_abort runs); they report back.

        Those still in Dask's queue are cancelled, and reported as Interrupted by the next `wait`: they
        would start later otherwise. The workers refuse to start any more of the run's attempts (one whose
        start is on its way, or that Dask hands a thread an interrupted attempt freed).
        """
        for attempt in self.waiting:  # the scheduler is lost: they run nowhere
            self._end_here(attempt, failures.INTERRUPTED,
                           "stopped when the run was interrupted (the Dask scheduler was lost)")
        for attempt in self.outbox:  # never sent
            self._end_here(attempt, failures.INTERRUPTED, "stopped before it was sent, when the run was interrupted")
        self.waiting, self.outbox = [], []
        if not self.futures or not self.connected:
            return
        try:
            self.client.run(self.remote.signal, self.tag, signal.SIGINT, None, self.folder, self.flow_zip,
                            wait=False)
        except Exception:
            pass
        for dask_key in [k for k in self.futures if k not in self.began]:
            future = self.futures[dask_key]
            attempt = self._forget(dask_key)
            self._end_here(attempt, failures.INTERRUPTED, "stopped in Dask's queue when the run was interrupted")
            try:
                future.cancel()
            except Exception:
                pass

    def close(self) -> None:
        """Let go of the cluster, leaving nothing behind: the run's guard removes its plugins (the workers
        kill the run's helpers and remove its upload) before the client leaves."""
        self.closing = True
        try:
            if self.connected:
                try:
                    if self.futures:
                        self.client.cancel(list(self.futures.values()))
                    self.client.run_on_scheduler(self.remote.forget_run, self.guard)
                except Exception:
                    pass  # the guard forgets the run anyway when the client leaves
        finally:
            self.futures.clear()
            self.outbox = []
            if self.client is not None:
                _close_quietly(self.client)
            while not self.rejoined.empty():
                _close_quietly(self.rejoined.get_nowait())
            self.connected = False
            self.quiet.remove()


def _hint_missing_file(attempt: Attempt, error: Dict[str, Any]) -> Dict[str, Any]:
    """A file the attempt did not find on its worker but that the runner's machine has: say why."""
    message = error.get("message")
    if not isinstance(message, str):
        return error
    for m in _MISSING.finditer(message):
        path = m.group(1) or m.group(2)
        if os.path.exists(path if os.path.isabs(path) else os.path.join(attempt.cwd, path)):
            error = dict(error)
            error["message"] = (f"{message}\n(`{path}` is on the runner's machine, not on the Dask worker that ran "
                                "this attempt: only the `.py` files of the pipeline's folders travel with the code; "
                                "put it where every worker can read it, or ship it with the code: "
                                f"`ship \"{path}\"` in the pipeline block)")
            break
    return error


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _note_in_log(attempt: Attempt, text: str) -> None:
    try:
        with open_log(attempt.log_path) as f:
            f.write(f"[flow] {text}\n".encode())
    except OSError:
        pass


def _connect(distributed, address: str, timeout: float):
    """A connected Client, or DaskUnavailable once `timeout` has passed.

    Client's own timeout covers reaching the port, not a peer that accepts
    and never answers; so the connection is made on a thread that is left
    behind (a daemon) when it takes too long.
    """
    box: Dict[str, Any] = {}

    def connect() -> None:
        try:
            # direct_to_workers: results come straight from the worker that holds them, not through the scheduler
            box["client"] = distributed.Client(address, timeout=timeout, set_as_default=False,
                                               direct_to_workers=True)
        except Exception as e:  # OSError, TimeoutError, or the peer is not a scheduler
            box["error"] = e

    thread = threading.Thread(target=connect, daemon=True, name="flow-dask-connect")
    thread.start()
    thread.join(timeout + 1)
    if "client" in box:
        _no_redial(box["client"])
        return box["client"]
    why = box.get("error") or "no answer"
    raise DaskUnavailable(f"cannot reach the Dask scheduler at {address} within {timeout:g}s: {why}")


def _no_redial(client) -> None:
    """Dask's client dials a lost scheduler again by itself and goes on with whatever answers, which may not
    know the run (a restarted scheduler has none of its plugins; the same one forgot the run when its client
    left). flow dials again itself (DaskBackend._disconnect), so this client only lets its futures go,
    cancelled for `scheduler-connection-lost` as Dask's own does, and waits to be closed. (Client._reconnect is
    internal: if it is gone, Dask's own reconnection stays, and a new scheduler is told by its id.)"""
    if not callable(getattr(client, "_reconnect", None)) or not isinstance(getattr(client, "futures", None), dict):
        return

    async def let_go() -> None:
        client.status = "connecting"
        client.scheduler_comm = None  # its report loop ends here
        for state in list(client.futures.values()):
            state.cancel(reason="scheduler-connection-lost", msg="the client lost the Dask scheduler")
        client.futures.clear()

    client._reconnect = let_go


def _scheduler_id(client) -> Optional[str]:
    identity = getattr(client, "_scheduler_identity", None)
    return identity.get("id") if isinstance(identity, dict) else None


def _close_quietly(client) -> None:
    try:
        client.close(timeout=2)
    except Exception:
        pass


def _connection_lost(future) -> bool:
    """A future the client cancelled because it lost the scheduler (not one a worker's death ended)."""
    if future.status != "cancelled":
        return False
    exc = getattr(getattr(future, "_state", None), "exception", None)  # FutureCancelledError, with its reason
    return getattr(exc, "reason", None) == "scheduler-connection-lost"


def _result_or_none(future) -> Optional[Dict[str, Any]]:
    try:
        return future.result(timeout=5)
    except Exception:
        return None


def _lost(attempt: Attempt, future, began: Optional[float] = None) -> Outcome:
    """A future that erred or was cancelled without our asking: the worker died, or the scheduler went."""
    now = time.time()
    began = now if began is None else min(began, now)
    message = "the Dask future was cancelled (the scheduler restarted or was lost)"
    kind = failures.WORKER_DIED
    if future.status == "error":
        try:
            exc = future.exception(timeout=5)
        except Exception as e:
            exc = e
        name = type(exc).__name__
        if name == "KilledWorker":
            message = f"the Dask worker running it died ({exc})"
        else:
            kind, message = "DaskError", f"{name}: {exc}"
    return Outcome(attempt.key, attempt.number, False, error={"type": kind, "message": message, "traceback": ""},
                   started=began, finished=now)
