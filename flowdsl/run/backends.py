"""Backends: where attempts execute. They decide nothing; the run machine does.

The protocol every backend implements (the driver, run.driver, is its one user):

    capacity          how many attempts it can run at once (informative: the
                      run's concurrency is the machine's to keep); a backend
                      whose capacity changes (a cluster's workers come and go)
                      says `elastic = True`, and the driver reads it each turn
    queues            True if a submitted attempt may wait for a worker (Dask);
                      absent or False: it starts when submitted
    submit(attempt)   start (or queue) one attempt; never raises for the
                      attempt's sake: a problem comes back as its Outcome
    wait(timeout)     what happened since the last call, waiting up to
                      `timeout` seconds (None: until something happens) for
                      the first thing: Outcomes, and for a queueing backend
                      one Began per attempt, before its Outcome; a `Lost`
                      when the backend can run nothing more
    kill(key)         end that attempt now, with what it started; no Outcome
                      follows (the machine records the timeout or interrupt)
    interrupt()       ask every running attempt to stop (SIGINT: on_abort
                      runs); each reports back through `wait`
    close()           stop everything and let go of the workers

Timeouts are the machine's deadlines carried out through `kill`; the inline
executor, which runs an attempt inside `submit`, arms an alarm from the
attempt's `timeout` instead, since nothing else can act meanwhile.

The process backend keeps a pool of long-lived workers fed over pipes, so a
task costs two messages, not a process start; a worker that dies or is
killed is replaced.
"""

from __future__ import annotations

import operator
import os
import pickle
import queue
import signal
import sys
import threading
import time
from typing import Dict, List, Optional

from ..store import failures, journal
from . import capture, worker
from .worker import Attempt, Outcome


