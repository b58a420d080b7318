"""The verbs that look back at runs: `runs`, `status`, `logs`, `prune`.

They read the state folder (`./.flow` unless `--state-dir` or
$FLOW_STATE_DIR say otherwise) and never import user code. What they need
beyond argparse is imported when the verb runs, so that `flow validate`
does not pay for it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError, add_file, pipeline_of_file, take_file


def _root(args) -> str:
    """The state folder: `--state-dir`, $FLOW_STATE_DIR, else the one beside the `.flow` file given
    (`--file`, or the file in place of a run id or pipeline), else ./.flow."""
    from ..store import state

    return state.state_dir(getattr(args, "file", None), args.state_dir)


def where_runs_are(root: str) -> str:
    """A hint for `no runs` in a folder that does not exist: runs live beside their `.flow` file."""
    if os.path.isdir(root):
        return ""
    return (f" ({root} does not exist: a run keeps its state beside its .flow file, so name that file, "
            "`flow runs path/to/pipeline.flow`, or give --state-dir)")


def _run_id(args, given: Optional[str]) -> Tuple[str, str]:
    from ..store import history

    root = _root(args)
    pipeline = pipeline_of_file(args.file) if getattr(args, "file", None) and given is None else None
    try:
        return root, history.resolve(root, given, pipeline)  # no id: the latest (of the file's pipeline)
    except history.NoSuchRun as e:
        raise UsageError(str(e) + where_runs_are(root)) from None


def _table(rows: List[List[Any]], headers: List[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


def _when(iso: Optional[str]) -> str:
    """An ISO timestamp shortened for a table, in local time."""
    if not iso:
        return "-"
    from ..lang.timeutil import parse_iso

    return parse_iso(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def _first_line(text: Optional[str], width: int = 60) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[: width - 3] + "..."


# ---- runs ----------------------------------------------------------------------


def cmd_runs(args) -> int:
    import json

    from ..store import history

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    take_file(args, "pipeline")
    if args.file and args.pipeline is None:
        args.pipeline = pipeline_of_file(args.file)
    found = history.runs(_root(args), args.pipeline, args.limit)
    if args.html:
        from .report import index_path, write_index

        whose = f" of {args.pipeline}" if args.pipeline else ""
        index = index_path(args.html)
        written, failed = write_index(_root(args), found, index, f"flow runs{whose} in {_root(args)}")
        print(f"wrote {index} and {written} run pages")
        return EXIT_FAILED if failed else EXIT_OK
    if args.json:
        keys = ("run_id", "pipeline", "status", "trigger", "logical_date", "started_at", "finished_at", "duration_s")
        print(json.dumps([{k: r.get(k) for k in keys} | ({"error": r["error"]} if "error" in r else {})
                          for r in found], indent=2))
        return EXIT_OK
    if not found:
        whose = f" of {args.pipeline}" if args.pipeline else ""
        print(f"no runs{whose} in {_root(args)}{where_runs_are(_root(args))}")
        return EXIT_OK
    rows = [[r["run_id"], r.get("status"), r.get("trigger") or "-", r.get("logical_date") or "-",
             _when(r.get("started_at")), _seconds(r.get("duration_s"))] for r in found]
    print(_table(rows, ["run", "status", "trigger", "logical date", "started", "duration"]))
    sys.stdout.flush()
    for r in found:  # each damaged run: which file, and what to do
        if r.get("status") == "damaged" and r.get("error"):
            print(f"flow runs: {r['run_id']}: {r['error']}", file=sys.stderr)
    return EXIT_OK


def add_runs(p) -> None:
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE", help="only this pipeline's runs (or its .flow file)")
    add_file(p)
    p.add_argument("--limit", type=int, metavar="N", help="the newest N runs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--html", metavar="FILE", help="write an HTML index of the runs, with each run's page beside it")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (default ./.flow)")


# ---- status --------------------------------------------------------------------


def load_report(folder: str, results: bool = True) -> Dict[str, Any]:
    """The run's report; without `results`, their fields are null (nothing is decoded)."""
    from ..store import history, journal

    try:
        return history.load(folder).report(results=None if results else 0)
    except journal.JournalError as e:
        raise Damaged(str(e)) from None


class Damaged(Exception):
    """A journal that cannot be read: one line naming the file and what to do, exit 1."""


