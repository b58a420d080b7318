"""The scheduling verbs: `flow tick`, `flow schedule` and `flow backfill`.

The decisions live in `scheduler` (slots and catchup), `tick` (claims and
overlap) and `launch` (starting runs); this module reads the command line,
loads the pipeline files and prints.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from typing import Dict, List, Optional

from ..run.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from .inputs import UsageError, flow_files


def now_arg(text: Optional[str]) -> dt.datetime:
    if text is None:
        return dt.datetime.now(dt.timezone.utc)
    return time_arg("--now", text)


def time_arg(flag: str, text: str) -> dt.datetime:
    """An ISO datetime from the command line, within the years slots can be computed for."""
    from ..lang.timeutil import parse_iso

    try:
        t = parse_iso(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None
    if not 2 <= t.year <= 9998:
        raise UsageError(f"{flag}: {text} is outside the years 2 to 9998")
    return t


def load_pipelines(paths: List[str], state_override: Optional[str], errors: list, store: bool = True):
    """{state folder: [tick.Pipeline]} for the scheduled pipelines below `paths`.

    A file with errors goes to `errors` (its diagnostics to stderr) and is left
    out; so is a file that another one includes (it is part of that one).
    """
    from ..lang.diagnostics import render_text
    from ..schedule.tick import Pipeline
    from ..store.ircache import checked, folder, keep_all
    from ..store.state import state_dir

    named, found = flow_files(paths or ["."])
    loaded: Dict[str, tuple] = {}
    included = set()
    keeps = []
    for path in dict.fromkeys(named + found):
        root = state_dir(path, state_override)
        result, keep = checked(path, folder(root))
        loaded[path] = (root, result)
        if result.program is not None:
            included.update(os.path.realpath(f) for f in result.program.files[1:])
        if keep is not None:
            keeps.append(keep)
    by_root: Dict[str, list] = {}
    for path, (root, result) in loaded.items():
        if path not in named and os.path.realpath(path) in included:
            continue
        bad = [d for d in result.diagnostics if d.severity == "error"]
        if bad or result.program is None:
            print(render_text(bad, result.sources, color=sys.stderr.isatty()), file=sys.stderr)
            errors.append({"file": path, "message": f"{len(bad)} error{'s' * (len(bad) != 1)} "
                                                    f"(`flow validate {path}`): {bad[0].message if bad else ''}"})
            continue
        cron_steps = [d for d in result.diagnostics if d.code == "W104"]  # `*/7` is not every 7
        by_root.setdefault(root, []).append(Pipeline(path, result.program, cron_steps))
    if keeps and store:
        keep_all(keeps)  # the next tick skips parsing and checking these files
    return by_root


# ---- tick --------------------------------------------------------------------


def cmd_tick(args) -> int:
    from ..lang.timeutil import duration_arg

    if args.every is not None and not args.loop:
        raise UsageError("--every goes with --loop")
    if args.loop and (args.now or args.dry_run or args.wait):
        raise UsageError("--loop ticks on the clock: drop --now, --dry-run and --wait")
    if args.loop:
        every = duration_arg(args.every or "60s")
        if not every or every < 1:
            raise UsageError(f"--every takes a duration of a second or more, like 60s or 5m, not `{args.every}`")
        return loop(args, every)
    return tick_once(args, now_arg(args.now))


def tick_once(args, now: dt.datetime) -> int:
    from ..schedule.tick import run_tick

    errors: list = []
    by_root = load_pipelines(args.paths, args.state_dir, errors, store=not args.dry_run)
    outcome = run_tick(by_root, now, args.state_dir, dry_run=args.dry_run, wait=args.wait)
    outcome.errors[:0] = errors
    failed = bool(outcome.errors)
    for e in outcome.errors:
        print(f"flow tick: error: {e['file']}: {e['message']}", file=sys.stderr)
    if not args.json:
        print_tick(outcome, args.dry_run)
    if args.wait and outcome.launched:
        failed |= wait_runs(outcome, quiet=args.json)
    if args.json:
        import json

        print(json.dumps(outcome.as_json(), indent=2))
    return EXIT_FAILED if failed else EXIT_OK


def print_tick(outcome, dry_run: bool) -> None:
    verb = "would fire" if dry_run else "fired"
    for f in outcome.fired:
        run = f" run {f['run_id']}" if f["run_id"] else ""
        print(f"{verb} {f['pipeline']} {f['logical_date']} ({f['schedule']}){run}")
    for s in outcome.skipped:
        why = {"catchup": "missed while nothing ticked (catchup)",
               "overlap": f"{', '.join(s.get('running', []))} still running (overlap skip)"}[s["reason"]]
        print(f"skipped {s['pipeline']} {s['logical_date']}: {why}")
    sys.stdout.flush()


def wait_runs(outcome, quiet: bool) -> bool:
    """Wait for the runs of a `--wait` tick; True if one did not succeed."""
    from ..schedule.launch import wait

    for pid, fired in outcome.launched:
        fired["status"] = wait(pid)
        if not quiet:
            print(f"{fired['pipeline']} {fired['logical_date']}: {fired['status']} (run {fired['run_id']})")
    return any(fired["status"] != "success" for _, fired in outcome.launched)


def loop(args, every: float) -> int:
    """Tick at each multiple of `every` on the clock until stopped."""
    import signal

    stop = []

    def on_signal(signum, frame):
        stop.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    code = EXIT_OK
    while not stop:
        code = tick_once(args, dt.datetime.now(dt.timezone.utc))
        _reap()
        next_at = (time.time() // every + 1) * every
        while not stop and time.time() < next_at:
            time.sleep(min(1.0, max(0.0, next_at - time.time())))
            _reap()
    return EXIT_INTERRUPTED if stop else code


def _reap() -> None:
    """Collect the runs this loop started that have ended (they were forked from it)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def add_tick(p) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="a .flow file, or a folder to search (default: .)")
    p.add_argument("--now", metavar="ISO", help="pretend it is this time (naive means UTC)")
    p.add_argument("--wait", action="store_true", help="run the due runs in the foreground; exit 1 if one fails")
    p.add_argument("--dry-run", action="store_true", help="say what would fire; start nothing, change nothing")
    p.add_argument("--json", action="store_true", help="print what fired and what was skipped as JSON")
    p.add_argument("--loop", action="store_true", help="keep ticking (for hosts without cron)")
    p.add_argument("--every", metavar="D", help="with --loop: how often (default 60s)")
    p.add_argument("--state-dir", metavar="DIR", help="where runs and the tick state are kept "
                                                      "(default: .flow beside each file)")


