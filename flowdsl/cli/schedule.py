"""The scheduling verbs: `flow tick`, `flow schedule` and `flow backfill`.

The decisions live in `scheduler` (slots and catchup), `tick` (claims and
overlap) and `launch` (starting runs); this module reads the command line,
loads the pipeline files and prints.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from typing import Dict, List, Optional

from ..run.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
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
    """{state folder: [tick.Scheduled]} for the scheduled pipelines below `paths`.

    A file with errors goes to `errors`, one line naming its first error (`flow
    validate` shows them all), and is left out; so is a file that another one
    includes (it is part of that one), unless it has errors of its own: files
    that include each other are each an error, never silently none.
    """
    from ..schedule.tick import Scheduled
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
    said = set()  # the errors named so far: an included file's own errors are named once, by its includer
    for path, (root, result) in loaded.items():
        bad = [d for d in result.diagnostics if d.severity == "error"]
        mine = {(d.code, str(d.span)) for d in bad}
        if path not in named and os.path.realpath(path) in included and mine <= said:
            continue
        if bad or result.program is None:
            said |= mine
            errors.append({"file": path, "message": load_error(path, bad)})
            continue
        cron_steps = [d for d in result.diagnostics if d.code == "W104"]  # `*/7` is not every 7
        by_root.setdefault(root, []).append(Scheduled(path, result.program, cron_steps))
    if keeps and store:
        keep_all(keeps)  # the next tick skips parsing and checking these files
    return by_root


def load_error(path: str, bad: list) -> str:
    """The one line that names why a file cannot be loaded: its first error, and how many more."""
    if not bad:
        return f"cannot be loaded; see `flow validate {path}`"
    first = bad[0]
    more = f" (and {len(bad) - 1} more error{'s' * (len(bad) != 2)})" if len(bad) > 1 else ""
    return f"{first.span}: {first.code} {first.message}{more}; see `flow validate {path}`"


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
    for w in outcome.warnings:
        print(f"flow tick: warning: {w['file']}: {w['message']}", file=sys.stderr)
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
    from ..schedule.scheduler import MAX_REPORT

    # one line per pipeline and reason: after a day of downtime, cron's mail holds a line, not a hundred
    groups: Dict[tuple, List[dict]] = {}
    for s in outcome.skipped:
        groups.setdefault((s["pipeline"], s["reason"], tuple(s.get("running", ()))), []).append(s)
    for (name, reason, running), items in groups.items():
        why = {"catchup": "missed while nothing ticked (catchup)",
               "overlap": f"{', '.join(running)} still running (overlap skip)",
               "paused": f"paused (`flow schedule --unpause {name}`)"}[reason]
        if len(items) == 1:
            print(f"skipped {name} {items[0]['logical_date']}: {why}")
        else:
            # a tick lists at most the newest MAX_REPORT dropped slots: that many may stand for more
            many = f"at least {len(items)}" if reason == "catchup" and len(items) >= MAX_REPORT else len(items)
            print(f"skipped {many} slots of {name}, {items[0]['logical_date']} to "
                  f"{items[-1]['logical_date']}: {why}")
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
    if args.pause is not None or args.unpause is not None:
        if args.pause is not None and args.unpause is not None:
            raise UsageError("--pause and --unpause go one at a time")
        if args.now or args.json:
            raise UsageError("--pause and --unpause take no --now nor --json")
        return pause(args, args.pause or args.unpause, args.pause is not None)
    now = now_arg(args.now)
    errors: list = []
    by_root = load_pipelines(args.paths, args.state_dir, errors, store=False)
    rows = []
    for root in sorted(by_root):
        paused = paused_in(root, by_root[root], errors)
        for p in by_root[root]:
            pipeline = p.program.pipeline
            win = scheduler.window(pipeline)
            common = {"pipeline": pipeline.name, "file": p.file, "paused": pipeline.name in paused,
                      "catchup": scheduler.catchup_mode(pipeline),
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
    elif rows or not errors:  # "no pipelines found" only when none is there, not when none could be loaded
        print_schedule(rows, now)
    for e in errors:
        print(f"flow schedule: error: {e['file']}: {e['message']}", file=sys.stderr)
    return EXIT_FAILED if errors else EXIT_OK


def paused_in(root: str, pipelines: list, errors: list) -> set:
    """The names of the paused pipelines of a state folder (a damaged tick state is an error of each file)."""
    from ..schedule import tickstate

    try:
        data = tickstate.read(root)
    except tickstate.Damaged as e:
        errors.extend({"file": p.file, "message": str(e)} for p in pipelines[:1])
        return set()
    return {name for name, entry in data["pipelines"].items() if entry.get("paused")}


def pause(args, name: str, paused: bool) -> int:
    """`flow schedule --pause NAME` / `--unpause NAME`: kept in the tick state of each folder that has NAME."""
    from ..schedule import tickstate

    errors: list = []
    by_root = load_pipelines(args.paths, args.state_dir, errors, store=False)
    for e in errors:
        print(f"flow schedule: error: {e['file']}: {e['message']}", file=sys.stderr)
    found = [(root, p) for root in sorted(by_root) for p in by_root[root] if p.program.pipeline.name == name]
    if not found:
        where = " ".join(args.paths) or "."
        if errors:  # it may be the file that cannot be loaded
            print(f"flow schedule: error: no pipeline {name} found below {where}", file=sys.stderr)
            return EXIT_FAILED
        raise UsageError(f"no pipeline {name} found below {where}")
    failed = False
    for root, p in found:
        try:
            with tickstate.TickState(root) as state:
                changed = state.pause(name, paused)
                if changed:
                    state.save()
        except (tickstate.Damaged, tickstate.Unsaved) as e:
            print(f"flow schedule: error: {p.file}: {e}", file=sys.stderr)
            failed = True
            continue
        except OSError as e:
            print(f"flow schedule: error: {p.file}: cannot use the state folder {root}: {e.strerror or e}",
                  file=sys.stderr)
            failed = True
            continue
        if paused:
            print(f"{'paused' if changed else 'already paused:'} {name} ({p.file}): its slots are skipped until "
                  f"`flow schedule --unpause {name}`")
        else:
            print(f"{'unpaused' if changed else 'not paused:'} {name} ({p.file}): "
                  f"{'its slots from now on fire' if changed else 'its slots fire'}")
    return EXIT_FAILED if failed or errors else EXIT_OK


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
            rules = ("PAUSED\n" if r.get("paused") else "") + f"catchup {r['catchup']}\noverlap {r['overlap']}"
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
    p.add_argument("--pause", metavar="PIPELINE", help="skip the pipeline's slots (reason `paused`) until --unpause")
    p.add_argument("--unpause", metavar="PIPELINE", help="let the pipeline's slots fire again (from now on)")
    p.add_argument("--state-dir", metavar="DIR", help="where checked files are cached and the tick state is kept "
                                                      "(default: .flow beside each)")


# ---- backfill ------------------------------------------------------------------


def range_arg(flag: str, text: str, end: bool) -> dt.datetime:
    """An ISO datetime; a date alone at --end means the end of that day (both ends are included)."""
    t = time_arg(flag, text)
    if end and "T" not in text.strip().upper() and len(text.strip()) == 10:
        t += dt.timedelta(days=1, microseconds=-1)
    return t


MAX_BACKFILL = 1000  # runs a backfill starts without `--yes`


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
    root = state_dir(args.file, args.state_dir)
    program, _ = load_checked(args.file, state_root=root)
    if program is None:
        return EXIT_FAILED
    pipeline = program.pipeline
    entries = scheduler.entries(pipeline)
    if not entries:
        raise UsageError(f"{pipeline.name} has no schedule: backfill runs one run per schedule slot")
    win = scheduler.window(pipeline)
    after = start - dt.timedelta(microseconds=1)
    done = succeeded(root, pipeline.name) if args.skip_succeeded else frozenset()
    # never a list of the slots: `every 1m` over years is millions; they are counted, then streamed
    due = scheduler.stream(entries, after, end, win, exclude=done)
    if args.dry_run:
        return print_dry_backfill(pipeline.name, due, args.json, len(done))
    n, exact = scheduler.count(entries, after, end, win, exclude=done)
    if n > MAX_BACKFILL and not args.yes:
        many = f"{n:,}" if exact else f"more than {n:,}"
        print(f"flow backfill: error: this backfill would start {many} runs of {pipeline.name}: "
              f"add --yes to start them (or --dry-run to list them); nothing started", file=sys.stderr)
        return EXIT_USAGE
    if n == 0:
        left = " that has no successful run" if done else ""
        print(f"no slot of {pipeline.name}{left} between {start.isoformat()} and {end.isoformat()}",
              file=sys.stderr)
        return EXIT_OK
    return backfill(program, due, args, lambda d: scheduler.count(entries, d.slot.at - dt.timedelta(microseconds=1),
                                                                   end, win, exclude=done))


def succeeded(root: str, name: str) -> frozenset:
    """The instants of the slots that already have a successful run of `name` (`--skip-succeeded`)."""
    from ..store import history

    out = set()
    for line in history.runs(root, name):
        if line.get("status") == "success" and isinstance(line.get("logical_date"), str):
            try:
                out.add(dt.datetime.fromisoformat(line["logical_date"]).astimezone(dt.timezone.utc))
            except ValueError:
                pass
    return frozenset(out)


def print_dry_backfill(name: str, due, as_json: bool, skipping: int) -> int:
    """List the slots as they come (a long backfill is printed, never gathered first)."""
    n = 0
    if as_json:
        print("[", end="")
        for d in due:
            item = {"logical_date": d.slot.logical.isoformat(), "schedule": d.entry.label, "run_id": None}
            print(("," if n else "") + "\n  " + json.dumps(item), end="")
            n += 1
        print("\n]" if n else "]")
        return EXIT_OK
    for d in due:
        if n == 0:
            print(f"runs of {name} that would start, oldest first:")
        print(f"  {d.slot.logical.isoformat()} ({d.entry.label})")
        n += 1
    left = " (slots with a successful run left out)" if skipping else ""
    print(f"{n} run{'s' * (n != 1)} of {name} would start{left}")
    return EXIT_OK


def backfill(program, due, args, remaining) -> int:
    """Start the runs oldest first, `--parallel` at a time, and wait for them all."""
    from ..schedule.launch import CannotStart, open_run, start, status_of

    out = sys.stderr if args.json else sys.stdout
    name = program.pipeline.name
    running: Dict[int, dict] = {}
    done: List[dict] = []
    queue = iter(due)
    pending = next(queue, None)  # the next slot to start: the queue is never gathered into a list
    stop = None  # why no more runs start: an interrupt, or a run that could not be opened

    def reap() -> None:
        pid, status = os.waitpid(-1, 0)
        item = running.pop(pid, None)
        if item is not None:  # not some other child of ours
            item["status"] = status_of(status)
            done.append(item)
            print(f"{name} {item['logical_date']}: {item['status']} (run {item['run_id']})", file=out, flush=True)

    try:
        while pending is not None and stop is None:
            while len(running) >= args.parallel:
                reap()
            if any(item["status"] == "interrupted" for item in done):
                stop = "interrupted"
                break
            d = pending
            item = {"logical_date": d.slot.logical.isoformat(), "schedule": d.entry.label, "run_id": None,
                    "_at": d.slot.at}
            try:
                runner = open_run(program, trigger="backfill", logical_date=d.slot.logical,
                                  state_dir=args.state_dir)
            except CannotStart as e:
                print(f"flow backfill: error: cannot start the run of {item['logical_date']}: {e}", file=sys.stderr)
                stop = "failed"
                break
            pending = next(queue, None)
            item["run_id"] = runner.run_values["id"]
            if runner.start_error is not None:  # a failed run all the same, resumable, hooks fired
                print(f"flow backfill: error: cannot start the run of {item['logical_date']}: {runner.start_error}; "
                      f"it is run {item['run_id']}, failed", file=sys.stderr)
                stop = stop or "failed"
            print(f"{name} {item['logical_date']}: started run {item['run_id']}", file=out, flush=True)
            running[start(runner, session=False, quiet=args.quiet)] = item
    except KeyboardInterrupt:
        stop = "interrupted"
    while running:
        try:
            reap()
        except KeyboardInterrupt:  # the runs got it too: they are stopping
            stop = "interrupted"
    if pending is not None:
        n, exact = remaining(pending)
        first = pending.slot.logical.isoformat()
        print(f"{'' if exact else 'more than '}{n} slot{'s' * (n != 1)} not run, from {first}: "
              f"backfill them with --start {first}", file=sys.stderr)
    if args.json:
        done.sort(key=lambda item: item.pop("_at"))
        print(json.dumps(done, indent=2))
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
    p.add_argument("--skip-succeeded", action="store_true", help="no run for a slot that already has a successful run")
    p.add_argument("--yes", action="store_true", help=f"start the runs even if there are more than {MAX_BACKFILL:,}")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default: .flow beside FILE)")
