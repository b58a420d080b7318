"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` processes on 127.0.0.1.

Each command runs in its own session, so that stopping the cluster kills
every process it started, by process group. Used by test_dask.py (two
workers of two threads), test_dask_backend.py (one worker of one thread)
and test_dask_faults.py (a cluster per test, whose scheduler is killed and
started again on the same port).
"""

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

DASK = Path(sys.executable).parent / "dask"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, log: Path) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([str(DASK), *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait(10)


class Cluster:
    def __init__(self, folder: Path, workers: int = 2, threads: int = 2) -> None:
        self.folder = folder
        self.workers = workers
        self.threads = threads
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs = []

    def start(self) -> None:
        self.start_scheduler()
        for i in range(self.workers):
            self.add_worker(i)
        self.wait_for_workers(self.workers)

    def start_scheduler(self) -> subprocess.Popen:
        self.scheduler = start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
                               self.folder / "scheduler.log")
        self.procs.append(self.scheduler)
        return self.scheduler

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler (its workers, losing it, shut down on their own)."""
        stop(self.scheduler)
        self.procs.remove(self.scheduler)

    def wait_for_workers(self, n: int) -> None:
        import distributed

        with distributed.Client(self.address, timeout=30) as client:  # connected: the scheduler answers
            if n:
                client.wait_for_workers(n, timeout=60)

    def on_scheduler(self, fn):
        """fn(dask_scheduler) run on the scheduler, through a client of the test's own."""
        import distributed

        with distributed.Client(self.address, timeout=30) as client:
            return client.run_on_scheduler(fn)

    def helpers(self) -> list:
        """flow's helper processes on this cluster's workers: live children of the worker processes (which are
        children of the `dask worker` nannies this cluster started) that run daskhost's helper_main."""
        nannies = {p.pid for p in self.procs if p is not getattr(self, "scheduler", None)}
        workers = {pid for pid in _pids() if parent(pid) in nannies}
        return [pid for pid in _pids() if parent(pid) in workers and b"helper_main" in _cmdline(pid)
                and alive(pid)]

    def add_worker(self, i, *extra: str) -> subprocess.Popen:
        proc = start(["worker", self.address, "--nthreads", str(self.threads), "--host", "127.0.0.1",
                      "--no-dashboard", "--local-directory", str(self.folder / f"worker{i}"), *extra],
                     self.folder / f"worker{i}.log")
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


def _pids() -> list:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def parent(pid: int) -> int:
    """The parent of process `pid` (-1 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return -1
    return int(stat[stat.rfind(b")") + 2:].split()[1])


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


@contextmanager
def running(folder: Path, workers: int = 2, threads: int = 2):
    """A started cluster for the block; every process it started is killed when the block is left."""
    c = Cluster(folder, workers, threads)
    try:
        c.start()
        yield c
    finally:
        c.stop()

