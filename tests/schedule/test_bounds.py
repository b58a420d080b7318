"""Schedules that cannot be computed quickly: slots jump to the window, are streamed and counted, never gathered."""

import datetime as dt
import itertools
import json
import time
from argparse import Namespace

import pytest
from runkit import explain, write_project

from flowdsl.schedule import scheduler, slots

UTC = dt.timezone.utc
T = dt.datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
YEARS_AHEAD = (dt.datetime(2066, 1, 1, tzinfo=UTC), None)


@pytest.mark.parametrize("rule", [slots.EveryRule(dt.timedelta(minutes=1)), slots.CronRule("* * * * *")],
                         ids=["every", "cron"])
def test_upcoming_jumps_to_a_window_years_ahead(rule):
    began = time.monotonic()
    got = slots.upcoming(rule, T, 3, YEARS_AHEAD)
    assert time.monotonic() - began < 2
    assert [s.at.isoformat() for s in got] == [
        "2066-01-01T00:00:00+00:00", "2066-01-01T00:01:00+00:00", "2066-01-01T00:02:00+00:00"]


def test_a_stream_of_a_century_of_minutes_is_lazy():
    every = scheduler.ScheduleRule("every 1m", "UTC", slots.EveryRule(dt.timedelta(minutes=1)))
    cron = scheduler.ScheduleRule("cron * * * * *", "UTC", slots.CronRule("* * * * *"))
    end = T.replace(year=2126)
    began = time.monotonic()
    first = list(itertools.islice(scheduler.stream([every, cron], T, end), 3))
    assert time.monotonic() - began < 2
    assert [(d.slot.at.minute, d.entry.label) for d in first] == [(1, "every 1m"), (2, "every 1m"), (3, "every 1m")]
    assert scheduler.count([every], T, end) == ((end - T) // dt.timedelta(minutes=1), True)  # by arithmetic
    assert scheduler.count([every, cron], T, end, cap=500) == (500, False)  # walked only up to the cap


def test_stream_and_count_agree_on_windows_merges_and_exclusions():
    a = scheduler.ScheduleRule("every 1h", "UTC", slots.EveryRule(dt.timedelta(hours=1)))
    b = scheduler.ScheduleRule("every 90m", "UTC", slots.EveryRule(dt.timedelta(minutes=90)))
    win = (T + dt.timedelta(hours=2), T + dt.timedelta(hours=30))
    excluded = {T + dt.timedelta(hours=5), T + dt.timedelta(hours=5, minutes=7), T + dt.timedelta(hours=40)}
    for schedule in ([a], [b], [a, b]):
        for exclude in (frozenset(), excluded):
            got = list(scheduler.stream(schedule, T, T + dt.timedelta(days=3), win, exclude))
            assert scheduler.count(schedule, T, T + dt.timedelta(days=3), win, exclude) == (len(got), True)
            assert len({d.slot.at for d in got}) == len(got) and all(win[0] <= d.slot.at <= win[1] for d in got)
            assert not {d.slot.at for d in got} & exclude
    merged = list(scheduler.stream([a, b], T, T + dt.timedelta(hours=3)))
    assert [(d.slot.at - T, d.entry.label) for d in merged] == [
        (dt.timedelta(minutes=30), "every 90m"), (dt.timedelta(hours=1), "every 1h"),
        (dt.timedelta(hours=2), "every 1h"), (dt.timedelta(hours=3), "every 1h")]  # 12:00 is both: the first's


MINUTELY = """
    pipeline m {{
        schedule {schedule}
        {extra}
        executor inline
    }}
    task a {{ sh "true" }}
"""


def test_schedule_of_a_window_years_ahead_is_quick(flow, tmp_path):
    f = write_project(tmp_path, MINUTELY.format(schedule='cron "* * * * *"', extra='window "2066-01-01T00:00:00Z"'),
                      name="m.flow")
    began = time.monotonic()
    proc = flow("schedule", f, "--now", "2026-11-22T10:00:00Z", "--next", "2", "--json", timeout=30)
    assert proc.returncode == 0, explain(proc)
    assert time.monotonic() - began < 15
    assert json.loads(proc.stdout)[0]["next"] == ["2066-01-01T00:00:00+00:00", "2066-01-01T00:01:00+00:00"]


def test_a_schedule_faster_than_a_minute_is_E102(flow, tmp_path):
    f = write_project(tmp_path, MINUTELY.format(schedule="every 30s", extra=""), name="m.flow")
    proc = flow("validate", f)
    assert proc.returncode == 1 and "E102" in proc.stdout + proc.stderr, explain(proc)
    proc = flow("tick", f, "--now", "2026-11-22T10:00:00Z")
    assert proc.returncode == 1 and "E102" in proc.stderr and "Traceback" not in proc.stderr, explain(proc)
    g = write_project(tmp_path, MINUTELY.format(schedule="every 1m", extra=""), name="ok.flow")
    assert flow("validate", g).returncode == 0


def test_a_backfill_of_more_than_1000_runs_wants_yes(flow, tmp_path):
    f = write_project(tmp_path, MINUTELY.format(schedule="every 1m", extra=""), name="m.flow")
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-02")
    assert proc.returncode == 2, explain(proc)
    assert "would start 2,880 runs" in proc.stderr and "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / ".flow" / "runs").exists()
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-02", "--dry-run")  # no --yes needed
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2882 and lines[-1] == "2880 runs of m would start"
    assert lines[1] == "  2026-11-01T00:00:00+00:00 (every 1m)"
    assert lines[-2] == "  2026-11-02T23:59:00+00:00 (every 1m)"
    assert not (tmp_path / ".flow" / "runs").exists()
    # a thousand is allowed without --yes (the dry run shows so: nothing is counted twice)
    proc = flow("backfill", f, "--start", "2026-11-01T00:00:00Z", "--end", "2026-11-01T16:39:00Z", "--dry-run",
                "--json")
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 1000, explain(proc)


def test_a_cron_backfill_past_the_count_says_more_than(flow, tmp_path):
    f = write_project(tmp_path, MINUTELY.format(schedule='cron "* * * * *"', extra=""), name="m.flow")
    proc = flow("backfill", f, "--start", "2026-01-01", "--end", "2030-12-31", timeout=60)
    assert proc.returncode == 2, explain(proc)
    assert "would start more than 100,000 runs" in proc.stderr
    assert not (tmp_path / ".flow" / "runs").exists()


def test_a_dry_run_of_a_year_of_minutes_stays_small(flow, tmp_path):
    import resource

    f = write_project(tmp_path, MINUTELY.format(schedule="every 1m", extra=""), name="m.flow")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = flow("backfill", f, "--start", "2026-01-01", "--end", "2026-12-31", "--dry-run", "--json", timeout=120)
    assert proc.returncode == 0, explain(proc)
    rows = json.loads(proc.stdout)
    assert len(rows) == 525_600 and rows[-1]["logical_date"] == "2026-12-31T23:59:00+00:00"
    used = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
    assert used < 150_000 or used == before, used


def test_yes_lets_a_large_backfill_start(monkeypatch, tmp_path):
    from flowdsl.cli import schedule as cli

    f = write_project(tmp_path, MINUTELY.format(schedule="every 1m", extra=""), name="m.flow")
    started = []
    monkeypatch.setattr(cli, "backfill", lambda program, due, args, remaining: started.append(
        (next(iter(due)).slot.at.isoformat(), remaining(next(iter(due))))) or 0)
    args = Namespace(file=str(f), start="2026-11-01", end="2026-11-02", parallel=1, dry_run=False, json=False,
                     quiet=True, state_dir=None, skip_succeeded=False, yes=True)
    assert cli.cmd_backfill(args) == 0
    assert started == [("2026-11-01T00:00:00+00:00", (2879, True))]  # from 00:01 on, 2,879 remain
    args.yes = False
    assert cli.cmd_backfill(args) == 2 and len(started) == 1
