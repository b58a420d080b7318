"""The worker's side of the dask executor: one attempt in its own process group on a Dask worker.

A Dask future runs on a thread of the worker, and a thread cannot be
stopped. So the thread only hands the attempt to a helper process (a fresh
interpreter running flow's own worker loop, `backends.worker_main`, which
leads its own process group) and waits for its answer, its deadline, or
its cancellation; a timeout, an interrupt, a cancelled future or a worker
shutting down (it lost its scheduler) kills the helper's whole group, as
the process backend does locally.

Each run is set up on a worker by its own worker plugin (see run.dask):
the plugin writes the run's upload (flow's zip, the run's code zip) into
`flow-runs/<run tag>/` of the worker's directory and calls `setup_run`,
which starts the run's helpers; its teardown (`teardown_run`, when the run
ends or its client is gone) kills them and removes the folder. Helpers are
never shared between runs. This file is loaded in the Dask worker's
process from flow's zip, under a name of its own (`_flowdsl_daskhost_
<digest>`), so that two versions of flow can share a cluster; at module
level it imports only the standard library. The helpers import flow from
the same zip.

Only plain data crosses: the attempt arrives as a dict whose arguments are
bytes in the run's `results` codec, and the outcome leaves as a dict with
the result's codec bytes and the attempt's log.

Before it starts, an attempt must hold the claim of its key, which the
run's plugin on the scheduler grants once (its `claim`, run.daskremote): a second start of the
same key, which Dask makes after the worker it was on died, is refused
without running anything, as is an attempt that reaches a thread after the
run was interrupted. A worker asks as soon as an attempt is queued on it
(the run's worker plugin sees the key become `ready`), for all the keys
queued since its last question in one round trip, so that the answer is
usually there before a thread is free: the claim costs the attempt no wait.
Only the worker that holds a claim may start the attempt; a claim passes to
another worker only while its holder is alive (Dask moved the queued
attempt there: it steals only what has not started). So an attempt
that was queued on a worker that died fails as `WorkerDied` although it may
not have started: flow starts an attempt at most once, and the task's
`retry` decides. When its thread takes it, the worker sends the runner
`{"began": dask key, "t": wall time, "worker": address}` on the run's
topic, on the worker's stream to the scheduler: after the end of the
attempt that freed the thread, which went the same way (until it began it
waited in Dask's queue, which its timeout and duration do not count; the
outcome's `started` is that same time).

The log also travels while the attempt runs: the helper writes it to a file
here, secrets already masked (as every backend writes its logs), and the
worker's thread sends what the file gained, whole lines, as Dask events
(`Worker.log_event` on the run's topic, which the runner subscribes to).
Each chunk says at which byte of the log it starts; the outcome still
carries the whole log, and the runner appends only what it has not written.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

POLL = 0.1  # seconds between looks at the future's state while an attempt runs
# The runner enforces an attempt's timeout: it kills the attempt (DaskBackend.kill) at the time the
# attempt began here (its claim) plus its timeout. The worker's own deadline, counted from the
# same start, is only a backup for a kill that never arrives (the runner lost, a message dropped):
# it fires this much later than the runner would, so that it never wins a race with the runner's.
BACKUP_SLACK = 5.0
CLAIM_WAIT = 60.0  # seconds an attempt waits for the scheduler's answer to its claim before it gives up
IDLE_HELPERS = 8  # helpers kept warm per run and worker process
CHUNK = 64 << 10  # at most this much output per event (one every POLL), a line longer than it is cut
# A folder under flow-runs/ that no run of this worker process owns is left over from a run whose end
# never reached the worker; removed once it is this old (younger: a run may be setting it up).
STALE_FOLDER = 600.0
# Worker states in which an attempt's outcome can no longer reach the runner (the worker lost its
# scheduler and is shutting down): the attempt is stopped rather than left to finish unseen.
GONE = ("closing", "closed", "failed")

# A helper: this interpreter, flow's zip (and the run's code) on its path,
# flow's worker loop on the socket it is given.
HELPER_MAIN = ("import sys; sys.path[:] = [p for p in sys.path if p]; "
               "from flowdsl.run.daskhost import helper_main; helper_main(int(sys.argv[1]), int(sys.argv[2]))")


# ---- in the Dask worker's process ---------------------------------------------------


class Helper:
    def __init__(self, paths: List[str], scheduler: Optional[str] = None) -> None:
        import socket
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        if scheduler:  # a task's `distributed.Client()` reaches the cluster that runs it
            env.setdefault("DASK_SCHEDULER_ADDRESS", scheduler)
        self.proc = subprocess.Popen([sys.executable, "-c", HELPER_MAIN, str(theirs.fileno()), str(os.getpid())],
                                     pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.killed = False
        self.interrupted = False  # sent SIGINT: if that ends it (before its handler is set), it was interrupted

    def kill(self) -> None:
        """SIGTERM (the helper kills its shell command's group and exits), then SIGKILL its group."""
        self.term()
        self.reap()

    def term(self) -> None:
        self.killed = True
        try:
            os.kill(self.proc.pid, signal.SIGTERM)
        except OSError:
            pass

    def reap(self) -> None:
        try:
            self.proc.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            pass
        try:
            self.conn.close()
        except OSError:
            pass


class Run:
    """One run as this worker process knows it: its folder (the code it uploaded, its attempts' logs), its
    idle helpers (a run's own: a helper never serves two runs, so none keeps another run's imports), the
    name of its claim handler on the scheduler, and whether it is stopping (interrupted: nothing more starts)."""

    def __init__(self, tag: str, folder: str, paths: List[str], claim: str, scheduler: Optional[str] = None) -> None:
        self.tag, self.folder, self.paths, self.claim, self.scheduler = tag, folder, paths, claim, scheduler
        self.idle: List[Helper] = []
        self.stopping = False
        self.claims: Dict[str, Claim] = {}  # dask key -> the claim of an attempt queued or running here
        self.asking: List[str] = []  # keys whose claim the next question to the scheduler asks for


class Claim:
    """The scheduler's answer to a worker's claim of an attempt's key: True, or why it may not start."""

    def __init__(self) -> None:
        self.answer: Any = None
        self.ready = threading.Event()


_lock = threading.Lock()
_running: Dict[tuple, Helper] = {}  # (run tag, attempt key) -> its helper


def _runs() -> Dict[str, Any]:
    """The runs set up in this worker process, shared by every version of flow loaded in it (each loads
    this file as a module of its own), so that a folder none of them owns can be told from one in use."""
    shared = sys.modules.get("_flowdsl_dask_runs")
    if shared is None:
        import types

        shared = sys.modules.setdefault("_flowdsl_dask_runs", types.ModuleType("_flowdsl_dask_runs"))
    return shared.__dict__.setdefault("runs", {})


def setup_run(worker, tag: str, folder: str, names: List[str], claim: str) -> int:
    """A run's upload has been written to `folder` (its worker plugin's setup): register the run and start
    one helper per thread for it. Folders of runs that ended without telling this worker are removed."""
    paths = [os.path.join(folder, name) for name in names if not name.startswith("flowdata-")]
    run = Run(tag, folder, paths, claim, getattr(getattr(worker, "scheduler", None), "address", None))
    with _lock:
        _runs()[tag] = run
    _reap_folders(os.path.dirname(folder))
    started = [Helper(run.paths, run.scheduler) for _ in range(min(worker.state.nthreads, IDLE_HELPERS))]
    with _lock:
        if _runs().get(tag) is run:
            run.idle.extend(started)
            started = []
    _kill_all(started)  # the run ended meanwhile
    return len(run.idle)


def teardown_run(tag: str) -> int:
    """The run ended (its worker plugin is removed): kill its helpers, idle or not, and remove its folder."""
    import shutil

    with _lock:
        run = _runs().pop(tag, None)
        busy = [h for (t, _), h in _running.items() if t == tag]
    if run is None:
        return 0
    _kill_all(run.idle + busy)
    run.idle = []
    shutil.rmtree(run.folder, ignore_errors=True)
    return len(busy)


def _kill_all(helpers: List[Helper]) -> None:
    for h in helpers:  # all at once: each exits on SIGTERM, the waits overlap
        h.term()
    for h in helpers:
        h.reap()


def _reap_folders(root: str) -> None:
    try:
        names = os.listdir(root)
    except OSError:
        return
    owned = {os.path.basename(getattr(r, "folder", "")) for r in list(_runs().values())}
    now = time.time()
    for name in names:
        path = os.path.join(root, name)
        try:
            if name not in owned and now - os.stat(path).st_mtime > STALE_FOLDER:
                import shutil

                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _acquire(run: Run) -> Helper:
    with _lock:
        while run.idle:
            h = run.idle.pop()
            if h.proc.poll() is None:
                return h
            h.killed = True  # dead: its socket goes with it
            h.conn.close()
    return Helper(run.paths, run.scheduler)


def _release(run: Run, h: Helper) -> None:
    with _lock:
        if (_runs().get(run.tag) is run and not run.stopping and len(run.idle) < IDLE_HELPERS
                and not h.killed and h.proc.poll() is None):
            h.interrupted = False  # out of `_running`: no signal reaches it any more
            run.idle.append(h)
            return
    h.kill()


def signal_attempts(tag: str, signum: int, key: Optional[str] = None) -> int:
    """From the runner (through `client.run`): SIGINT asks the run's attempts to stop, SIGKILL kills them.

    A SIGINT for the whole run also marks it stopping here: an attempt that Dask starts afterwards on a
    thread the interrupted ones freed is refused at once, not started and killed 5 s later.
    """
    with _lock:
        run = _runs().get(tag)
        if run is not None and key is None and signum == signal.SIGINT:
            run.stopping = True
        chosen = [h for (t, k), h in _running.items() if t == tag and (key is None or k == key)]
    for h in chosen:
        if signum == signal.SIGKILL:
            h.kill()
        else:
            h.interrupted = h.interrupted or signum == signal.SIGINT
            try:
                os.kill(h.proc.pid, signum)
            except OSError:
                pass
    return len(chosen)


def _wanted(worker, dask_key: str) -> bool:
    """False once the future was cancelled, its client (the runner) is gone, or the worker is shutting down
    (it lost its scheduler: the outcome could reach no one)."""
    if worker is None:
        return True
    if getattr(getattr(worker, "status", None), "name", "running") in GONE:
        return False
    ts = worker.state.tasks.get(dask_key)
    return ts is None or ts.state not in ("cancelled", "released", "forgotten")


def queued(worker, tag: str, dask_key: str) -> None:
    """An attempt of the run `tag` was queued on this worker (the run's worker plugin saw its key become
    `ready`, on the worker's event loop): ask for its claim now, so that the answer is there before a
    thread takes it."""
    _ask(worker, tag, dask_key)


def unqueued(tag: str, dask_key: str) -> None:
    """The attempt left this worker without running here (Dask moved or cancelled it): forget its claim."""
    with _lock:
        run = _runs().get(tag)
        if run is not None:
            run.claims.pop(dask_key, None)


def _ask(worker, tag: str, dask_key: str) -> Optional[Claim]:
    """The claim of `dask_key` on this worker: asked already, or asked now together with the others queued
    since the last question (one round trip for them all, on the worker's event loop). None once the run
    ended here."""
    with _lock:
        run = _runs().get(tag)
        if run is None:
            return None
        claim = run.claims.get(dask_key)
        if claim is not None:
            return claim
        claim = run.claims[dask_key] = Claim()
        run.asking.append(dask_key)
        first = len(run.asking) == 1
    if first:
        worker.loop.add_callback(_send_claims, worker, run)
    return claim


async def _send_claims(worker, run: Run) -> None:
    with _lock:
        keys, run.asking = run.asking, []
    if not keys:
        return
    try:
        answers = await getattr(worker.scheduler, run.claim)(keys=keys, worker=worker.address, server=worker.id)
        failed = "the run's plugin on the Dask scheduler gave no answer"
    except Exception as e:  # noqa: BLE001 (the scheduler is gone, or the run's plugin with it)
        answers, failed = {}, f"the Dask scheduler did not let it start ({type(e).__name__}: {e})"
    if not isinstance(answers, dict):
        answers = {}
    with _lock:
        for key in keys:
            claim = run.claims.get(key)
            if claim is not None:
                claim.answer = answers.get(key, failed)
                claim.ready.set()


def run_attempt(payload: Dict[str, Any]) -> Dict[str, Any]:
    """Run the attempt in a helper; the outcome as plain data, with the attempt's log."""
    from distributed import get_worker

    worker = get_worker()
    # The attempt leaves Dask's queue now: the runner's timeout for it starts here, and its duration.
    started, began = time.time(), time.monotonic()
    token, key, dask_key = payload["token"], payload["key"], payload["dask_key"]
    with _lock:
        run = _runs().get(token)
    if run is None:
        return _refused(payload, started, "Interrupted", "the run had ended on this worker")
    if run.stopping:
        return _refused(payload, started, "Interrupted", "stopped in Dask's queue when the run was interrupted")
    claim = _ask(worker, token, dask_key)  # asked when it was queued here, most often answered by now
    if claim is None:
        return _refused(payload, started, "Interrupted", "the run had ended on this worker")
    if not claim.ready.wait(CLAIM_WAIT):
        return _refused(payload, started, "WorkerDied", f"the Dask scheduler did not answer its claim in "
                                                        f"{CLAIM_WAIT:g}s")
    if claim.answer is not True:
        return _refused(payload, started, "WorkerDied", str(claim.answer or "refused"))
    topic = payload.get("topic")
    if topic:  # on the worker's stream, after the end of the attempt that freed this thread
        try:
            worker.log_event(topic, {"began": dask_key, "t": started, "worker": worker.address})
        except Exception:  # noqa: BLE001 (the outcome brings its start)
            pass
    payload = dict(payload)
    payload["log_path"] = log = os.path.join(run.folder, f"{key}-{payload['number']}.log")
    if not os.path.isdir(payload["cwd"]):  # the runner's folder is not on this machine: the run's own, with
        payload["cwd"] = os.path.join(run.folder, "files")  # the files shipped with the code, removed at its end
    timeout = payload.get("timeout")
    deadline = None
    if timeout is not None:  # a backup only: the runner kills the attempt BACKUP_SLACK seconds sooner
        deadline = began + timeout + BACKUP_SLACK
    helper = _acquire(run)
    with _lock:  # one look with signal_attempts': signalled once here, or it sees the run stopping
        stopping = run.stopping
        if not stopping:
            _running[(token, key)] = helper
    if stopping:  # interrupted between its claim and here: the runner heard it began, and hears it stopped
        _release(run, helper)
        return _failed(payload, started, "Interrupted", "the run was interrupted")
    outcome = None
    tail = _Tail(worker, topic, dask_key, log)
    try:
        helper.conn.send_bytes(pickle.dumps(payload, pickle.HIGHEST_PROTOCOL))
        while outcome is None:
            if helper.conn.poll(POLL):
                try:
                    outcome = pickle.loads(helper.conn.recv_bytes())
                except (EOFError, OSError):
                    outcome = _failed(payload, started, *_death(helper))
                break
            if helper.killed or helper.proc.poll() is not None:
                outcome = _failed(payload, started, *_death(helper))
            elif deadline is not None and time.monotonic() >= deadline:
                helper.kill()
                outcome = _failed(payload, started, "Timeout", f"timed out after {timeout:g}s")
            elif not _wanted(worker, dask_key):
                helper.kill()
                outcome = _failed(payload, started, "Interrupted", "the attempt's future was cancelled")
            else:
                tail.send()
    except (OSError, ValueError) as e:
        helper.kill()
        outcome = _failed(payload, started, "WorkerDied", f"could not hand the attempt to its process: {e}")
    finally:
        with _lock:
            _running.pop((token, key), None)
            run.claims.pop(dask_key, None)
        _release(run, helper)
        tail.close()
    outcome["started"] = started  # when it left Dask's queue (the helper's own clock starts a little later)
    outcome["log"] = _take(log)  # the whole log: the runner skips what the events brought
    outcome["worker"] = worker.address
    _send_small(worker, payload.get("topic"), dask_key, outcome)
    return outcome


EARLY_BYTES = 2048  # an outcome this small also travels as an event: the runner needs no gather for it


def _send_small(worker, topic: Optional[str], dask_key: str, outcome: Dict[str, Any]) -> None:
    """A small outcome, sent to the runner as an event on the run's topic, on the worker's stream to the
    scheduler, where it goes ahead of the future's state: the runner takes it instead of fetching the
    result (a round trip per turn of its loop). Kept small: the scheduler keeps a topic's events until
    the run ends."""
    size = sum(len(v) for v in (outcome.get("result"), outcome.get("log")) if isinstance(v, (bytes, str)))
    error = outcome.get("error")
    if isinstance(error, dict):
        size += sum(len(v) for v in error.values() if isinstance(v, str))
    if size > EARLY_BYTES or not topic:
        return
    try:
        worker.log_event(topic, {"done": dask_key, "outcome": outcome})
    except Exception:  # noqa: BLE001 (the future still brings it)
        pass


def _refused(payload: Dict[str, Any], started: float, kind: str, message: str) -> Dict[str, Any]:
    """An attempt this worker did not start: no helper, no log; `refused` tells the runner it never began."""
    outcome = _failed(payload, started, kind, message)
    outcome["refused"] = True
    return outcome


def _death(helper: Helper):
    if helper.killed:
        return "Interrupted", "the attempt was stopped"
    if helper.interrupted:  # SIGINT reached a helper still starting: Python's KeyboardInterrupt ended it
        return "Interrupted", "the run was interrupted"
    try:
        code = helper.proc.wait(1)
    except subprocess.TimeoutExpired:
        return "WorkerDied", "the attempt's process stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "WorkerDied", f"the attempt's process was killed by {name}"
    return "WorkerDied", f"the attempt's process exited with status {code}"


def _failed(payload: Dict[str, Any], started: float, kind: str, message: str) -> Dict[str, Any]:
    return {"key": payload["key"], "number": payload["number"], "ok": False, "result": None,
            "error": {"type": kind, "message": message, "traceback": ""},
            "started": started, "finished": time.time()}


class _Tail:
    """Sends what the attempt's log file gained, as events on the run's topic, while the attempt runs.

    The file holds what the helper wrote, secrets already masked, so a chunk
    can hold nothing the final log would not; chunks end at a newline (a
    line longer than CHUNK is cut), the whole log comes with the outcome.
    """

    def __init__(self, worker, topic: Optional[str], dask_key: str, path: str) -> None:
        self.worker, self.topic, self.dask_key, self.path = worker, topic, dask_key, path
        self.sent = 0  # bytes of the log sent so far
        self.file = None

    def send(self) -> None:
        if not self.topic:
            return
        try:
            if self.file is None:
                self.file = open(self.path, "rb")  # once the helper has created it
            self.file.seek(self.sent)
            data = self.file.read(CHUNK)
        except OSError:
            return
        cut = data.rfind(b"\n") + 1
        if not cut and len(data) < CHUNK:
            return  # no whole line yet
        data = data[:cut or len(data)]
        try:
            self.worker.log_event(self.topic, {"key": self.dask_key, "at": self.sent, "data": data})
        except Exception:  # an older or odd worker: the outcome still carries the whole log
            self.topic = None
            return
        self.sent += len(data)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _take(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        return data
    except OSError:
        return b""


# ---- in a helper process (flow importable) ---------------------------------------------


class _PlainConnection:
    """flow's worker loop speaks its wire form of Attempt and Outcome; the Dask side speaks plain dicts."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.saved: Dict[str, Optional[str]] = {}

    def recv_bytes(self) -> bytes:
        from .backends import to_wire

        plain = pickle.loads(self.conn.recv_bytes())
        # a callable sees the variables of the runner's environment it names, as it would in a local
        # attempt; they are this attempt's only (put back as they were when it ends)
        for name, value in (plain.get("runner_env") or {}).items():
            self.saved.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        return to_wire(attempt_from_plain(plain))

    def send_bytes(self, data: bytes) -> None:
        from .backends import from_wire
        from .worker import Outcome

        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.saved = {}
        o = from_wire(Outcome, data)
        plain = {name: getattr(o, name) for name in o.__dataclass_fields__}  # every field: plain values all
        self.conn.send_bytes(pickle.dumps(plain, pickle.HIGHEST_PROTOCOL))


def helper_main(fd: int, parent_pid: int) -> None:
    from multiprocessing.connection import Connection

    from .backends import worker_main

    sys.meta_path.insert(0, _GetClientHook())
    worker_main(_PlainConnection(Connection(fd)), parent_pid)


# ---- `get_client()` inside a task --------------------------------------------------------------
# An attempt runs in a helper process, which is no Dask worker: distributed's `get_client()` finds no
# worker there and no client, and raises. When a task imports distributed, its `get_client` learns to
# fall back to a client of the scheduler that runs the attempt (DASK_SCHEDULER_ADDRESS, which the
# helper's environment holds), made on first use and kept for the helper's next attempts. distributed
# is imported only by the tasks that import it: the helpers stay small.


class _GetClientHook:
    """A meta path finder that patches `distributed.worker.get_client` as distributed is imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "distributed.worker":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            module.get_client = _falling_back(module.get_client)

        spec.loader.exec_module = exec_module
        return spec


_CLIENT: List[Any] = []


def _falling_back(original):
    import functools

    @functools.wraps(original)
    def get_client(address=None, timeout=None, resolve_address=True):
        try:
            return original(address, timeout, resolve_address)
        except ValueError:
            scheduler = os.environ.get("DASK_SCHEDULER_ADDRESS")
            if address or not scheduler:
                raise
            if not _CLIENT:
                from distributed import Client

                _CLIENT.append(Client(scheduler, set_as_default=True, **({"timeout": timeout} if timeout else {})))
            return _CLIENT[0]

    return get_client



# ---- the attempt as plain data (both ends) -----------------------------------------------

_LOCAL = ("args", "kwargs", "sys_path")  # arguments travel encoded; the runner's paths mean nothing on a worker


def attempt_to_plain(attempt, token: str, dask_key: str) -> Dict[str, Any]:
    """An Attempt as a dict of strings, numbers, lists and codec bytes (the runner's side)."""
    from ..store import codec

    plain = {name: getattr(attempt, name) for name in attempt.__dataclass_fields__ if name not in _LOCAL}
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in plain.items()}
    # upstream results and params, in the run's own codec: never pickled unless `results pickle`
    plain["arguments"] = codec.encode_result([list(attempt.args), attempt.kwargs], attempt.results)
    plain["token"], plain["dask_key"] = token, dask_key
    return plain


def attempt_from_plain(plain: Dict[str, Any]):
    from ..store import codec
    from .worker import Attempt

    args, kwargs = codec.decode_result(plain["arguments"], allow_pickle=plain["results"] == "pickle")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in plain.items()
              if k in Attempt.__dataclass_fields__ and k not in _LOCAL}
    return Attempt(args=tuple(args), kwargs=dict(kwargs), sys_path=(), **fields)
