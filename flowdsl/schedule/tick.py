"""One tick: find the slots each pipeline owns since the last tick, claim them, start their runs.

For every state folder (the pipelines that share one take turns under its
lock), and within it every pipeline file:

1. its slots in `(last tick, now]` (a pipeline seen for the first time owns
   the last minute), less any slot already claimed;
2. `catchup` picks the ones that fire, the rest are skipped;
3. `overlap` decides about runs of the pipeline still going: `skip` drops
   the slots, `queue` starts their runs waiting for those to end, `replace`
   stops those (SIGTERM; they stay resumable), `allow` ignores them;
4. the slots are claimed (a run id chosen for each) and the state saved,
   then each run is opened and forked, and the claim marked started.

A claim that a dead tick never started is started by the next one, and a
slot is never claimed twice: that is "exactly once". `dry_run` takes no
lock, changes nothing and starts nothing.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..store.journal import is_live
from . import scheduler, tickstate
from .launch import live_runs
from .scheduler import Due


@dataclass
class Scheduled:
    """A checked pipeline file that has schedules."""

    file: str  # as found (relative to what was given)
    program: Any
    warnings: List[Any] = field(default_factory=list)  # diagnostics worth repeating (`flow schedule`)


@dataclass
class Launch:
    pipeline: Scheduled
    due: Due
    claim: Dict[str, Any]  # its claim in the tick state
    before: Optional[Callable] = None


@dataclass
class TickReport:
    now: dt.datetime
    fired: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    errors: List[Dict[str, str]] = field(default_factory=list)
    warnings: List[Dict[str, str]] = field(default_factory=list)
    launched: List[Tuple[int, Dict[str, Any]]] = field(default_factory=list)  # (pid, its `fired` entry)

    def error(self, file: str, message: str) -> None:
        self.errors.append({"file": file, "message": message})

    def warn(self, file: str, message: str) -> None:
        self.warnings.append({"file": file, "message": message})

    def as_json(self) -> Dict[str, Any]:
        out = {"now": self.now.isoformat(), "fired": self.fired, "skipped": self.skipped}
        if self.errors:
            out["errors"] = self.errors
        if self.warnings:
            out["warnings"] = self.warnings
        return out


def run_tick(by_root: Dict[str, List[Scheduled]], now: dt.datetime, state_override: Optional[str],
             dry_run: bool = False, wait: bool = False) -> TickReport:
    outcome = TickReport(now)
    for root in sorted(by_root):
        try:
            ticker = Ticker(root, state_override, now, outcome, dry_run, wait)
        except tickstate.Damaged as e:
            for p in by_root[root]:
                outcome.error(p.file, str(e))
            continue
        except OSError as e:
            for p in by_root[root]:
                outcome.error(p.file, f"cannot use the state folder {root}: {e.strerror or e}")
            continue
        try:
            ticker.tick(by_root[root])
        except tickstate.Unsaved as e:  # said once for the folder, by its first file
            outcome.error(by_root[root][0].file, str(e))
        finally:
            ticker.state.release()
    return outcome


class Ticker:
    """The tick of one state folder."""

    def __init__(self, root: str, state_override: Optional[str], now: dt.datetime, outcome: TickReport,
                 dry_run: bool, wait: bool) -> None:
        self.root = root
        self.state_override = state_override
        self.now = now
        self.outcome = outcome
        self.dry_run = dry_run
        self.wait = wait
        self.state = tickstate.TickState(root, locked=not dry_run)
        self.to_resume: set = set()  # run ids of claims whose runs were opened by a tick that died

    def tick(self, pipelines: List[Scheduled]) -> None:
        launches: List[Launch] = []
        owners: Dict[str, str] = {}
        for p in pipelines:
            name = p.program.pipeline.name
            if name in owners:
                self.outcome.error(p.file, f"pipeline {name} is also declared by {owners[name]}, and both keep "
                                           f"their state in {self.root}: rename one")
                continue
            owners[name] = p.file
            launches.extend(self.decide(p))
        if self.dry_run:
            for launch in launches:
                self.outcome.fired.append(self.fired_entry(launch, run_id=None))
            return
        self.state.save()  # the claims are on disk before any run starts
        if not launches:
            return  # nothing else changed: one write (an idle tick's only one)
        try:
            for launch in launches:
                self.launch(launch)
        finally:
            self.state.save()

    def decide(self, p: Scheduled) -> List[Launch]:
        """The runs to start for this pipeline now; records its claims and skips."""
        pipeline = p.program.pipeline
        name = pipeline.name
        schedule = scheduler.entries(pipeline)
        known = self.state.known(name)
        if not schedule and known is None:
            return []
        entry = self.state.pipeline(name)
        orphans = self.orphans(p, entry, schedule)
        last = tickstate.parse_time(entry["last_tick"]) if entry["last_tick"] else None
        if last is not None and last > self.now:
            # A clock that jumped back, or an earlier `--now` ahead of the clock: waiting for the clock to
            # reach that tick would silence the pipeline (for years, after a wrong --now). Start afresh, as a
            # new tick state does: this tick owns the last minute, less any slot that already has a run.
            self.outcome.warn(p.file, f"{name}: the last tick was at {entry['last_tick']}, after now "
                                      f"({tickstate.stamp(self.now)}): the clock went back, or a tick was given "
                                      f"a --now ahead of it; its slots are owned from now on again")
            last = None
        start = last if last is not None else self.now - scheduler.GRACE
        catchup = scheduler.catchup_mode(pipeline)
        upto, due = self.now, []
        if start < self.now:
            win = scheduler.window(pipeline)
            if catchup == "all":  # oldest first, a bounded number per tick; the next tick goes on
                due = scheduler.owned(schedule, start, self.now, win, oldest=scheduler.MAX_FIRE + 1)
                if len(due) > scheduler.MAX_FIRE:
                    due = due[:scheduler.MAX_FIRE]
                    upto = due[-1].slot.at
            else:  # only the newest matter (and the few dropped ones listed)
                due = scheduler.owned(schedule, start, self.now, win, newest=scheduler.MAX_REPORT + 1)
        claims = {tickstate.parse_time(c["slot"]): c for c in entry["claims"]}
        if due:
            taken = set(claims)
            if last is None:  # a new (or recovered) tick state: slots with a scheduled run are taken
                taken |= scheduled_instants(self.root, name)
            due = [d for d in due if d.slot.at not in taken]
        if last is None or upto > last:
            entry["last_tick"] = tickstate.stamp(upto)
        entry["file"] = os.path.abspath(p.file)
        if entry.get("paused"):  # `flow schedule --pause`: the slots pass, each said skipped
            fire, dropped = [], []
            for d in due:
                self.skip(entry, name, d, "paused")
        else:
            fire, dropped = scheduler.by_catchup(due, catchup, self.now)
        for d in dropped:
            self.skip(entry, name, d, "catchup")
        fire = orphans + fire
        if not fire:
            return []
        live = live_runs(self.root, name)
        mode = scheduler.overlap_mode(pipeline)
        before = None
        if live and mode == "skip":
            for d in fire[len(orphans):]:
                self.skip(entry, name, d, "overlap", running=live)
            fire = fire[:len(orphans)]
        elif live and mode == "queue":
            from .launch import wait_for

            before = wait_for(self.root, live)
        elif live and mode == "replace" and not self.dry_run:
            from .launch import stop_runs

            before = stop_runs(self.root, live)
        out = []
        for d in fire:
            claim = claims.get(d.slot.at)  # an orphan's own claim
            if claim is None:
                claim = {"slot": tickstate.stamp(d.slot.at), "logical_date": d.slot.logical.isoformat(),
                         "schedule": d.entry.label, "run_id": new_run_id(name), "started": False,
                         "tick": tickstate.stamp(self.now)}
                entry["claims"].append(claim)
            out.append(Launch(p, d, claim, before))
        return out

    def orphans(self, p: Scheduled, entry: Dict[str, Any], schedule) -> List[Due]:
        """Claims a tick made and died before starting: their runs start now."""
        from ..store import state
        from . import slots

        out = []
        for claim in entry["claims"]:
            if claim.get("started", True):
                continue
            folder = state.run_dir(self.root, claim["run_id"])  # a run id: the tick state's reader checked it
            if os.path.lexists(folder):
                try:
                    state.check_run_folder(folder)  # never a link to somewhere else, nor another user's
                except OSError as e:
                    claim["started"] = True  # damage: said once, never fired (nor followed)
                    claim["error"] = str(e)
                    self.outcome.error(p.file, f"cannot start the run {claim['run_id']}: {e.strerror or e}")
                    continue
                if is_live(state.journal_path(folder)) or os.path.exists(os.path.join(folder, "summary.json")):
                    claim["started"] = True  # it was forked and is running, or has run
                    continue
                self.to_resume.add(claim["run_id"])  # opened, never forked: run it now
            at = tickstate.parse_time(claim["slot"])
            logical = dt.datetime.fromisoformat(claim.get("logical_date") or claim["slot"])
            label = claim.get("schedule", "")
            rule_entry = next((e for e in schedule if e.label == label),
                              scheduler.ScheduleRule(label, "UTC", None))
            out.append(Due(slots.Slot(at.astimezone(dt.timezone.utc), logical), rule_entry))
        return out

    def skip(self, entry: Dict[str, Any], name: str, d: Due, reason: str, running=()) -> None:
        item = {"pipeline": name, "logical_date": d.slot.logical.isoformat(), "reason": reason}
        if running:
            item["running"] = list(running)
        self.outcome.skipped.append(item)
        entry["skipped"].append({"slot": tickstate.stamp(d.slot.at), "logical_date": item["logical_date"],
                                 "reason": reason, "tick": tickstate.stamp(self.now)})

    def fired_entry(self, launch: Launch, run_id: Optional[str]) -> Dict[str, Any]:
        return {"pipeline": launch.pipeline.program.pipeline.name, "file": launch.pipeline.file,
                "schedule": launch.due.entry.label, "logical_date": launch.due.slot.logical.isoformat(),
                "run_id": run_id}

    def launch(self, launch: Launch) -> None:
        from .launch import CannotStart, open_run, start

        claim = launch.claim
        fired = self.fired_entry(launch, claim["run_id"])
        try:
            runner = open_run(launch.pipeline.program, trigger="schedule", logical_date=launch.due.slot.logical,
                              state_dir=self.state_override, run_id=claim["run_id"],
                              resume=claim["run_id"] in self.to_resume)
        except CannotStart as e:  # no run can be made at all (the state folder, a live or damaged run)
            claim["started"] = True
            claim["error"] = str(e)
            self.outcome.error(launch.pipeline.file, f"cannot start the run of {fired['logical_date']}: {e}")
            return
        if runner.start_error is not None:  # it becomes a failed run all the same, resumable, hooks fired
            claim["error"] = runner.start_error
            self.outcome.error(launch.pipeline.file, f"cannot start the run of {fired['logical_date']}: "
                                                     f"{runner.start_error}; it is run {claim['run_id']}, failed "
                                                     f"(`flow run {launch.pipeline.file} --resume {claim['run_id']}` "
                                                     "once that is fixed)")
        pid = start(runner, session=not self.wait, before=launch.before, close=[self.state.fd])
        claim["started"] = True
        self.outcome.fired.append(fired)
        self.outcome.launched.append((pid, fired))


def new_run_id(name: str) -> str:
    from ..store.state import new_run_id as make

    return make(name, dt.datetime.now(dt.timezone.utc))


def scheduled_instants(root: str, name: str) -> set:
    """The slots that runs started by earlier ticks were for (a tick state begun afresh must not repeat them)."""
    from ..store import history

    out = set()
    for line in history.runs(root, name):
        if line.get("trigger") == "schedule" and line.get("logical_date"):
            try:
                out.add(dt.datetime.fromisoformat(line["logical_date"]).astimezone(dt.timezone.utc))
            except ValueError:
                pass
    return out
