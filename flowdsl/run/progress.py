"""What a run shows while it runs: a live display on a terminal, plain lines elsewhere.

The runner calls one method per event; a reporter only prints. `-v` streams
each attempt's captured output, prefixed by its task, by reading the log
files as they grow; `-q` prints failures and the final line only.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, Dict, Optional, TextIO

from ..store import state


def _error_line(error: Optional[Dict[str, Any]]) -> str:
    if not error:
        return ""
    message = (error.get("message") or "").strip().splitlines()
    return f"{error.get('type')}: {message[0] if message else ''}" + (" ..." if len(message) > 1 else "")


class PlainReporter:
    """One line per event (a log file, a CI console, cron mail)."""

    refresh = 1.0

    def __init__(self, out: TextIO = sys.stdout, quiet: bool = False, verbose: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.verbose = verbose
        self.t0 = time.monotonic()
        self.folder = ""
        self.offsets: Dict[str, int] = {}
        self.kept_tasks: set = set()

    def say(self, text: str, always: bool = False) -> None:
        if always or not self.quiet:
            print(text, file=self.out, flush=True)

    def stamp(self) -> str:
        return f"{time.monotonic() - self.t0:7.2f}s"

    def run_started(self, report: Dict[str, Any], folder: str) -> None:
        self.folder = folder
        n = len(report["tasks"])
        self.say(f"run {report['run_id']}: {n} task{'s' * (n != 1)}, logs in {os.path.relpath(folder)}")

    def started(self, key: str, n: int) -> None:
        if self.verbose or n > 1:
            self.say(f"{self.stamp()} start {key}" + (f" (attempt {n})" if n > 1 else ""))

    def ended(self, key: str, n: int, status: str, duration: float, error, retry_in: Optional[float]) -> None:
        self.stream(key, n, final=True)
        if status == "success":
            self.say(f"{self.stamp()} ok    {key} ({duration:.2f}s)")
        elif status == "cached":
            self.say(f"{self.stamp()} cache {key}: an earlier result with the same fingerprint")
        elif status == "interrupted":
            self.say(f"{self.stamp()} stop  {key}: interrupted", always=True)
        else:
            tail = f"; retry in {retry_in:.1f}s" if retry_in is not None else ""
            # with -q, a failure that a retry may still mend is not said: its final attempt will be
            self.say(f"{self.stamp()} FAIL  {key}" + (f" (attempt {n})" if n else "") +
                     f": {_error_line(error)}{tail}", always=retry_in is None)

    def skipped(self, key: str, reason: str) -> None:
        self.say(f"{self.stamp()} skip  {key}: {reason}")

    def kept(self, key: str) -> None:
        """A result kept from before (a resume or --from): one line each only with -v."""
        self.kept_tasks.add(key.split("[", 1)[0])
        if self.verbose:
            self.say(f"{self.stamp()} keep  {key}")

    def note(self, text: str) -> None:
        self.say(f"{self.stamp()} note  {text}", always=True)

    def expanded(self, name: str, count: int) -> None:
        """A foreach task's list is known: `count` instances."""

    def waiting(self, key: str, why: str, every: str) -> None:
        """A sensor's first "not yet" (the next ones are counted in its state, not said)."""
        self.say(f"{self.stamp()} wait  {key}: {why}; checking every {every}")

    def stopping(self, reason: Optional[str]) -> None:
        self.say(f"{self.stamp()} stopping: {reason}; waiting for running tasks", always=True)

    def hook_ended(self, event: str, error, key: Optional[str] = None, n: int = 0) -> None:
        if key:
            self.stream(key, n, final=True)  # with -v: what the hook printed
        if error:
            self.say(f"{self.stamp()} hook on {event} failed: {_error_line(error)}", always=True)
        else:
            self.say(f"{self.stamp()} hook on {event} ok")

    def tick(self, running: Dict[str, Any]) -> None:
        if self.verbose:
            for key, inst in running.items():
                self.stream(key, inst.attempt)

    def stream(self, key: str, n: int, final: bool = False) -> None:
        """With -v: print what the attempt's log gained since last time."""
        if not self.verbose or not n:
            return
        path = state.log_path(self.folder, key, n)
        offset = self.offsets.get(path, 0)
        try:  # never through a link planted in the state folder
            with os.fdopen(state.open_file(path, os.O_RDONLY), "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return
        if not final:
            cut = data.rfind(b"\n") + 1  # whole lines only while it runs
            data = data[:cut]
        self.offsets[path] = offset + len(data)
        for line in data.decode("utf-8", "replace").splitlines():
            print(f"{key} | {line}", file=self.out, flush=True)

    def run_finished(self, report: Dict[str, Any]) -> None:
        tasks = report["tasks"]
        top = [k for k in tasks if "[" not in k]
        by: Dict[str, int] = {}
        for k in top:
            by[tasks[k]["status"]] = by.get(tasks[k]["status"], 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(by.items()))
        if self.kept_tasks:
            parts += f" ({len(self.kept_tasks)} kept from before)"
        instances: Dict[str, int] = {}
        for k, t in tasks.items():
            if "[" in k:
                instances[t["status"]] = instances.get(t["status"], 0) + 1
        if instances:  # named apart, as the report holds them: a foreach task and each of its instances
            parts = f"tasks: {parts}; instances: " + ", ".join(f"{n} {s}" for s, n in sorted(instances.items()))
        took = time.monotonic() - self.t0  # this session's time (a resumed run's report counts from its start)
        self.say(f"run {report['run_id']} {report['status']} in {took:.2f}s: {parts}", always=True)


class LiveReporter(PlainReporter):
    """On a terminal: events scroll, and one status line at the bottom says where the run is."""

    refresh = 0.2

    def __init__(self, out: TextIO = sys.stdout, quiet: bool = False, verbose: bool = False) -> None:
        super().__init__(out, quiet, verbose)
        self.total = 0
        self.done = 0
        self.run_id = ""
        self.started_at: Dict[str, float] = {}
        self.status_shown = False
        self.instances = self.instances_done = 0  # foreach instances: as many as expanded so far
        self.left: Dict[str, int] = {}  # foreach task -> its instances not yet final
        self.failed_tasks = self.failed_instances = 0

    def say(self, text: str, always: bool = False) -> None:
        if always or not self.quiet:
            self.clear()
            print(text, file=self.out, flush=True)

    def clear(self) -> None:
        if self.status_shown:
            self.out.write("\r\x1b[2K")
            self.status_shown = False

    def run_started(self, report: Dict[str, Any], folder: str) -> None:
        self.total = len(report["tasks"])
        self.run_id = report["run_id"]
        super().run_started(report, folder)

    def started(self, key: str, n: int) -> None:
        self.started_at[key] = time.monotonic()
        super().started(key, n)

    def expanded(self, name: str, count: int) -> None:
        self.instances += count
        self.left[name] = count
        if count == 0:
            self.done += 1  # a foreach over nothing is final at once

    def final(self, key: str, failed: bool = False) -> None:
        """A task or an instance reached its final state: counted apart, as the report counts them."""
        if "[" not in key:
            self.done += 1
            self.failed_tasks += failed
            return
        self.instances_done += 1
        self.failed_instances += failed
        name = key.split("[", 1)[0]
        self.left[name] = self.left.get(name, 1) - 1
        if self.left[name] == 0:
            self.done += 1

    def ended(self, key: str, n: int, status: str, duration: float, error, retry_in) -> None:
        self.started_at.pop(key, None)
        if status in ("success", "failed", "cached") and retry_in is None:
            self.final(key, status == "failed")
        super().ended(key, n, status, duration, error, retry_in)

    def skipped(self, key: str, reason: str) -> None:
        self.final(key)
        super().skipped(key, reason)

    def kept(self, key: str) -> None:
        self.final(key)
        super().kept(key)

    def tick(self, running: Dict[str, Any]) -> None:
        super().tick(running)
        now = time.monotonic()
        width = shutil.get_terminal_size((100, 20)).columns
        active = [k for k, inst in running.items() if getattr(inst, "began", True)]  # not still in a queue
        shown = ", ".join(f"{k} {now - self.started_at.get(k, now):.0f}s" for k in active[:4])
        more = f" +{len(active) - 4}" if len(active) > 4 else ""
        failed = [f"{n} {what}{'s' * (n != 1)}" for n, what in ((self.failed_tasks, "task"),
                                                                (self.failed_instances, "instance")) if n]
        failed_text = f" · failed: {', '.join(failed)}" if failed else ""
        instances = f" · instances {self.instances_done}/{self.instances}" if self.instances else ""
        queued = f" · queued: {len(running) - len(active)}" if len(running) > len(active) else ""
        line = (f"{self.run_id} · tasks {self.done}/{self.total}{instances}{failed_text} · "
                f"running: {shown or '-'}{more}{queued}")
        self.out.write("\r\x1b[2K" + line[: width - 1])
        self.out.flush()
        self.status_shown = True

    def run_finished(self, report: Dict[str, Any]) -> None:
        self.clear()
        super().run_finished(report)


def make_reporter(out: TextIO, quiet: bool, verbose: bool):
    live = out.isatty() and os.environ.get("TERM") != "dumb"
    return (LiveReporter if live else PlainReporter)(out, quiet, verbose)
