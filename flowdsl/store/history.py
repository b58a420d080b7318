"""Reading the state folder: the runs it holds, which are alive, and pruning.

`flow runs` must answer quickly over thousands of runs, so it reads each
run's small `summary.json` and replays a journal only when the summary
cannot be trusted: missing, unreadable, or saying `running` for a run
whose journal no live process holds (it died; the journal tells how far it
got). A run is alive exactly while its runner holds the journal's lock.

Only names of `runs/` shaped like run ids are runs (`state.is_run_id`); a
run folder that is a link, another user's or writable by others, and a file
whose run id is not its folder's, are damage: listed as `damaged`, never
followed.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

from . import journal, state
from .state import journal_path


class NoSuchRun(Exception):
    """A run id (or prefix) that names no run, or more than one."""


def runs_folder(state_root: str) -> str:
    return os.path.join(state_root, "runs")


def run_ids(state_root: str) -> List[str]:
    """Every run id, newest first (ids sort by start time within a pipeline, so sort by the time part)."""
    try:
        names = os.listdir(runs_folder(state_root))
    except OSError:
        return []
    return sorted((n for n in names if state.is_run_id(n)), key=_time_key, reverse=True)


def _time_key(run_id: str) -> tuple:
    name, _, rest = run_id.rpartition("-")  # <pipeline>-<time>-<hex>
    pipeline, _, stamp = name.rpartition("-")
    return (stamp, run_id)


def pipeline_of(run_id: str) -> str:
    return run_id.rsplit("-", 2)[0]


def replay(folder: str) -> Tuple[state.RunState, Optional[int]]:
    """The run's state, and where the journal's last whole record ends (None: the journal is whole).

    From the snapshot while the journal is the one it was made from, else by
    replaying the journal. Raises journal.JournalError, also for a run whose
    folder flow refuses or whose records name another run than its folder.
    """
    _check_folder(folder)
    run = state.read_snapshot(folder)
    if run is not None and run.info.get("run_id") == os.path.basename(os.path.normpath(folder)):
        return run, None  # (one naming another run is not believed: the journal tells, and its reader checks it)
    records, end = journal.scan(journal_path(folder))
    run = state.RunState()
    for record in records:
        run.apply(record)
    return run, end


def _check_folder(folder: str) -> None:
    try:
        state.check_run_folder(folder)
    except state.Unsafe as e:
        raise journal.JournalError(str(e)) from None
    except FileNotFoundError:
        raise journal.JournalError(f"{folder}: no such run folder (was it deleted?)") from None
    except OSError as e:
        raise journal.JournalError(f"{folder}: {e.strerror or e}") from None


def load(folder: str) -> state.RunState:
    """The run as its journal tells it, settled (a dead run is interrupted). Raises journal.JournalError."""
    path = journal_path(folder)
    run, _ = replay(folder)
    if not run.info:
        raise journal.JournalError(f"{path}: the journal is empty (the run never started)")
    return run.settle(journal.is_live(path))


def summary(state_root: str, run_id: str) -> Dict[str, Any]:
    """The run's line for `flow runs`.

    A summary is believed only when it is a run's line and names this run:
    otherwise (and when it says `running` for a run nobody holds) the journal tells.
    """
    folder = state.run_dir(state_root, run_id)
    try:
        _check_folder(folder)
        try:
            line = state.read_json(os.path.join(folder, "summary.json"))
            if isinstance(line, dict) and line.get("run_id") == run_id and \
                    (line.get("status") != "running" or journal.is_live(journal_path(folder))):
                return line
        except (OSError, ValueError):
            pass
        return load(folder).summary()
    except journal.JournalError as e:
        return {"run_id": run_id, "pipeline": pipeline_of(run_id), "status": "damaged", "trigger": None,
                "logical_date": None, "started_at": None, "finished_at": None, "duration_s": None,
                "error": str(e)}


def runs(state_root: str, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    out = []
    for run_id in run_ids(state_root):
        if pipeline is not None and pipeline_of(run_id) != pipeline:
            continue
        out.append(summary(state_root, run_id))
        if limit is not None and len(out) >= limit:
            break
    return out


def latest(state_root: str, pipeline: Optional[str] = None) -> Optional[str]:
    for run_id in run_ids(state_root):
        if pipeline is None or pipeline_of(run_id) == pipeline:
            return run_id
    return None


def resolve(state_root: str, given: Optional[str], pipeline: Optional[str] = None) -> str:
    """A run id from what the user typed: exact, a unique prefix, or (None) the latest run."""
    if given is None:
        found = latest(state_root, pipeline)
        if found is None:
            whose = f" of {pipeline}" if pipeline else ""
            raise NoSuchRun(f"no runs{whose} in {state_root}")
        return found
    ids = run_ids(state_root)
    if given in ids:
        return given
    matches = [i for i in ids if i.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NoSuchRun(f"no run `{given}` in {state_root} (see `flow runs`)")
    raise NoSuchRun(f"`{given}` could be any of {len(matches)} runs: {', '.join(matches[:3])}...")


def prune(state_root: str, keep: Optional[int], older_than: Optional[float], now: float,
          pipeline: Optional[str] = None, dry_run: bool = False,
          refused: Optional[List[str]] = None) -> List[str]:
    """Delete finished runs beyond the newest `keep` of each pipeline and/or last written over `older_than` s ago.

    Given both, a run goes only when it is beyond `keep` *and* too old. A
    live run is never deleted, nor a run folder flow refuses (a link, another
    user's, writable by others): why goes to `refused`. Returns the ids
    deleted (or that would be).
    """
    kept_per: Dict[str, int] = {}
    doomed = []
    for run_id in run_ids(state_root):
        name = pipeline_of(run_id)
        if pipeline is not None and name != pipeline:
            continue
        folder = state.run_dir(state_root, run_id)
        try:
            state.check_run_folder(folder)
        except OSError as e:
            if refused is not None:
                refused.append(f"{run_id}: not deleted: {e.strerror or e}")
            continue
        path = journal_path(folder)
        if journal.is_live(path):
            continue
        kept_per[name] = kept_per.get(name, 0) + 1
        reasons = []
        if keep is not None:
            reasons.append(kept_per[name] > keep)
        if older_than is not None:
            try:
                reasons.append(now - os.lstat(path).st_mtime > older_than)
            except OSError:
                reasons.append(True)  # no journal: a run that never started
        if reasons and all(reasons):
            doomed.append(run_id)
    if not dry_run:
        for run_id in doomed:
            shutil.rmtree(state.run_dir(state_root, run_id), ignore_errors=True)
    return doomed
