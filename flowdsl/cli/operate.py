"""`flow stop` and `flow mark`: operating runs from outside them.

`flow mark` sets a task of a run that is not live as if it had ended that
way: a `mark` record in its journal (taken under the journal's lock, so no
run can be resuming it meanwhile), which a later `--resume` honours.

The runner's process is found by what it holds, not by what a file says: a
pid read from `summary.json` is used only if that process has the run's
journal open (its lock is the run's liveness), else every process of the
user is looked at for one that does. It gets SIGTERM, as a Ctrl-C would:
its attempts (and what they started) stop, the run ends `interrupted`, and
`flow run --resume` continues it.
"""

from __future__ import annotations

import os
import signal
import time

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

STOP_WAIT = 30.0  # seconds to wait for the run to end (its attempts get 5 s to stop, then are killed)


def holds(pid: int, path: str) -> bool:
    """True if process `pid` has the file `path` open (one of its descriptors leads to it)."""
    folder = f"/proc/{pid}/fd"
    try:
        target = os.stat(path)
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def holders(path: str, hint: Optional[int]) -> List[int]:
    """The processes that hold the journal open: the summary's pid if it does, else whoever does."""
    if hint and holds(hint, path):
        return [hint]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and holds(int(entry), path):
            found.append(int(entry))
    return found


def cmd_stop(args) -> int:
    from ..store import history, journal, state

    if args.run_id and args.run_id.endswith(".flow") and os.path.isfile(args.run_id) and not args.file:
        args.file, args.run_id = args.run_id, None  # `flow stop pipeline.flow`: that file's state folder
    root = state.state_dir(args.file, args.state_dir) if args.file else state.state_dir(None, args.state_dir)
    if args.run_id is None:
        live = [r for r in history.run_ids(root)
                if journal.is_live(state.journal_path(state.run_dir(root, r)))]
        if not live:
            print(f"flow stop: no run is live in {root}")
            return EXIT_FAILED
        run_id = live[0]
    else:
        try:
            run_id = history.resolve(root, args.run_id)
        except history.NoSuchRun as e:
            raise UsageError(str(e)) from None
    path = state.journal_path(state.run_dir(root, run_id))
    if not journal.is_live(path):
        print(f"flow stop: run {run_id} is not live: nothing to stop")
        return EXIT_FAILED
    try:
        hint = history.summary(root, run_id).get("pid")
    except Exception:  # a damaged summary: the journal's holders say who runs it
        hint = None
    pids = holders(path, hint if isinstance(hint, int) else None)
    if not pids:
        print(f"flow stop: run {run_id} is live, but no process of yours holds its journal (another user's?)")
        return EXIT_FAILED
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    give_up = time.monotonic() + STOP_WAIT
    while journal.is_live(path) and time.monotonic() < give_up:
        time.sleep(0.05)
    if journal.is_live(path):
        print(f"flow stop: run {run_id} did not end within {STOP_WAIT:.0f}s of SIGTERM (pid {pids[0]})")
        return EXIT_FAILED
    print(f"stopped run {run_id}: it is interrupted; `flow run FILE --resume {run_id}` continues it")
    return EXIT_OK


def add_stop(p) -> None:
    p.add_argument("run_id", nargs="?", metavar="RUN_ID",
                   help="the run to stop (a unique prefix will do; default: the latest live run)")
    p.add_argument("--file", metavar="F.flow", help="use the state folder of this pipeline file, as `run` does")
    p.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default ./.flow)")


def cmd_mark(args) -> int:
    import json

    from ..lang.diagnostics import did_you_mean
    from ..store import codec, history, journal, state

    root = state.state_dir(args.file, args.state_dir) if args.file else state.state_dir(None, args.state_dir)
    try:
        run_id = history.resolve(root, args.run_id)
    except history.NoSuchRun as e:
        raise UsageError(str(e)) from None
    result = None
    if args.result is not None:
        if args.status != "success":
            raise UsageError("--result goes with `success`")
        try:
            result = codec.encode_result(json.loads(args.result), "msgpack")
        except ValueError as e:
            raise UsageError(f"--result takes JSON: {e}") from None
    folder = state.run_dir(root, run_id)
    try:
        writer = journal.Writer(state.journal_path(folder), create=False)
    except journal.Busy:
        raise UsageError(f"run {run_id} is live: stop it first (`flow stop {run_id}`), then mark it") from None
    try:
        run, end = history.replay(folder)  # under the lock: nobody else writes it now
        if end is not None and end < writer.size:
            writer.truncate(end)  # a torn last record
        names = list(run.info.get("tasks") or ())
        keys = names + [k for name in names for k in run.instances.get(name, ())]
        if args.task not in keys:
            hint = did_you_mean(args.task, keys)
            raise UsageError(f"run {run_id} has no task `{args.task}`" + (f"; {hint}" if hint else ""))
        if args.task in run.instances:
            raise UsageError(f"`{args.task}` is a foreach task: mark its instances (`{args.task}[0]`, ...)")
        record = {"e": "mark", "task": args.task, "status": args.status, "t": time.time(), "result": result,
                  "rc": codec.checksum(result)}
        writer.append(record)
        writer.close()
    finally:
        writer.release()
    run.apply(record)
    try:  # what `flow status` and the report read follow; the snapshot no longer matches the journal
        os.unlink(os.path.join(folder, state.SNAPSHOT))
    except OSError:
        pass
    report = run.settle(False).report(results=state.REPORT_RESULT_BYTES)
    state.write_json_atomic(os.path.join(folder, "report.json"), report)
    print(f"marked {args.task} {args.status} in run {run_id}: a `--resume` takes it so")
    return EXIT_OK


def add_mark(p) -> None:
    p.add_argument("run_id", metavar="RUN_ID", help="a run that is not live (a unique prefix will do)")
    p.add_argument("task", metavar="TASK", help="a task, or a foreach instance `T[i]`")
    p.add_argument("status", choices=("success", "failed", "skipped"))
    p.add_argument("--result", metavar="JSON", help="with success: the task's result, as JSON")
    p.add_argument("--file", metavar="F.flow", help="use the state folder of this pipeline file, as `run` does")
    p.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default ./.flow)")
