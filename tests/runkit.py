"""Helpers for the end-to-end tests of `flow run` (tests/run/test_run_*.py and the other end-to-end tests).

Each test writes its pipeline and task modules into pytest's tmp_path, runs
the CLI through the `flow` fixture (the built zipapp in a subprocess) and
looks at the `--json` report, the state folder and the files its tasks wrote.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]


def write_project(folder: Path, flow_text: str, modules: Dict[str, str] | None = None,
                  name: str = "p.flow") -> Path:
    """Write `name` (dedented) and each module {relative path: source}; return the .flow path."""
    folder.mkdir(parents=True, exist_ok=True)
    for rel, source in (modules or {}).items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    flow_file = folder / name
    flow_file.write_text(textwrap.dedent(flow_text))
    return flow_file


def run_json(flow, flow_file: Path, *args, cwd=None, env=None, timeout=60):
    """`flow run FILE --json ARGS`; returns (CompletedProcess, report or None)."""
    proc = flow("run", flow_file, "--json", *args, cwd=cwd or flow_file.parent, env=env, timeout=timeout)
    report = None
    if proc.stdout.strip():
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"stdout is not JSON:\n{proc.stdout}\nstderr:\n{proc.stderr}") from None
    return proc, report


def explain(proc) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def times(path: Path) -> List[float]:
    """The timestamps a task appended to a file, one per line."""
    return [float(x) for x in path.read_text().split()]


def gaps(ts: List[float]) -> List[float]:
    return [b - a for a, b in zip(ts, ts[1:])]


def new_marker() -> str:
    return "e2e" + uuid.uuid4().hex[:12]


def marked_processes(marker: str) -> List[Tuple[int, str]]:
    """Live processes (not zombies) whose environment or command line holds the marker."""
    found = []
    needle = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X"):
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found.append((pid, cmdline.replace(b"\0", b" ").decode("utf-8", "replace").strip()))
    return found


def kill_marked(marker: str) -> None:
    """Cleanup after a test: SIGKILL whatever still carries the marker."""
    for pid, _ in marked_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(step)


def spawn_run(pyz: Path, flow_file: Path, *args, env=None, **popen) -> subprocess.Popen:
    """`flow run` in the background, in its own session (so a test can signal it alone)."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    full_env["NO_COLOR"] = "1"
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, str(pyz), "run", str(flow_file), *map(str, args)],
                            cwd=flow_file.parent, env=full_env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@contextmanager
def stopped(proc: subprocess.Popen, marker: str | None = None):
    """The block's process, killed and reaped when the block is left while it still runs (a failed assertion);
    with `marker`, every process that carries it (kill_marked) first."""
    try:
        yield proc
    finally:
        if marker is not None:
            kill_marked(marker)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def state_runs(folder: Path) -> List[Path]:
    runs = folder / ".flow" / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def journal_records(path: Path) -> List[dict]:
    """The journal decoded with flowdsl.store.journal.read (the project's own reader)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from flowdsl.store import journal

    return journal.read(str(path))


def max_overlap(spans: List[Tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    current = best = 0
    for _, d in events:
        current += d
        best = max(best, current)
    return best