class Lost:
    """A backend's word, among what `wait` returns, that it lost where attempts run (a Dask scheduler
    gone for good): the run stops, `interrupted` and resumable, and what was running is not a failure
    (no retry is spent on it)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


# ---- in the runner's process ---------------------------------------------------


class Reaper:
    """For the in-process executors: a small process that kills the shell
    commands' process groups if the runner dies (even by SIGKILL).

    The runner tells it each group over a pipe (`+pid`, `-pid`); when the
    pipe closes, or the backend closes it with a goodbye, the groups still
    told of are killed: their runner is gone, or gave up on their attempts.
    """

    def __init__(self) -> None:
        read_end, self.fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the reaper
            os.close(self.fd)
            journal.drop_inherited()
            try:
                os.setsid()  # not in the terminal's group: a Ctrl-C is the runner's to handle
                _reap(read_end)
            finally:
                os._exit(0)
        os.close(read_end)
        self.pid = pid
        self.lock = threading.Lock()

    def tell(self, line: str) -> None:
        with self.lock:
            try:
                os.write(self.fd, line.encode() + b"\n")
            except OSError:
                pass

    def add(self, pid: int) -> None:
        self.tell(f"+{pid}")

    def remove(self, pid: int) -> None:
        self.tell(f"-{pid}")

    def close(self) -> None:
        self.tell("bye")
        os.close(self.fd)
        os.waitpid(self.pid, 0)


def _reap(fd: int) -> None:
    """Until the runner says goodbye or dies: then every group still told of is killed.

    After a goodbye such a group belongs to an attempt the runner gave up on
    (a thread's timeout that has not reached its command yet), so it goes too.
    """
    groups = set()
    buffer = b""
    open_ = True
    while open_:
        data = os.read(fd, 4096)
        if not data:
            break
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line == b"bye":
                open_ = False
                break
            pid = int(line[1:])
            (groups.add if line[:1] == b"+" else groups.discard)(pid)
    for pid in groups:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _watch_children() -> Reaper:
    reaper = Reaper()
    worker.child_watch = reaper
    return reaper


def _unwatch_children(reaper: Reaper) -> None:
    worker.child_watch = None
    reaper.close()


class InlineBackend:
    """Runs each attempt in the runner's own process, one at a time: for debugging.

    The runner's signal handler raises Interrupted into a running attempt
    (`executing` tells it one is running).
    """

    capacity = 1

    def __init__(self) -> None:
        self.done: List[Outcome] = []
        self.executing = False
        self.reaper = _watch_children()

    def submit(self, attempt: Attempt) -> None:
        self.executing = True
        try:
            self.done.append(_with_alarm(attempt))
        finally:
            self.executing = False

    def wait(self, timeout: Optional[float]) -> List[Outcome]:
        done, self.done = self.done, []
        if not done and timeout:
            time.sleep(timeout)
        return done

    def kill(self, key: str) -> None:
        pass  # nothing runs between calls

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        _unwatch_children(self.reaper)


def _with_alarm(attempt: Attempt) -> Outcome:
    """An attempt's timeout in the main thread: SIGALRM raises TaskTimeout inside it (a shell command's
    group is then killed on the way out). The runner cannot act while an inline attempt holds its thread."""
    # One attempt at a time: its output can be caught at the file-descriptor
    # level (child processes included), as in a worker process.
    if not attempt.timeout or threading.current_thread() is not threading.main_thread():
        return worker.execute(attempt, redirect_fds=True)

    def expire(signum, frame):
        raise worker.TaskTimeout(f"timed out after {worker.format_seconds(attempt.timeout)}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, attempt.timeout)
    try:
        return worker.execute(attempt, redirect_fds=True)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ThreadBackend:
    """Attempts on threads of the runner's process. A `run` attempt past its
    timeout gets TaskTimeout raised inside its thread; code blocked in C
    cannot be stopped that way (use the process executor for such tasks)."""

    def __init__(self, workers: int) -> None:
        self.capacity = workers
        self.outcomes: queue.Queue[Outcome] = queue.Queue()
        self.threads: Dict[str, threading.Thread] = {}
        self.reaper = _watch_children()

    def submit(self, attempt: Attempt) -> None:
        t = threading.Thread(target=self._run, args=(attempt,), name=f"flow-{attempt.key}", daemon=True)
        self.threads[attempt.key] = t
        t.start()

    def _run(self, attempt: Attempt) -> None:
        self.outcomes.put(worker.execute(attempt))

    def wait(self, timeout: Optional[float]) -> List[Outcome]:
        out = []
        try:
            out.append(self.outcomes.get(timeout=timeout) if timeout is None or timeout > 0 else
                       self.outcomes.get_nowait())
            while True:
                out.append(self.outcomes.get_nowait())
        except queue.Empty:
            pass
        for o in out:
            self.threads.pop(o.key, None)
        return out

    def _raise_in(self, key: str, exc: type) -> None:
        import ctypes

        t = self.threads.get(key)
        if t is not None and t.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(exc))

    def kill(self, key: str) -> None:
        self._raise_in(key, worker.TaskTimeout)

    def interrupt(self) -> None:
        for key in list(self.threads):
            self._raise_in(key, worker.Interrupted)

    def close(self) -> None:
        _unwatch_children(self.reaper)


# ---- worker processes ------------------------------------------------------------

# Attempts and outcomes cross the pipe as pickled tuples of their fields: a
# quarter of the time of pickling the dataclasses (which names the class and
# each field in every message), and half the bytes.
_FIELDS = {cls: tuple(cls.__dataclass_fields__) for cls in (Attempt, Outcome)}
_VALUES = {cls: operator.attrgetter(*names) for cls, names in _FIELDS.items()}


def to_wire(record) -> bytes:
    return pickle.dumps(_VALUES[type(record)](record), pickle.HIGHEST_PROTOCOL)


def from_wire(cls, data: bytes):
    record = cls.__new__(cls)
    record.__dict__.update(zip(_FIELDS[cls], pickle.loads(data)))  # frozen: fill its dict directly
    return record


class _Worker:
    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.attempt: Optional[Attempt] = None


class ProcessBackend:
    """A pool of forked worker processes, each in its own process group."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        try:
            import ctypes  # noqa: F401  (loaded once here, so forked workers start without the import)
        except ImportError:
            pass
        method = "fork" if sys.platform.startswith("linux") else "spawn"
        self.ctx = multiprocessing.get_context(method)
        self.capacity = workers
        self.idle: List[_Worker] = []
        self.busy: Dict[str, _Worker] = {}
        self.lost: List[Outcome] = []
        # One selector for the whole run, each worker's pipe and exit sentinel
        # registered once (building one per wait cost 0.2 s per 10,000 tasks).
        import selectors

        self.selector = selectors.DefaultSelector()
        # Workers are forked on first need, so the first task starts after one
        # fork, not after `workers` of them; then they live for the whole run.

    def _start(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        process = self.ctx.Process(target=worker_main, args=(child, os.getpid()), daemon=True)
        process.start()
        child.close()
        w = _Worker(process, parent)
        self.selector.register(parent.fileno(), selectors_READ, w)
        self.selector.register(process.sentinel, selectors_READ, w)
        return w

    def _forget(self, w: _Worker) -> None:
        for handle in (w.conn, w.process.sentinel):
            try:
                self.selector.unregister(handle if isinstance(handle, int) else handle.fileno())
            except (KeyError, ValueError, OSError):
                pass

    def submit(self, attempt: Attempt) -> None:
        w = self.idle.pop() if self.idle else self._start()
        w.attempt = attempt
        self.busy[attempt.key] = w
        try:
            w.conn.send_bytes(to_wire(attempt))
        except (OSError, ValueError) as e:
            self._lose(w, f"could not hand the attempt to its worker: {e}")

    def wait(self, timeout: Optional[float]) -> List[Outcome]:
        out, self.lost = self.lost, []
        if out:
            timeout = 0
        if not self.busy:
            if timeout:
                time.sleep(timeout)
            return out
        for key, _ in self.selector.select(timeout):
            w = key.data
            if w.attempt is None or w.attempt.key not in self.busy:
                continue  # idle, or already handled through its other handle
            if key.fd == w.conn.fileno() or w.conn.poll():
                try:
                    outcome = from_wire(Outcome, w.conn.recv_bytes())
                except (EOFError, OSError):
                    self._lose(w, _death(w.process))
                    out.extend(self.lost)
                    self.lost = []
                    continue
                del self.busy[w.attempt.key]
                w.attempt = None
                self.idle.append(w)
                out.append(outcome)
            else:
                self._lose(w, _death(w.process))
                out.extend(self.lost)
                self.lost = []
        return out

    def _lose(self, w: _Worker, message: str) -> None:
        """The worker is gone (or must go): record the failure; `submit` forks a replacement."""
        attempt = w.attempt
        self._forget(w)
        _kill_worker(w)
        if attempt is not None:
            self.busy.pop(attempt.key, None)
            now = time.time()
            self.lost.append(Outcome(attempt.key, attempt.number, False,
                                     error=failures.error(failures.WORKER_DIED, message),
                                     started=now, finished=now))

    def kill(self, key: str) -> None:
        """Stop one attempt now (its timeout passed); `submit` forks a replacement."""
        w = self.busy.pop(key, None)
        if w is not None:
            w.attempt = None
            self._forget(w)
            _kill_worker(w)

    def interrupt(self) -> None:
        """Ask every running attempt to stop (SIGINT: on_abort runs); they report back."""
        for w in self.busy.values():
            try:
                os.kill(w.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        for w in self.idle + list(self.busy.values()):
            self._forget(w)
            _kill_worker(w)
        self.idle, self.busy = [], {}
        self.selector.close()


def _kill_worker(w: _Worker) -> None:
    """SIGTERM (the worker kills its shell command's group and exits), then SIGKILL its group."""
    pid = w.process.pid
    try:
        os.kill(pid, signal.SIGTERM)
        w.process.join(0.2)
    except (ProcessLookupError, OSError):
        pass
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
    w.process.join(1)
    try:
        w.conn.close()
    except OSError:
        pass


def _death(process) -> str:
    process.join(0.1)
    code = process.exitcode
    if code is None:
        return "the worker process stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker process was killed by {name}{hint}"
    return f"the worker process exited with status {code}"


# ---- inside a worker process -------------------------------------------------------

_busy = False
_interrupted = False


def _on_sigint(signum, frame) -> None:
    global _interrupted
    if _busy and not _interrupted:
        _interrupted = True
        raise worker.Interrupted()


def _on_sigterm(signum, frame) -> None:
    """Stop now, with everything this worker started: a shell command's own
    group, and what a Python task spawned (it shares the worker's group)."""
    worker.kill_current_child()
    capture.salvage()  # the last words of a task stopped for its timeout reach its log
    try:
        os.killpg(0, signal.SIGKILL)  # our group: the worker leads it (setpgid in worker_main)
    finally:
        os._exit(143)


def _die_with_parent(parent_pid: int) -> None:
    """The runner may die by SIGKILL: then the kernel (Linux) or a watchdog ends us."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        _on_sigterm(None, None)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                _on_sigterm(None, None)

    threading.Thread(target=watch, daemon=True, name="flow-watchdog").start()


selectors_READ = 1  # selectors.EVENT_READ, without importing selectors at module load


def worker_main(conn, parent_pid: int) -> None:
    global _busy, _interrupted
    os.setpgid(0, 0)  # our own group: a timeout kills us and what we started, nothing else
    journal.drop_inherited()
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _die_with_parent(parent_pid)
    while True:
        try:
            attempt = from_wire(Attempt, conn.recv_bytes())
        except (EOFError, OSError):
            break
        _busy, _interrupted = True, False
        try:
            outcome = worker.execute(attempt, redirect_fds=True)
        except worker.Interrupted:  # between the task's end and here
            outcome = Outcome(attempt.key, attempt.number, False,
                              error=failures.error(failures.INTERRUPTED, "the run was interrupted"))
        _busy = False
        try:
            conn.send_bytes(to_wire(outcome))
        except (OSError, ValueError):
            break
    os._exit(0)


def make_backend(kind: str, workers: int):
    if kind == "inline":
        return InlineBackend()
    if kind == "thread":
        return ThreadBackend(workers)
    return ProcessBackend(workers)
