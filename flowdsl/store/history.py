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
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import journal, state
from .state import journal_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10's


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


def _time_key(run_id: str) -> Tuple[str, str]:
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
        raise journal.never_started(path)
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
            if is_summary(line, run_id) and \
                    (line.get("status") != "running" or journal.is_live(journal_path(folder))):
                return line
        except (OSError, ValueError, RecursionError):
            pass  # missing, unreadable, a link, not JSON: the journal tells (and `run` rewrites it)
        return load(folder).summary()
    except journal.JournalError as e:
        return {"run_id": run_id, "pipeline": pipeline_of(run_id), "status": "damaged", "trigger": None,
                "logical_date": None, "started_at": None, "finished_at": None, "duration_s": None,
                "error": str(e)}


_TIMES = ("started_at", "finished_at")
_TEXTS = ("trigger", "logical_date")
_NONE = type(None)


def is_summary(line: Any, run_id: str) -> TypeGuard[Dict[str, Any]]:
    """Whether a summary.json is a run's line, of this run, with each field of the type flow writes.

    One that is not (a hand edit, `[]`, a list where a date goes) is not believed:
    the journal tells instead, so a damaged summary costs a replay, never a crash.
    """
    if not isinstance(line, dict) or line.get("run_id") != run_id:
        return False
    if not isinstance(line.get("status"), str) or not isinstance(line.get("pipeline"), str):
        return False
    if any(not isinstance(line.get(k), (str, _NONE)) for k in _TEXTS + _TIMES):
        return False
    for key in _TIMES:
        try:
            if line.get(key) is not None:
                import datetime as dt

                dt.datetime.fromisoformat(line[key])
        except ValueError:
            return False
    duration = line.get("duration_s")
    if isinstance(duration, bool) or not isinstance(duration, (int, float, _NONE)) or \
            (duration is not None and not 0 <= duration < 1e12):
        return False
    if not isinstance(line.get("pid"), (int, _NONE)) or isinstance(line.get("pid"), bool):
        return False
    error = line.get("error")
    return error is None or (isinstance(error, dict) and
                             all(isinstance(error.get(k), (str, _NONE)) for k in ("type", "message", "traceback")))


def runs(state_root: str, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """Each run's line, newest first; runs started in the same millisecond, newest logical date first.

    A tick that catches up names its runs in one millisecond, and their ids end
    in random hex: ordered by id alone, `catchup all` would list 15:05, 13:05, 14:05.
    """
    out: List[Dict[str, Any]] = []
    group: List[Dict[str, Any]] = []  # the runs of one start stamp, read before the limit is applied
    stamp = None
    for run_id in run_ids(state_root):
        if pipeline is not None and pipeline_of(run_id) != pipeline:
            continue
        if _stamp(run_id) != stamp:
            out.extend(_by_logical_date(group))
            group, stamp = [], _stamp(run_id)
            if limit is not None and len(out) >= limit:
                break
        group.append(summary(state_root, run_id))
    else:
        out.extend(_by_logical_date(group))
    return out if limit is None else out[:limit]


def _stamp(run_id: str) -> str:
    return run_id.rsplit("-", 2)[1]


def _by_logical_date(group: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Newest logical date first (as instants: zones differ), then by id; a run without one last."""
    import datetime as dt

    def key(line: Dict[str, Any]) -> Tuple[bool, float, str]:
        text = line.get("logical_date")
        try:
            when = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            instant = when.timestamp() if when is not None else None
        except (ValueError, OverflowError, OSError):
            instant = None
        return (instant is not None, instant or 0.0, str(line.get("run_id")))

    return sorted(group, key=key, reverse=True)


def latest(state_root: str, pipeline: Optional[str] = None) -> Optional[str]:
    """The newest run (of those started in the same millisecond, the newest logical date, as `runs` lists)."""
    first: List[str] = []
    unstarted = None  # the newest run that never started: the latest only when no run did
    for run_id in run_ids(state_root):
        if pipeline is None or pipeline_of(run_id) == pipeline:
            if never_started(state_root, run_id):
                unstarted = unstarted or run_id
                continue
            if first and _stamp(run_id) != _stamp(first[0]):
                break
            first.append(run_id)
    if len(first) <= 1:
        return first[0] if first else unstarted
    newest: str = _by_logical_date([summary(state_root, run_id) for run_id in first])[0]["run_id"]
    return newest


def never_started(state_root: str, run_id: str) -> bool:
    """A run whose journal is missing or empty and that nobody holds: its first write failed (a full disk).

    It is no one's latest run: a `--resume` (or `status`) without an id passes
    it by rather than choose, again and again, a run it cannot continue.
    `flow runs` lists it as damaged and `flow prune` deletes it.
    """
    path = journal_path(state.run_dir(state_root, run_id))
    try:
        if os.lstat(path).st_size > 0:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return not journal.is_live(path)


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
        # Decided and deleted while holding the journal's lock, as a runner holds it: a resume
        # that starts meanwhile either finds the lock taken (and says the run is busy) or, once
        # the folder is gone, no run; one that opened the journal before is refused by its
        # writer, which checks the journal it locked is still there (journal.Writer).
        try:
            with journal.holding(path) as held:
                if held is None and _young(folder, now):
                    continue  # no journal yet: a run being made right now, not one that never started
                kept_per[name] = kept_per.get(name, 0) + 1
                reasons = []
                if keep is not None:
                    reasons.append(kept_per[name] > keep)
                if older_than is not None:
                    try:
                        reasons.append(now - os.lstat(path).st_mtime > older_than)
                    except OSError:
                        reasons.append(True)  # no journal: a run that never started
                if not (reasons and all(reasons)):
                    continue
                if not dry_run:
                    failed = _delete(folder)
                    if failed:
                        if refused is not None:
                            refused.append(f"{run_id}: not wholly deleted: {failed}; delete {folder} by hand")
                        continue
                doomed.append(run_id)
        except journal.Busy:
            continue  # live: never deleted
        except (OSError, journal.JournalError) as e:
            if refused is not None:
                refused.append(f"{run_id}: not deleted: {getattr(e, 'strerror', None) or e}")
    return doomed


YOUNG = 60.0  # seconds: a run folder without a journal this young is one being made


def _young(folder: str, now: float) -> bool:
    try:
        return now - os.lstat(folder).st_mtime < YOUNG
    except OSError:
        return False


def _delete(folder: str) -> str:
    """Delete a run's folder: "" when it is gone, else why not (what stayed is said, never hidden)."""
    errors: List[str] = []

    def failed(function: Callable[..., object], path: str, excinfo: object) -> None:
        error = excinfo[1] if isinstance(excinfo, tuple) else excinfo
        errors.append(f"{path}: {getattr(error, 'strerror', None) or error}")

    shutil.rmtree(folder, onerror=failed)
    return errors[0] if errors else ""
