"""The worker's side of the dask executor: one attempt in its own process group on a Dask worker.

A Dask future runs on a thread of the worker, and a thread cannot be
stopped. So the thread only hands the attempt to a helper process (a fresh
interpreter running flow's own worker loop, `backends.worker_main`, which
leads its own process group) and waits for its answer, its deadline, or
its cancellation; a timeout, an interrupt or a cancelled future kills the
helper's whole group, as the process backend does locally.

This file is loaded in the Dask worker's process from the zip that flow
uploaded, under a name of its own (`_flowdsl_daskhost_<digest>`), so that
two versions of flow can share a cluster; at module level it imports only
the standard library. The helper processes import flow from the same zip.

Only plain data crosses: the attempt arrives as a dict whose arguments are
bytes in the run's `results` codec, and the outcome leaves as a dict with
the result's codec bytes and the attempt's log.

The log also travels while the attempt runs: the helper writes it to a file
here, secrets already masked (as every backend writes its logs), and the
worker's thread sends what the file gained, whole lines, as Dask events
(`Worker.log_event` on the run's topic, which the runner subscribes to).
Each chunk says at which byte of the log it starts; the outcome still
carries the whole log, and the runner appends only what it has not written.

The same topic carries one more event per attempt, `{"began": dask key,
"t": wall time}`, sent as the worker's thread takes the attempt up: until
then it waited in Dask's queue, which its timeout and duration do not count.
The outcome's `started` is that same time.
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
# attempt began here (the `began` event) plus its timeout. The worker's own deadline, counted from the
# same start, is only a backup for a kill that never arrives (the runner lost, a message dropped):
# it fires this much later than the runner would, so that it never wins a race with the runner's.
BACKUP_SLACK = 5.0
IDLE_HELPERS = 8  # helpers kept warm per worker process
CHUNK = 64 << 10  # at most this much output per event (one every POLL), a line longer than it is cut

# A helper: this interpreter, flow's zip (and the run's code) on its path,
# flow's worker loop on the socket it is given.
HELPER_MAIN = ("import sys; sys.path[:] = [p for p in sys.path if p]; "
               "from flowdsl.run.daskhost import helper_main; helper_main(int(sys.argv[1]), int(sys.argv[2]))")


# ---- in the Dask worker's process ---------------------------------------------------


class Helper:
    def __init__(self, paths: List[str]) -> None:
        import socket
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.paths = paths
        self.proc = subprocess.Popen([sys.executable, "-c", HELPER_MAIN, str(theirs.fileno()), str(os.getpid())],
                                     pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.killed = False
        self.interrupted = False  # sent SIGINT: if that ends it (before its handler is set), it was interrupted

    def kill(self) -> None:
        """SIGTERM (the helper kills its shell command's group and exits), then SIGKILL its group."""
        self.killed = True
        pid = self.proc.pid
        try:
            os.kill(pid, signal.SIGTERM)
            self.proc.wait(0.2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(pid, signal.SIGKILL)
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


_lock = threading.Lock()
_idle: List[Helper] = []
_running: Dict[tuple, Helper] = {}  # (run token, attempt key) -> its helper


def _acquire(paths: List[str]) -> Helper:
    with _lock:
        while _idle:
            h = _idle.pop()
            if h.paths == paths and h.proc.poll() is None:
                return h
            h.kill()  # another run's code, or dead
    return Helper(paths)


def warm(worker, flow_zip: str, code_zip: Optional[str]) -> int:
    """Start helpers for the run's code until one per thread waits idle (on the worker's event loop)."""
    paths = _paths(worker.local_directory, flow_zip, code_zip)
    with _lock:
        have = sum(1 for h in _idle if h.paths == paths)
    started = [Helper(paths) for _ in range(max(0, min(worker.state.nthreads, IDLE_HELPERS) - have))]
    with _lock:
        _idle.extend(started)
    return len(started)


def _paths(folder: str, flow_zip: str, code_zip: Optional[str]) -> List[str]:
    return [os.path.join(folder, flow_zip)] + ([os.path.join(folder, code_zip)] if code_zip else [])


def _release(h: Helper) -> None:
    with _lock:
        if len(_idle) < IDLE_HELPERS and not h.killed and h.proc.poll() is None:
            h.interrupted = False  # out of `_running`: no signal reaches it any more
            _idle.append(h)
            return
    h.kill()


def signal_attempts(token: str, signum: int, key: Optional[str] = None) -> int:
    """From the runner (through `client.run`): SIGINT asks the run's attempts to stop, SIGKILL kills them."""
    with _lock:
        chosen = [h for (t, k), h in _running.items() if t == token and (key is None or k == key)]
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
    """False once the future was cancelled, or its client (the runner) is gone."""
    ts = worker.state.tasks.get(dask_key) if worker is not None else None
    return ts is None or ts.state not in ("cancelled", "released", "forgotten")


def run_attempt(payload: Dict[str, Any], flow_zip: str, code_zip: Optional[str]) -> Dict[str, Any]:
    """Run the attempt in a helper; the outcome as plain data, with the attempt's log."""
    from distributed import get_worker

    worker = get_worker()
    # The attempt leaves Dask's queue now: the runner's timeout for it starts here, and its duration.
    started, began = time.time(), time.monotonic()
    _began(worker, payload.get("topic"), payload["dask_key"], started)
    folder = worker.local_directory
    paths = _paths(folder, flow_zip, code_zip)
    logs = os.path.join(folder, "flow-logs")
    os.makedirs(logs, exist_ok=True)
    token, key = payload["token"], payload["key"]
    payload = dict(payload)
    payload["log_path"] = log = os.path.join(logs, f"{token}-{key}-{payload['number']}.log")
    if not os.path.isdir(payload["cwd"]):  # the runner's folder is not on this machine
        payload["cwd"] = folder
    timeout = payload.get("timeout")
    deadline = None
    if timeout is not None:  # a backup only: the runner kills the attempt BACKUP_SLACK seconds sooner
        deadline = began + timeout + BACKUP_SLACK
    helper = _acquire(paths)
    with _lock:
        _running[(token, key)] = helper
    outcome = None
    tail = _Tail(worker, payload.get("topic"), payload["dask_key"], log)
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
            elif not _wanted(worker, payload["dask_key"]):
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
        _release(helper)
        tail.close()
    outcome["started"] = started  # when it left Dask's queue (the helper's own clock starts a little later)
    outcome["log"] = _take(log)  # the whole log: the runner skips what the events brought
    outcome["worker"] = worker.address
    return outcome


def _began(worker, topic: Optional[str], dask_key: str, t: float) -> None:
    """Tell the runner the attempt started (an event on the run's topic); if it is lost, the outcome says it."""
    if not topic:
        return
    try:
        worker.log_event(topic, {"began": dask_key, "t": t})
    except Exception:  # an older or odd worker: the runner takes the outcome's `started` instead
        pass


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

    def recv_bytes(self) -> bytes:
        from .backends import to_wire

        return to_wire(attempt_from_plain(pickle.loads(self.conn.recv_bytes())))

    def send_bytes(self, data: bytes) -> None:
        from .backends import from_wire
        from .worker import Outcome

        o = from_wire(Outcome, data)
        plain = {name: getattr(o, name) for name in o.__dataclass_fields__}  # every field: plain values all
        self.conn.send_bytes(pickle.dumps(plain, pickle.HIGHEST_PROTOCOL))


def helper_main(fd: int, parent_pid: int) -> None:
    from multiprocessing.connection import Connection

    from .backends import worker_main

    worker_main(_PlainConnection(Connection(fd)), parent_pid)


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