# ---- schedule ------------------------------------------------------------------


def cmd_schedule(args) -> int:
    from ..schedule import scheduler, slots

    if args.next < 1:
        raise UsageError("--next must be at least 1")
    now = now_arg(args.now)
    errors: list = []
    by_root = load_pipelines(args.paths, args.state_dir, errors, store=False)
    rows = []
    for root in sorted(by_root):
        for p in by_root[root]:
            pipeline = p.program.pipeline
            win = scheduler.window(pipeline)
            common = {"pipeline": pipeline.name, "file": p.file, "catchup": scheduler.catchup_mode(pipeline),
                      "overlap": scheduler.overlap_mode(pipeline),
                      "window": [t.isoformat() if t else None for t in win] if win else None}
            entries = scheduler.entries(pipeline)
            if not entries:
                rows.append(dict(common, schedule=None, tz=None, next=[], moved=[]))
            for entry in entries:
                upcoming = slots.upcoming(entry.rule, now, args.next, win)
                rows.append(dict(common, schedule=entry.label, tz=entry.zone,
                                 next=[s.logical.isoformat() for s in upcoming],
                                 moved=[s.logical.isoformat() for s in upcoming if s.moved]))
            for w in p.warnings:
                print(f"{w.span}: warning: {w.message} ({w.hint})",
                      file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    else:
        print_schedule(rows, now)
    for e in errors:
        print(f"flow schedule: error: {e['file']}: {e['message']}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def print_schedule(rows: List[dict], now: dt.datetime) -> None:
    from tabulate import tabulate

    if not rows:
        print("no pipelines found")
        return
    table, moved_any, shown = [], False, set()
    for r in rows:
        times = []
        for t in r["next"]:
            mark = " *" if t in r["moved"] else ""
            moved_any |= bool(mark)
            times.append(t + mark)
        if r["schedule"] is None:
            nxt = "(runs only when started)"
        elif not times:
            nxt = "none: the window has ended" if r["window"] and r["window"][1] else "none"
        else:
            nxt = "\n".join(times)
        rules = ""
        if r["file"] not in shown:  # once per pipeline
            shown.add(r["file"])
            rules = f"catchup {r['catchup']}\noverlap {r['overlap']}"
            if r["window"]:
                rules += f"\nwindow {r['window'][0]}" + (f"\n  to {r['window'][1]}" if r["window"][1] else "")
        table.append([r["pipeline"], r["schedule"] or "-", r["tz"] or "-", nxt, rules])
    print(tabulate(table, headers=["pipeline", "schedule", "zone", "next", "rules"], tablefmt="simple"))
    if moved_any:
        print("\n* moved by a daylight-saving gap: that wall time does not exist that day, "
              "so the slot fires at the first instant after the gap")


def add_schedule(p) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="a .flow file, or a folder to search (default: .)")
    p.add_argument("--next", type=int, default=5, metavar="N", help="how many fire times to show (default 5)")
    p.add_argument("--now", metavar="ISO", help="show the fire times after this time instead of now")
    p.add_argument("--json", action="store_true")
    p.add_argument("--state-dir", metavar="DIR", help="where checked files are cached (default: .flow beside each)")


# ---- backfill ------------------------------------------------------------------


def range_arg(flag: str, text: str, end: bool) -> dt.datetime:
    """An ISO datetime; a date alone at --end means the end of that day (both ends are included)."""
    t = time_arg(flag, text)
    if end and "T" not in text.strip().upper() and len(text.strip()) == 10:
        t += dt.timedelta(days=1, microseconds=-1)
    return t


def cmd_backfill(args) -> int:
    from ..schedule import scheduler
    from ..store.state import state_dir
    from .inputs import load_checked

    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    start = range_arg("--start", args.start, end=False)
    end = range_arg("--end", args.end, end=True)
    if end < start:
        raise UsageError(f"--end {args.end} is before --start {args.start}")
    program, _ = load_checked(args.file, state_root=state_dir(args.file, args.state_dir))
    if program is None:
        return EXIT_FAILED
    pipeline = program.pipeline
    entries = scheduler.entries(pipeline)
    if not entries:
        raise UsageError(f"{pipeline.name} has no schedule: backfill runs one run per schedule slot")
    due = scheduler.owned(entries, start - dt.timedelta(microseconds=1), end, scheduler.window(pipeline))
    if args.dry_run:
        if args.json:
            import json

            print(json.dumps([{"logical_date": d.slot.logical.isoformat(), "schedule": d.entry.label,
                               "run_id": None} for d in due], indent=2))
        else:
            print(f"{len(due)} run{'s' * (len(due) != 1)} of {pipeline.name} would start, oldest first:")
            for d in due:
                print(f"  {d.slot.logical.isoformat()} ({d.entry.label})")
        return EXIT_OK
    if not due:
        print(f"no slot of {pipeline.name} between {start.isoformat()} and {end.isoformat()}", file=sys.stderr)
        return EXIT_OK
    return backfill(program, due, args)


def backfill(program, due, args) -> int:
    """Start the runs oldest first, `--parallel` at a time, and wait for them all."""
    from ..schedule.launch import CannotStart, open_run, start, status_of

    out = sys.stderr if args.json else sys.stdout
    name = program.pipeline.name
    running: Dict[int, dict] = {}
    done: List[dict] = []
    queue = list(due)
    stop = None  # why no more runs start: an interrupt, or a run that could not be opened

    def reap() -> None:
        pid, status = os.waitpid(-1, 0)
        item = running.pop(pid, None)
        if item is not None:  # not some other child of ours
            item["status"] = status_of(status)
            done.append(item)
            print(f"{name} {item['logical_date']}: {item['status']} (run {item['run_id']})", file=out, flush=True)

    try:
        while queue and stop is None:
            while len(running) >= args.parallel:
                reap()
            if any(item["status"] == "interrupted" for item in done):
                stop = "interrupted"
                break
            d = queue[0]
            item = {"logical_date": d.slot.logical.isoformat(), "schedule": d.entry.label, "run_id": None}
            try:
                runner = open_run(program, trigger="backfill", logical_date=d.slot.logical,
                                  state_dir=args.state_dir)
            except CannotStart as e:
                print(f"flow backfill: error: cannot start the run of {item['logical_date']}: {e}", file=sys.stderr)
                stop = "failed"
                break
            queue.pop(0)
            item["run_id"] = runner.run_values["id"]
            print(f"{name} {item['logical_date']}: started run {item['run_id']}", file=out, flush=True)
            running[start(runner, session=False, quiet=args.quiet)] = item
    except KeyboardInterrupt:
        stop = "interrupted"
    while running:
        try:
            reap()
        except KeyboardInterrupt:  # the runs got it too: they are stopping
            stop = "interrupted"
    if queue:
        print(f"{len(queue)} slot{'s' * (len(queue) != 1)} not run, from {queue[0].slot.logical.isoformat()}: "
              f"backfill them with --start {queue[0].slot.logical.isoformat()}", file=sys.stderr)
    if args.json:
        import json

        order = {d.slot.logical.isoformat(): i for i, d in enumerate(due)}
        print(json.dumps(sorted(done, key=lambda item: order[item["logical_date"]]), indent=2))
    statuses = {item["status"] for item in done}
    if stop == "interrupted" or "interrupted" in statuses:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if stop or statuses - {"success"} else EXIT_OK


def add_backfill(p) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--start", required=True, metavar="ISO", help="the first slot's earliest time (included)")
    p.add_argument("--end", required=True, metavar="ISO",
                   help="the last slot's latest time (included; a date alone means the whole day)")
    p.add_argument("--parallel", type=int, default=1, metavar="N", help="runs at once (default 1: one after another)")
    p.add_argument("--dry-run", action="store_true", help="list the slots, run nothing")
    p.add_argument("--json", action="store_true", help="print each run's logical date, id and status as JSON")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default: .flow beside FILE)")
