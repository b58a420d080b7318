"""Every attempt of a run, read from its journal beside the run state.

`RunState` keeps each task's latest state (what `flow status` and the
report need); the HTML report also draws every attempt as its own bar, with
the time between a failure and its retry, so one pass over the journal feeds
both: each record goes through `RunState.apply` and, if it starts or ends an
attempt, into that task's list of attempts here.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import journal, state


class AttemptRecord:
    __slots__ = ("number", "started", "finished", "status", "cpu", "error", "retry_at", "session")

    def __init__(self, number: int, started: float, session: int) -> None:
        self.number = number
        self.started = started
        self.finished: Optional[float] = None
        self.status = "running"
        self.cpu: Optional[float] = None  # journals written before CPU was measured have none
        self.error: Optional[Dict[str, Any]] = None
        self.retry_at: Optional[float] = None
        self.session = session


def read_attempts(folder: str) -> Tuple[state.RunState, Dict[str, List[AttemptRecord]], Optional[float]]:
    """(the run state, settled; each task key's attempts in order; the time of the journal's last record).

    Raises journal.JournalError when the journal cannot be read or holds no run.
    """
    path = state.journal_path(folder)
    run = state.RunState()
    attempts: Dict[str, List[AttemptRecord]] = {}
    session = 0
    last: Optional[float] = None
    for r in journal.iter_records(path):
        run.apply(r)
        e = r["e"]
        t = r.get("t")
        if isinstance(t, (int, float)):
            last = t
        if e == "start":
            attempts.setdefault(r["task"], []).append(AttemptRecord(r.get("n", 0), r["t"], session))
        elif e == "end" and r.get("n"):
            a = _open_attempt(attempts.get(r["task"], ()), r["n"])
            if a is not None:
                a.finished, a.status, a.cpu = r["t"], r["status"], r.get("cpu")
                a.error, a.retry_at = r.get("error"), r.get("retry_at")
        elif e == "resume":
            session += 1
            _close_open(attempts, last, "interrupted")  # what the session before left running
    if not run.info:
        raise journal.JournalError(f"{path}: the journal is empty (the run never started)")
    run.settle(journal.is_live(path))
    if run.status != "running":  # a dead or finished run: nothing is running any more
        _close_open(attempts, run.finished or last, "interrupted")
    return run, attempts, last


def _open_attempt(found: Sequence[AttemptRecord], number: int) -> Optional[AttemptRecord]:
    for a in reversed(found):
        if a.number == number and a.finished is None:
            return a
    return None


def _close_open(attempts: Dict[str, List[AttemptRecord]], when: Optional[float], status: str) -> None:
    for found in attempts.values():
        for a in found:
            if a.finished is None:
                a.finished, a.status = max(when or a.started, a.started), status
