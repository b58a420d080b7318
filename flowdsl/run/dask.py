"""The dask executor, the runner's side: attempts travel to a Dask distributed cluster.

Everything else stays in the runner (readiness, `when`, retries, timeouts,
concurrency, foreach, secrets, the journal, hooks); this backend only
submits attempts as futures and turns finished futures back into Outcomes.
`distributed` is imported here alone, and only when a run uses it.

What travels, and how:
* flow itself: its package as a zip, uploaded with Dask's UploadFile worker
  plugin (load=False: nothing is imported on upload); each worker runs
  attempts through `daskhost`, loaded from that zip (see there).
* the run's code: the `.py` files of the pipeline's folder and of its
  `pythonpath` folders, as a second zip the same way. Code installed on the
  workers (site-packages, the workers' PYTHONPATH) is found as well.
* an attempt: a plain dict, its arguments in the run's `results` codec; the
  outcome comes back as a plain dict with the result's codec bytes and the
  attempt's output, which is appended to the run's log file here.
* the output while the attempt runs: the worker sends what its log gained
  (masked there, whole lines) as Dask events on the run's topic
  (`Worker.log_event`), which this client subscribes to; the handler only
  queues them, and `wait`, on the runner's thread, appends them to the
  attempt's log file. Each chunk names its first byte, so the outcome's
  whole log adds only what the events did not bring (a chunk that arrives
  late, out of order or twice is dropped); a worker that dies leaves what
  had arrived.
* the start of an attempt: a future waits in Dask's queue until a worker's
  thread is free, so the backend says `queues = True`, and the worker sends
  `{"began": dask key, "t": wall time}` on the same topic as it takes the
  attempt up. `wait` returns it as a `worker.Began`, before the attempt's Outcome, once per attempt: one whose
  event was lost gets its Began (t = the Outcome's `started`) right before its
  Outcome. The runner counts the attempt's timeout from there, and kills it
  through `kill`; the worker's own deadline is a later backup (daskhost).

Dask must not run an attempt twice behind flow's back: futures are submitted
with `retries=0`, and the scheduler's `allowed-failures` is set to 0, so a
task whose worker dies errs at once (KilledWorker, reported as WorkerDied)
instead of being started again on another worker; the task's `retry` decides.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import signal
import tempfile
import time
import uuid
import zipfile
from typing import Any, Dict, List, Optional, Sequence

from .capture import open_log
from .daskconfig import DEFAULT_TIMEOUT
from .worker import Attempt, Began, Outcome

SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}
MAX_CODE_BYTES = 64 << 20  # the run's code zip; past this, deploy the code on the workers instead


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


# ---- what travels ----------------------------------------------------------------------


def _package_files() -> Dict[str, bytes]:
    """flow's own modules, {archive name: source}, from the checkout, the wheel or the zipapp."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files: Dict[str, bytes] = {}
    if os.path.isdir(root):
        for folder, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(names):
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, os.path.dirname(root)).replace(os.sep, "/")] = f.read()
        return files
    archive = root  # inside a zipapp: .../flow.pyz/flowdsl (or .../flow.pyz/__pyc__/cpython-3NN/flowdsl)
    while not os.path.isfile(archive):
        archive = os.path.dirname(archive)
    with zipfile.ZipFile(archive) as z:  # the sources at the archive's root, for any interpreter
        for name in sorted(z.namelist()):
            if name.startswith("flowdsl/") and name.endswith(".py"):
                files[name] = z.read(name)
    return files


def _code_files(folders: Sequence[str]) -> Dict[str, bytes]:
    """The `.py` files of the pipeline's folders, each folder's tree at the archive's root (as on sys.path)."""
    files: Dict[str, bytes] = {}
    for base in folders:
        if not os.path.isdir(base):
            continue
        for folder, dirs, names in os.walk(base):
            # hidden folders (.flow, .git, .venv) and virtual environments are not the run's code
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                             and not os.path.exists(os.path.join(folder, d, "pyvenv.cfg")))
            for name in sorted(names):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), base).replace(os.sep, "/")
                    if rel not in files:  # the first folder on the path wins, as in an import
                        with open(os.path.join(folder, name), "rb") as f:
                            files[rel] = f.read()
    return files