def cmd_status(args) -> int:
    import json

    from ..store import state

    take_file(args, "run_id")
    root, run_id = _run_id(args, args.run_id)
    try:
        report = load_report(state.run_dir(root, run_id), results=args.json)
    except Damaged as e:
        print(f"flow status: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    wanted = set(args.state or ()) | ({"failed"} if args.failed else set())
    if wanted:  # only the tasks (and instances) in those states
        report["tasks"] = {k: t for k, t in report["tasks"].items() if t["status"] in wanted}
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    print(f"run       {report['run_id']}")
    print(f"pipeline  {report['pipeline']} ({report['file']})")
    print(f"status    {report['status']}" + (f": {report['reason']}" if report.get("reason") else ""))
    print(f"trigger   {report['trigger']}, logical date {report['logical_date']}")
    print(f"started   {_when(report['started_at'])}, took {_seconds(report['duration_s'])}")
    rows = []
    for key, t in report["tasks"].items():
        error = t.get("error")
        note = (f"{error['type']}: {_first_line(error.get('message'))}" if error else
                t.get("reason") or _kept(t.get("kept_from"), report["run_id"]))
        if t.get("worker"):  # where it ran, on a cluster
            note = f"on {t['worker']}" + (f"; {note}" if note else "")
        if t.get("child_run"):  # a `call`: its child run
            note = f"child run {t['child_run']}" + (f"; {note}" if note else "")
        if t.get("checks") and t["status"] == "waiting":  # a sensor between checks
            note = f"{t['checks']} check{'s' if t['checks'] != 1 else ''} so far" + (f"; {note}" if note else "")
        rows.append([key, t["status"], t["attempts"], _seconds(t["duration_s"]), note])
    print()
    print(_table(rows, ["task", "state", "attempts", "duration", "error"]))
    failures = [(k, t) for k, t in report["tasks"].items() if t["status"] == "failed" and t.get("error")]
    if failures:
        print()
        print("\n".join(_failure_lines(failures)))
    return EXIT_OK


SHOWN_FAILURES = 10  # failed tasks whose whole error `flow status` prints under the table


def _failure_lines(failures: List[Tuple[str, Dict[str, Any]]]) -> List[str]:
    """Each failure whole: its message wrapped to the terminal, a shell task's stderr tail and a Python
    task's traceback indented under it (the table's column holds only the start of the first line)."""
    import shutil
    import textwrap

    width = max(60, min(shutil.get_terminal_size((100, 20)).columns, 160))
    lines = []
    for key, t in failures[:SHOWN_FAILURES]:
        error = t["error"]
        message = (error.get("message") or "").rstrip()
        first, _, rest = message.partition("\n")
        lines.extend(textwrap.wrap(f"{key} (attempt {t['attempts']}): {error.get('type')}: {first}", width,
                                   subsequent_indent="    ") or [key])
        extra = rest if rest.strip() else ""
        if error.get("traceback"):
            extra = error["traceback"].rstrip()
        for line in extra.splitlines():
            lines.append("    " + line)
    if len(failures) > SHOWN_FAILURES:
        lines.append(f"... and {len(failures) - SHOWN_FAILURES} more failed: `flow status --failed --json` has "
                     "every error, `flow logs RUN TASK` each one's output")
    return lines


def _kept(source: Optional[str], run_id: str) -> str:
    if not source:
        return ""
    return "kept from an earlier session" if source == run_id else f"kept from {source}"


def add_status(p) -> None:
    p.add_argument("run_id", nargs="?", metavar="RUN_ID",
                   help="a run id or a unique prefix (default: the latest), or a .flow file (its latest run)")
    p.add_argument("--json", action="store_true", help="the run report of `flow run --json`")
    p.add_argument("--failed", action="store_true", help="only the tasks that failed")
    p.add_argument("--state", action="append", metavar="S",
                   choices=("success", "failed", "skipped", "cached", "pending", "running", "queued", "waiting"),
                   help="only the tasks in state S (repeatable)")
    add_file(p)
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (default ./.flow)")


# ---- logs ----------------------------------------------------------------------


def _attempt_logs(folder: str, task: Optional[str],
                  errors: Optional[Dict[Tuple[str, int], Dict[str, Any]]] = None) -> Tuple[List[Tuple[str, int]], bool]:
    """(the run's (task, attempt) pairs in the order they started, whether the task is known);
    `errors` gets each failed attempt's error."""
    from ..store import history, journal

    pairs, known = [], task is None
    for r in journal.iter_records(history.journal_path(folder)):
        e = r["e"]
        if e == "run" or e == "resume":
            known = known or task in r.get("tasks", ())
        elif e == "start":
            key = r["task"]
            if task is None or key == task or key.startswith(task + "["):
                known = True
                pairs.append((key, r["n"]))
        elif e == "end" and errors is not None and r.get("error") and r.get("n"):
            errors[(r["task"], r["n"])] = r["error"]
    hook = task in HOOK_KEYS
    if task is None or hook:  # hook logs too (the journal checked the folder: `logs/` is no link)
        logs = os.path.join(folder, "logs")
        try:
            names = sorted(os.listdir(logs))
        except OSError:
            names = []
        for name in names:
            key, _, n = name[:-4].rpartition(".")
            if key in HOOK_KEYS and (task is None or key == task) and name.endswith(".log") and n.isdigit() \
                    and n.isascii():
                pairs.append((key, int(n)))
        known = known or hook  # a hook that printed nothing has no log: shown as empty
    return pairs, known


HOOK_KEYS = ("on_success", "on_failure", "on_finish")  # `flow logs RUN on_failure`: that hook's output


def cmd_logs(args) -> int:
    from ..store import history, journal, state

    take_file(args, "run_id")
    try:
        root, run_id = _run_id(args, args.run_id)
    except UsageError:
        if args.run_id is None or args.task is not None:
            raise
        # `flow logs TASK`: one word that names no run is a task of the latest run
        args.run_id, args.task = None, args.run_id
        root, run_id = _run_id(args, None)
    folder = state.run_dir(root, run_id)
    out = sys.stdout.buffer
    offsets: Dict[str, int] = {}
    shown: List[str] = []
    refused: Dict[str, str] = {}  # logs that flow will not read (a link: it would print another file)

    def show(key: str, n: int, headers: bool) -> None:
        path = state.log_path(folder, key, n)
        if path in refused:
            return
        try:
            with os.fdopen(state.open_file(path, os.O_RDONLY), "rb") as f:
                f.seek(offsets.get(path, 0))
                data = f.read()
        except state.Unsafe as e:
            refused[path] = str(e)
            sys.stdout.flush()
            print(f"flow logs: error: {e}", file=sys.stderr, flush=True)
            return
        except OSError:
            return
        if not data:
            return
        if headers and (not shown or shown[-1] != path):
            out.write(f"{'' if not shown else chr(10)}==> {key} (attempt {n}) <==\n".encode())
        shown.append(path)
        offsets[path] = offsets.get(path, 0) + len(data)
        out.write(data)
        out.flush()

    errors: Dict[Tuple[str, int], Dict[str, Any]] = {}
    try:
        pairs, known = _attempt_logs(folder, args.task, errors)
    except journal.JournalError as e:
        print(f"flow logs: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    if not known:
        raise UsageError(f"run {run_id} has no task `{args.task}`")
    if not args.follow:
        headers = args.task is None or len(pairs) > 1
        for key, n in pairs:
            show(key, n, headers)
            error = errors.get((key, n))
            if error:  # how the attempt failed: a Python task's traceback, else the error whole
                if not shown or shown[-1] != key:
                    out.write(f"{'' if not shown else chr(10)}==> {key} (attempt {n}) failed <==\n".encode())
                    shown.append(key)
                text = error.get("traceback") or f"{error.get('type')}: {error.get('message')}"
                out.write((text.rstrip("\n") + "\n").encode("utf-8", "replace"))
                out.flush()
        if not pairs:
            print(f"no output yet for {args.task or 'this run'}", file=sys.stderr)
        return EXIT_FAILED if refused else EXIT_OK
    path = history.journal_path(folder)
    while True:
        live = journal.is_live(path)
        try:
            pairs, _ = _attempt_logs(folder, args.task)
        except journal.JournalError as e:
            print(f"flow logs: error: {e}", file=sys.stderr)
            return EXIT_FAILED
        for key, n in pairs:
            show(key, n, True)
        if not live:
            return EXIT_FAILED if refused else EXIT_OK
        time.sleep(0.2)


def add_logs(p) -> None:
    p.add_argument("run_id", nargs="?", metavar="RUN_ID",
                   help="a run id or a unique prefix (default: the latest), or a .flow file (its latest run)")
    p.add_argument("task", nargs="?", metavar="TASK", help="one task (a foreach task: all its instances)")
    add_file(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (default ./.flow)")


# ---- prune ---------------------------------------------------------------------


def cmd_prune(args) -> int:
    from ..lang.timeutil import duration_arg
    from ..store import checkpoint, history

    if args.keep is None and args.older_than is None:
        raise UsageError("say what to delete: --keep N (per pipeline) and/or --older-than D (like 30d)")
    if args.keep is not None and args.keep < 0:
        raise UsageError("--keep must be 0 or more")
    older = None
    if args.older_than is not None:
        older = duration_arg(args.older_than)
        if older is None:
            raise UsageError(f"--older-than takes a duration like 30d or 12h, not `{args.older_than}`")
    take_file(args, "pipeline")
    if args.file and args.pipeline is None:
        args.pipeline = pipeline_of_file(args.file)
    root = _root(args)
    now = time.time()
    refused: List[str] = []  # what flow will not touch (a link, another user's folder): said, left alone
    doomed = history.prune(root, args.keep, older, now, args.pipeline, args.dry_run, refused)
    verb = "would delete" if args.dry_run else "deleted"
    for run_id in doomed:
        print(f"{verb} {run_id}")
    cached = []
    if older is not None and not args.dry_run:
        cached = checkpoint.prune_cache(root, older, now, refused)
    print(f"{verb} {len(doomed)} run{'s' * (len(doomed) != 1)}"
          + (f" and {len(cached)} cache entr{'ies' if len(cached) != 1 else 'y'}" if cached else "")
          + f" in {root}")
    for why in refused:
        print(f"flow prune: error: {why}", file=sys.stderr)
    return EXIT_FAILED if refused else EXIT_OK


def add_prune(p) -> None:
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE", help="only this pipeline's runs (or its .flow file)")
    add_file(p)
    p.add_argument("--keep", type=int, metavar="N", help="keep the newest N runs of each pipeline")
    p.add_argument("--older-than", metavar="D", help="delete runs last written more than D ago (30d, 12h)")
    p.add_argument("--dry-run", action="store_true", help="list what would go, delete nothing")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (default ./.flow)")
