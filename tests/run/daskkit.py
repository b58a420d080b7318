"""A real Dask cluster for the tests: `dask scheduler` and `dask worker` processes on 127.0.0.1.

Each command runs in its own session, so that stopping the cluster kills
every process it started, by process group. Used by test_dask.py (two
workers of two threads) and test_dask_backend.py (one worker of one thread).
"""

import os
import signal
import socket
import subprocess
import sys
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
        import distributed

        self.procs.append(start(["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
                                self.folder / "scheduler.log"))
        for i in range(self.workers):
            self.add_worker(i)
        with distributed.Client(self.address, timeout=30) as client:
            client.wait_for_workers(self.workers, timeout=60)

    def add_worker(self, i, *extra: str) -> subprocess.Popen:
        proc = start(["worker", self.address, "--nthreads", str(self.threads), "--host", "127.0.0.1",
                      "--no-dashboard", "--local-directory", str(self.folder / f"worker{i}"), *extra],
                     self.folder / f"worker{i}.log")
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