def _zip(files: Dict[str, bytes], prefix: str) -> tuple:
    """(file name by content, zip bytes), reproducible: fixed dates, sorted names."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), files[name])
    return f"{prefix}-{digest.hexdigest()[:16]}.zip", buffer.getvalue()


# ---- what runs on the cluster (pickled by value: the workers need no flow installed) ------------


def _remote_functions():
    def load(folder, flow_zip):
        """daskhost from the uploaded zip, once per worker process and version of flow."""
        import sys

        name = "_flowdsl_daskhost_" + flow_zip[:-4].replace("-", "_").replace(".", "_")
        host = sys.modules.get(name)
        if host is None:
            import os
            import types
            import zipfile

            path = os.path.join(folder, flow_zip)
            with zipfile.ZipFile(path) as z:
                source = z.read("flowdsl/run/daskhost.py")
            host = types.ModuleType(name)
            host.__file__ = path + "/flowdsl/run/daskhost.py"
            sys.modules[name] = host
            exec(compile(source, host.__file__, "exec"), host.__dict__)
        return host

    def flow_attempt(payload, flow_zip, code_zip):
        from distributed import get_worker

        return load(get_worker().local_directory, flow_zip).run_attempt(payload, flow_zip, code_zip)

    # async: `client.run(..., wait=False)` takes only coroutine functions (they run on the worker's loop)
    async def flow_signal(token, signum, key, flow_zip, dask_worker):
        return load(dask_worker.local_directory, flow_zip).signal_attempts(token, signum, key)

    async def flow_warm(flow_zip, code_zip, dask_worker):
        """A helper per thread, started as the run begins: the first attempts need not wait for one."""
        return load(dask_worker.local_directory, flow_zip).warm(dask_worker, flow_zip, code_zip)

    def no_second_runs(dask_scheduler):
        before = dask_scheduler.allowed_failures
        dask_scheduler.allowed_failures = 0
        return before

    def drop_topic(topic, dask_scheduler):
        """Forget a run's output events and their subscriber (Broker is internal: if it changed, they stay)."""
        topics = getattr(getattr(dask_scheduler, "_broker", None), "_topics", None)
        if isinstance(topics, dict):
            topics.pop(topic, None)

    return flow_attempt, flow_signal, flow_warm, no_second_runs, drop_topic


# ---- the backend -------------------------------------------------------------------------


class DaskBackend:
    """Attempts as futures on a Dask cluster; `wait` gathers the finished ones.

    An attempt waits in Dask's queue until a worker thread takes it: `wait`
    reports that moment as a Began, before the attempt's Outcome (see the
    module's docstring).
    """

    queues = True  # a submitted attempt is queued until its Began

    def __init__(self, address: str, code_folders: Sequence[str], timeout: float = DEFAULT_TIMEOUT,
                 resources: Optional[Dict[str, Dict[str, float]]] = None) -> None:
        distributed = import_distributed()
        self.address = address
        self.client = _connect(distributed, address, timeout)
        self.token = uuid.uuid4().hex[:12]
        self.remote, self.signal, warm, no_second_runs, self.drop_topic = _remote_functions()
        self.done: queue.Queue[Any] = queue.Queue()
        self.futures: Dict[str, Any] = {}  # dask key -> future
        self.attempts: Dict[str, Attempt] = {}  # dask key -> the attempt
        self.keys: Dict[str, str] = {}  # attempt key -> dask key
        self.written: Dict[str, int] = {}  # dask key -> bytes of its log appended from events so far
        self.submitted: Dict[str, float] = {}  # dask key -> wall time it was submitted
        self.began: Dict[str, tuple] = {}  # dask key -> (worker's time it began, that time on our clock)
        self.reported: set = set()  # dask keys whose Began `wait` has returned
        self.topic = f"flow-output-{self.token}"  # the run's output events
        self.plugins: List[str] = []
        self.pending: List[Outcome] = []  # attempts ended here (not sent, stopped in the queue): the next `wait`
        self.resources = resources or {}  # task -> its `resources { ... }`
        try:
            self.client.run_on_scheduler(no_second_runs)
            self.client.subscribe_topic(self.topic, self.done.put)  # on the client's event loop: only a hand-over
            self.flow_zip = self._upload(*_zip(_package_files(), "flowdsl"))
            files = _code_files(code_folders)
            self.code_zip = self._upload(*_zip(files, "flowcode")) if files else None
            self.client.run(warm, self.flow_zip, self.code_zip, wait=False)
            self.capacity = sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values())
        except Exception as e:  # a scheduler that refuses pickled functions, a worker whose upload failed...
            self.client.close()
            if isinstance(e, DaskUnavailable):
                raise
            raise DaskUnavailable(f"cannot prepare the Dask cluster at {address}: {type(e).__name__}: {e}") from None

    def _upload(self, name: str, data: bytes) -> str:
        from distributed.diagnostics.plugin import UploadFile

        if len(data) > MAX_CODE_BYTES:
            raise DaskUnavailable(f"the code to upload is {len(data) >> 20} MB; deploy it on the workers instead")
        with tempfile.TemporaryDirectory(prefix="flow-upload-") as folder:
            path = os.path.join(folder, name)
            with open(path, "wb") as f:
                f.write(data)
            plugin = UploadFile(path, load=False)  # load=False: the upload imports nothing on the workers
        register = getattr(self.client, "register_plugin", None) or self.client.register_worker_plugin
        register(plugin, name=f"flow-upload-{name}")
        self.plugins.append(f"flow-upload-{name}")
        return name

    def submit(self, attempt: Attempt) -> None:
        from .daskhost import attempt_to_plain

        dask_key = f"flow-{self.token}-{attempt.key}-{attempt.number}"
        try:
            payload = attempt_to_plain(attempt, self.token, dask_key)
            payload["topic"] = self.topic
        except Exception as e:  # an argument the run's codec cannot carry
            now = time.time()
            self.pending.append(Outcome(attempt.key, attempt.number, False, started=now, finished=now, error={
                "type": type(e).__name__, "message": f"cannot send the attempt to Dask: {e}", "traceback": ""}))
            return
        self.attempts[dask_key] = attempt
        self.keys[attempt.key] = dask_key
        self.submitted[dask_key] = time.time()
        future = self.client.submit(self.remote, payload, self.flow_zip, self.code_zip, key=dask_key, pure=False,
                                    retries=0, resources=self.resources.get(attempt.key.split("[", 1)[0]))
        self.futures[dask_key] = future
        future.add_done_callback(self.done.put)  # on the client's event loop: only a hand-over

    def wait(self, timeout: Optional[float]) -> List[Any]:
        """Outcomes and Began items in the order they happened, within `timeout`.

        An attempt's Began always comes before its Outcome (in the same list or
        an earlier one), once; none comes for an attempt that was killed.
        """
        if self.pending:  # attempts that ended here are reported at once
            pending, self.pending = self.pending, []
            out: List[Any] = []
            for outcome in pending:
                self._report(out, outcome)
            return out
        end = None if timeout is None else time.monotonic() + timeout
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
            elif isinstance(item[1], dict) and "began" in item[1]:  # (timestamp, {"began", "t"}): it started
                began = self._began(item[1])
                if began is not None:
                    # Futures that ended before it (their state came first, on the same stream from the
                    # scheduler) come before it, although their done callbacks (on a thread of Dask's) may
                    # not have reached the queue yet: the attempt that left a thread free ends before the
                    # one that took it begins.
                    for f in list(self.futures.values()):
                        if f not in ended and f.done():
                            ended.add(f)
                            items.append(f)
                    items.append((item[1]["began"], began))
            else:  # (scheduler's timestamp, {"key", "at", "data"}): output
                self._append(item[1])
                wrote = True
        items = [x for x in items if isinstance(x, tuple) or self.futures.get(x.key) is x]  # not one killed
        done = [x for x in items if not isinstance(x, tuple)]
        finished = [f for f in done if f.status == "finished"]
        plains: List[Any] = []
        if finished:
            try:
                plains = self.client.gather(finished)
            except Exception:  # lost between finishing and the gather: one by one
                plains = [_result_or_none(f) for f in finished]
        by_key = dict(zip([f.key for f in finished], plains))
        out = []
        for x in items:
            if isinstance(x, tuple):  # (dask key, Began): not if its outcome came first and brought it along
                if x[0] in self.attempts and x[0] not in self.reported:
                    self.reported.add(x[0])
                    out.append(x[1])
                continue
            attempt = self.attempts.pop(x.key)
            del self.futures[x.key]
            if self.keys.get(attempt.key) == x.key:
                del self.keys[attempt.key]
            plain = by_key.get(x.key)
            written = self.written.pop(x.key, 0)
            submitted = self.submitted.pop(x.key, None)
            began_at = self.began.pop(x.key, None)
            reported = x.key in self.reported
            self.reported.discard(x.key)
            if plain is None:
                outcome = _lost(attempt, x, began_at[1] if began_at else None)
            else:
                outcome = self._outcome(attempt, plain, written, began_at, submitted)
            self._report(out, outcome, reported)
        return out

    def _report(self, out: List[Any], outcome: Outcome, reported: bool = False) -> None:
        """The Outcome, after its Began if none was returned yet (its event was late or lost, or it never left
        the queue). Its `started` is the Began's time, whichever it is."""
        if not reported:
            out.append(Began(outcome.key, outcome.number, outcome.started))
        out.append(outcome)

    def _began(self, event: Dict[str, Any]) -> Optional[Began]:
        """The worker's word that an attempt started; None for one killed or ended, or a second word."""
        dask_key, t = event.get("began"), event.get("t")
        attempt = self.attempts.get(dask_key) if isinstance(dask_key, str) else None
        if attempt is None or dask_key in self.began or not isinstance(t, (int, float)):
            return None
        self.began[dask_key] = (t, self._our_clock(t, self.submitted.get(dask_key)))
        return Began(attempt.key, attempt.number, self.began[dask_key][1])

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
        fields = {k: v for k, v in plain.items() if k in Outcome.__dataclass_fields__}  # cpu, when it is measured
        fields.update(key=attempt.key, number=attempt.number)
        # `started` is when the worker took it up (its Began), on our clock: the worker's times move with it
        worker_t, ours = began if began is not None else (fields.get("started", 0.0), None)
        if ours is None:
            ours = self._our_clock(worker_t, submitted)
        shift = ours - worker_t
        fields["started"] = ours
        fields["finished"] = fields.get("finished", worker_t) + shift
        return Outcome(**fields)

    def kill(self, key: str) -> None:
        """Stop one attempt (its timeout passed): cancel its future; the worker kills its process group."""
        dask_key = self.keys.pop(key, None)
        future = self.futures.pop(dask_key, None) if dask_key else None
        if future is not None:
            self.attempts.pop(dask_key, None)
            self.written.pop(dask_key, None)
            self.submitted.pop(dask_key, None)
            self.began.pop(dask_key, None)
            self.reported.discard(dask_key)
            try:
                self.client.run(self.signal, self.token, signal.SIGKILL, key, self.flow_zip, wait=False)
                future.cancel()
            except Exception:
                pass  # the scheduler is gone: its workers cancel what it ran

    def interrupt(self) -> None:
        """Ask every running attempt to stop (SIGINT in its process: on_abort runs); they report back.

        Those still in Dask's queue are cancelled, and reported as Interrupted by the next `wait`: they
        would start later otherwise. (One whose Began is on its way is killed by its worker instead.)
        """
        if not self.futures:
            return
        try:
            self.client.run(self.signal, self.token, signal.SIGINT, None, self.flow_zip, wait=False)
        except Exception:
            pass
        queued = [k for k in self.futures if k not in self.began]
        now = time.time()
        for dask_key in queued:
            attempt = self.attempts.pop(dask_key)
            future = self.futures.pop(dask_key)
            if self.keys.get(attempt.key) == dask_key:
                del self.keys[attempt.key]
            self.written.pop(dask_key, None)
            self.submitted.pop(dask_key, None)
            self.pending.append(Outcome(attempt.key, attempt.number, False, started=now, finished=now, error={
                "type": "Interrupted", "message": "stopped in Dask's queue when the run was interrupted",
                "traceback": ""}))
            try:
                future.cancel()
            except Exception:
                pass

    def close(self) -> None:
        try:
            if self.futures:
                self.client.cancel(list(self.futures.values()))
            try:  # the scheduler keeps a topic's last events (and its subscribers): forget the run's
                self.client.run_on_scheduler(self.drop_topic, self.topic)
            except Exception:
                pass
            for name in self.plugins:
                try:
                    self.client.unregister_worker_plugin(name)
                except Exception:
                    pass
        finally:
            self.futures.clear()
            self.client.close(timeout=5)


def _connect(distributed, address: str, timeout: float):
    """A connected Client, or DaskUnavailable once `timeout` has passed.

    Client's own timeout covers reaching the port, not a peer that accepts
    and never answers; so the connection is made on a thread that is left
    behind (a daemon) when it takes too long.
    """
    import threading

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
        return box["client"]
    why = box.get("error") or "no answer"
    raise DaskUnavailable(f"cannot reach the Dask scheduler at {address} within {timeout:g}s: {why}")


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
    kind = "WorkerDied"
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
