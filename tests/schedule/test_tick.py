"""`flow tick` end to end: slots, catchup, the tick state, exactly once. Time comes from `--now`."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runkit import ROOT, explain, wait_until, write_project
from tickkit import fired_dates, project, settle, tick


def runs_json(flow, folder: Path) -> list:
    proc = flow("runs", "--json", "--state-dir", folder / ".flow")
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout)


# ---- owning slots and catchup -------------------------------------------------------


def test_first_tick_owns_the_last_minute_and_a_repeat_owns_nothing(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    assert tick(flow, f, "2026-11-22T10:01:30Z")["fired"] == []  # 10:00 is more than a minute ago
    g = project(tmp_path / "b", 'schedule cron "0 * * * *"')
    out = tick(flow, g, "2026-11-22T10:00:59Z")
    assert fired_dates(out) == ["2026-11-22T10:00:00+00:00"]
    assert out["now"] == "2026-11-22T10:00:59+00:00"
    assert out["fired"][0]["schedule"] == "cron 0 * * * *" and out["fired"][0]["pipeline"] == "p"
    assert out["fired"][0]["file"] == str(g)
    assert out["fired"][0]["run_id"].startswith("p-")
    assert tick(flow, g, "2026-11-22T10:00:59Z")["fired"] == []  # the same tick again
    assert tick(flow, g, "2026-11-22T10:00:10Z")["fired"] == []  # an earlier clock
    settle(tmp_path / "b")
    runs = runs_json(flow, tmp_path / "b")
    assert [(r["trigger"], r["logical_date"], r["status"]) for r in runs] == [
        ("schedule", "2026-11-22T10:00:00+00:00", "success")]


@pytest.mark.parametrize("mode, fired, dropped", [
    ("latest", ["13:00"], ["11:00", "12:00"]),
    ("all", ["11:00", "12:00", "13:00"], []),
    ("none", ["13:00"], ["11:00", "12:00"]),
])
def test_catchup_across_a_gap(flow, tmp_path, mode, fired, dropped):
    f = project(tmp_path, 'schedule cron "0 * * * *"', f"catchup {mode}")
    assert fired_dates(tick(flow, f, "2026-11-22T10:00:30Z")) == ["2026-11-22T10:00:00+00:00"]
    settle(tmp_path)
    out = tick(flow, f, "2026-11-22T13:00:30Z")  # the machine was off for three hours
    assert fired_dates(out) == [f"2026-11-22T{t}:00+00:00" for t in fired]
    assert [(s["logical_date"], s["reason"]) for s in out["skipped"]] == [
        (f"2026-11-22T{t}:00+00:00", "catchup") for t in dropped]
    settle(tmp_path)
    runs = runs_json(flow, tmp_path)
    assert sorted(r["logical_date"][11:16] for r in runs) == sorted(["10:00"] + fired)


def test_catchup_none_fires_nothing_once_the_minute_has_passed(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"', "catchup none")
    tick(flow, f, "2026-11-22T09:30:00Z")
    out = tick(flow, f, "2026-11-22T13:05:00Z")
    assert out["fired"] == [] and len(out["skipped"]) == 4


def test_a_long_gap_is_caught_up_a_hundred_runs_per_tick_and_none_is_lost(flow, tmp_path):
    f = project(tmp_path, "schedule every 1m", "catchup all\n        overlap allow")
    tick(flow, f, "2026-11-22T07:00:00Z")
    first = tick(flow, f, "2026-11-22T09:00:00Z")  # 120 slots owned: the oldest 100 fire
    assert len(first["fired"]) == 100 and first["fired"][0]["logical_date"] == "2026-11-22T07:01:00+00:00"
    second = tick(flow, f, "2026-11-22T09:00:00Z")  # the same minute again: the tick goes on where that one stopped
    assert fired_dates(second)[0] == "2026-11-22T08:41:00+00:00" and len(second["fired"]) == 20
    assert tick(flow, f, "2026-11-22T09:00:00Z")["fired"] == []
    settle(tmp_path, timeout=120)
    runs = runs_json(flow, tmp_path)
    assert len({r["logical_date"] for r in runs}) == len(runs) == 121


def test_a_year_without_ticks_fires_only_the_latest(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "* * * * *"\n        schedule every 1m from "2020-01-01T00:00:30Z"')
    tick(flow, f, "2025-11-22T10:00:00.5Z", "--dry-run")
    tick(flow, f, "2025-11-22T10:00:00.5Z")
    settle(tmp_path)
    out = tick(flow, f, "2026-11-22T10:00:30Z")
    assert fired_dates(out) == ["2026-11-22T10:00:30+00:00"]
    assert len(out["skipped"]) == 100 and out["skipped"][-1]["logical_date"] == "2026-11-22T10:00:00+00:00"
    settle(tmp_path)


def test_the_runs_of_one_tick_are_not_overlaps_and_start_oldest_first(flow, tmp_path):
    f = project(tmp_path, 'schedule every 10m', "catchup all\n        overlap skip")
    tick(flow, f, "2026-11-22T10:00:00Z")
    settle(tmp_path)
    out = tick(flow, f, "2026-11-22T10:30:00Z")
    assert fired_dates(out) == ["2026-11-22T10:10:00+00:00", "2026-11-22T10:20:00+00:00",
                                "2026-11-22T10:30:00+00:00"]
    assert out["skipped"] == []
    ids = [x["run_id"] for x in out["fired"]]
    assert ids == sorted(ids, key=lambda i: i.split("-")[1])  # run ids sort by start: oldest slot first


# ---- daylight saving ------------------------------------------------------------------------


def tick_series(flow, f, start: str, hours: float, step_minutes: int = 30) -> list:
    """Tick every `step_minutes` from `start` (UTC) for `hours`; every logical date fired, in order."""
    import datetime as dt

    t = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    out = []
    for _ in range(int(hours * 60 / step_minutes) + 1):
        out += fired_dates(tick(flow, f, t.isoformat()))
        t += dt.timedelta(minutes=step_minutes)
    return out


DST_CASES = [
    # zone, cron, first tick (UTC), hours to tick, the logical dates that fire
    ("Europe/Berlin", "30 2 * * *", "2026-03-28T23:30:00Z", 4, ["2026-03-29T03:00:00+02:00"]),  # gap: moved
    ("Europe/Berlin", "30 2 * * *", "2026-10-24T23:00:00Z", 4, ["2026-10-25T02:30:00+02:00"]),  # repeated: once
    ("America/New_York", "30 2 * * *", "2026-03-08T05:00:00Z", 4, ["2026-03-08T03:00:00-04:00"]),
    ("America/New_York", "30 1 * * *", "2026-11-01T04:00:00Z", 4, ["2026-11-01T01:30:00-04:00"]),
    ("Australia/Lord_Howe", "15 2 * * *", "2026-10-03T14:30:00Z", 3, ["2026-10-04T02:30:00+11:00"]),
    ("Australia/Lord_Howe", "45 1 * * *", "2026-04-04T14:00:00Z", 3, ["2026-04-05T01:45:00+11:00"]),
]


@pytest.mark.parametrize("zone, cron, start, hours, expected", DST_CASES, ids=[
    "berlin-spring", "berlin-fall", "new-york-spring", "new-york-fall", "lord-howe-spring", "lord-howe-fall"])
def test_cron_across_daylight_saving(flow, tmp_path, zone, cron, start, hours, expected):
    f = project(tmp_path, f'schedule cron "{cron}" tz "{zone}"', "catchup all")
    assert tick_series(flow, f, start, hours) == expected
    settle(tmp_path)


def test_hourly_cron_in_the_repeated_hour_fires_each_instant_once(flow, tmp_path):
    # Berlin 2026-10-25: 02:00-03:00 happens twice. `0 * * * *` fires 02:00 once (the first time).
    f = project(tmp_path, 'schedule cron "0 * * * *" tz "Europe/Berlin"', "catchup all")
    got = tick_series(flow, f, "2026-10-24T22:30:00Z", 4, step_minutes=60)
    # 01:00Z would be 02:00+01:00, the second 02:00 of the night: it does not fire
    assert got == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"]
    settle(tmp_path)


def test_intervals_are_exact_on_the_utc_line_across_daylight_saving(flow, tmp_path):
    f = project(tmp_path, 'schedule every 90m from "2026-03-28T22:00:00+01:00"', "catchup all")
    tick(flow, f, "2026-03-28T21:00:30Z")
    got = fired_dates(tick(flow, f, "2026-03-29T03:00:00Z"))  # Berlin skipped 02:00-03:00 meanwhile
    assert got == ["2026-03-28T22:30:00+00:00", "2026-03-29T00:00:00+00:00", "2026-03-29T01:30:00+00:00",
                   "2026-03-29T03:00:00+00:00"]
    settle(tmp_path)


# ---- at and window ------------------------------------------------------------------------


def test_at_fires_once(flow, tmp_path):
    f = project(tmp_path, 'schedule at "2026-12-01T09:00:00+01:00"', "catchup all")
    assert tick(flow, f, "2026-12-01T07:00:00Z")["fired"] == []
    assert fired_dates(tick(flow, f, "2026-12-01T08:00:30Z")) == ["2026-12-01T09:00:00+01:00"]
    assert tick(flow, f, "2026-12-01T08:01:30Z")["fired"] == []
    assert tick(flow, f, "2027-12-01T08:00:30Z")["fired"] == []
    settle(tmp_path)
    assert len(runs_json(flow, tmp_path)) == 1


def test_window_keeps_the_slots_inside_it_both_ends_included(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"',
                'catchup all\n        window "2026-11-22T11:00:00Z" to "2026-11-22T12:00:00Z"')
    got = tick_series(flow, f, "2026-11-22T10:00:30Z", 4, step_minutes=60)
    assert got == ["2026-11-22T11:00:00+00:00", "2026-11-22T12:00:00+00:00"]
    settle(tmp_path)


def test_several_schedules_on_one_instant_fire_once(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"\n        schedule every 30m', "catchup all")
    tick(flow, f, "2026-11-22T09:59:00Z")
    out = tick(flow, f, "2026-11-22T11:00:00Z")
    assert fired_dates(out) == ["2026-11-22T10:00:00+00:00", "2026-11-22T10:30:00+00:00",
                                "2026-11-22T11:00:00+00:00"]
    assert [x["schedule"] for x in out["fired"]] == ["cron 0 * * * *", "every 30m", "cron 0 * * * *"]
    settle(tmp_path)


# ---- exactly once ------------------------------------------------------------------------


def test_six_ticks_at_once_fire_each_slot_once(flow, pyz, tmp_path):
    f = project(tmp_path, 'schedule every 5m', "catchup all")
    tick(flow, f, "2026-11-22T09:00:00Z")
    settle(tmp_path)
    env = dict(os.environ, NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    procs = [subprocess.Popen([sys.executable, str(pyz), "tick", str(f), "--now", "2026-11-22T10:00:00Z", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(6)]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        assert p.returncode == 0, stderr
        outs.append(json.loads(stdout))
    fired = [x["logical_date"] for out in outs for x in out["fired"]]
    assert sorted(fired) == [f"2026-11-22T{h:02d}:{m:02d}:00+00:00" for h, m in
                             [(9, 5), (9, 10), (9, 15), (9, 20), (9, 25), (9, 30), (9, 35), (9, 40), (9, 45),
                              (9, 50), (9, 55), (10, 0)]]
    assert sum(1 for out in outs if out["fired"]) == 1  # one tick owned the hour; the others nothing
    settle(tmp_path)
    assert len(runs_json(flow, tmp_path)) == 13


def test_dry_run_changes_nothing(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "*/15 * * * *"', "catchup all")
    tick(flow, f, "2026-11-22T10:00:00Z")
    settle(tmp_path)

    def snapshot():
        return {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}

    before = snapshot()
    out = tick(flow, f, "2026-11-22T11:00:00Z", "--dry-run")
    assert fired_dates(out) == ["2026-11-22T10:15:00+00:00", "2026-11-22T10:30:00+00:00",
                                "2026-11-22T10:45:00+00:00", "2026-11-22T11:00:00+00:00"]
    assert all(x["run_id"] is None for x in out["fired"])
    assert snapshot() == before
    assert fired_dates(tick(flow, f, "2026-11-22T11:00:00Z")) == fired_dates(out)
    settle(tmp_path)


def test_dry_run_of_a_new_folder_creates_no_state(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    out = tick(flow, f, "2026-11-22T10:00:10Z", "--dry-run")
    assert fired_dates(out) == ["2026-11-22T10:00:00+00:00"]
    assert not (tmp_path / ".flow").exists()


def test_a_claim_whose_run_never_started_starts_on_the_next_tick(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    tick(flow, f, "2026-11-22T09:30:00Z")
    state = tmp_path / ".flow" / "tick.json"
    data = json.loads(state.read_text())
    # what a tick that died between claiming 10:00 and starting its run leaves behind
    data["pipelines"]["p"]["last_tick"] = "2026-11-22T10:00:30+00:00"
    data["pipelines"]["p"]["claims"].append({
        "slot": "2026-11-22T10:00:00+00:00", "logical_date": "2026-11-22T10:00:00+00:00",
        "schedule": "cron 0 * * * *", "run_id": "p-20261122T100000000-abcd", "started": False,
        "tick": "2026-11-22T10:00:30+00:00"})
    state.write_text(json.dumps(data))
    out = tick(flow, f, "2026-11-22T10:01:30Z")
    assert [(x["logical_date"], x["run_id"]) for x in out["fired"]] == [
        ("2026-11-22T10:00:00+00:00", "p-20261122T100000000-abcd")]
    assert tick(flow, f, "2026-11-22T10:02:30Z")["fired"] == []
    settle(tmp_path)
    assert [r["run_id"] for r in runs_json(flow, tmp_path)] == ["p-20261122T100000000-abcd"]


def test_a_run_opened_by_a_tick_that_died_before_forking_it_runs_on_the_next_tick(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    tick(flow, f, "2026-11-22T09:30:00Z")
    run_id = "p-20261122T100000000-dead"
    opener = (  # what the tick did before it died: claim saved, run opened, no fork
        "import sys, datetime as dt\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from flowdsl import check\n"
        "from flowdsl.schedule.launch import open_run\n"
        f"program = check({str(f)!r}).program\n"
        "when = dt.datetime(2026, 11, 22, 10, tzinfo=dt.timezone.utc)\n"
        f"open_run(program, trigger='schedule', logical_date=when, state_dir=None, run_id={run_id!r})\n")
    subprocess.run([sys.executable, "-c", opener], check=True, cwd=tmp_path)
    state = tmp_path / ".flow" / "tick.json"
    data = json.loads(state.read_text())
    data["pipelines"]["p"]["last_tick"] = "2026-11-22T10:00:30+00:00"
    data["pipelines"]["p"]["claims"].append({
        "slot": "2026-11-22T10:00:00+00:00", "logical_date": "2026-11-22T10:00:00+00:00",
        "schedule": "cron 0 * * * *", "run_id": run_id, "started": False, "tick": "2026-11-22T10:00:30+00:00"})
    state.write_text(json.dumps(data))
    out = tick(flow, f, "2026-11-22T10:01:30Z", "--wait")
    assert [(x["run_id"], x["status"]) for x in out["fired"]] == [(run_id, "success")]
    assert [(r["run_id"], r["status"], r["trigger"]) for r in runs_json(flow, tmp_path)] == [
        (run_id, "success", "schedule")]
    assert tick(flow, f, "2026-11-22T10:02:30Z")["fired"] == []


# ---- damage and bad files ------------------------------------------------------------------


def test_a_damaged_tick_state_fires_nothing_there_and_says_how_to_recover(flow, tmp_path):
    f = project(tmp_path / "a", 'schedule cron "0 * * * *"')
    g = project(tmp_path / "b", 'schedule cron "0 * * * *"', name="q")
    assert fired_dates(tick(flow, tmp_path, "2026-11-22T10:00:30Z")) == ["2026-11-22T10:00:00+00:00"] * 2
    settle(tmp_path / "a")
    settle(tmp_path / "b")
    state = tmp_path / "a" / ".flow" / "tick.json"
    state.write_text('{"version": 1, "pipelines": {"p": {"last_tick": "yesterday"')  # torn
    proc = flow("tick", tmp_path, "--now", "2026-11-22T11:00:30Z", "--json")
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr
    assert f"{state}: the tick state is damaged" in proc.stderr and f"mv {state}" in proc.stderr
    out = json.loads(proc.stdout)
    assert [x["pipeline"] for x in out["fired"]] == ["q"]  # the other folder still ticks
    assert [e["file"] for e in out["errors"]] == [str(f)]
    assert tick(flow, f, "2026-11-22T11:00:30Z", expect=1)["fired"] == []
    # the documented recovery: move it aside; the slot that already has a run does not fire again
    state.rename(state.with_name("tick.json.damaged"))
    settle(tmp_path / "b")
    assert fired_dates(tick(flow, f, "2026-11-22T10:00:40Z")) == []
    assert fired_dates(tick(flow, f, "2026-11-22T11:00:20Z")) == ["2026-11-22T11:00:00+00:00"]
    settle(tmp_path / "a")
    assert g.exists()


def test_a_file_with_errors_is_reported_and_skipped(flow, tmp_path):
    project(tmp_path, 'schedule cron "0 * * * *"', name="good")
    (tmp_path / "bad.flow").write_text('pipeline bad {\n    schedule cron "0 25 * * *"\n}\ntask t { sh "true" }\n')
    proc = flow("tick", tmp_path, "--now", "2026-11-22T10:00:30Z", "--json")
    assert proc.returncode == 1, explain(proc)
    out = json.loads(proc.stdout)
    assert [x["pipeline"] for x in out["fired"]] == ["good"]
    assert out["errors"][0]["file"].endswith("bad.flow")
    assert "bad.flow:2:" in proc.stderr and "Traceback" not in proc.stderr
    settle(tmp_path)


def test_nothing_due_prints_nothing(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 3 * * *"')
    proc = flow("tick", f, "--now", "2026-11-22T10:00:30Z")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", explain(proc)


def test_tick_usage_errors(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 3 * * *"')
    for args in (["--now", "yesterday"], ["--now", "0001-01-01T00:00"], ["--now", "9999-12-31T23:59:59"],
                 ["--every", "5s"], ["--loop", "--now", "2026-11-22T10:00:00Z"],
                 ["--loop", "--every", "soon"]):
        proc = flow("tick", f, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, explain(proc)
    assert flow("tick", tmp_path / "missing").returncode == 2


# ---- --wait and --loop -------------------------------------------------------------------


def test_wait_runs_in_the_foreground_and_exits_1_if_a_run_failed(flow, tmp_path):
    write_project(tmp_path, """
        pipeline w {
            schedule every 1h
            catchup all
        }
        task t { sh "test {run.logical_date} != 2026-11-22T10:00:00+00:00" }
    """, name="w.flow")
    f = tmp_path / "w.flow"
    tick(flow, f, "2026-11-22T08:59:30Z")
    out = tick(flow, f, "2026-11-22T10:00:00Z", "--wait", expect=1)
    assert [(x["logical_date"], x["status"]) for x in out["fired"]] == [
        ("2026-11-22T09:00:00+00:00", "success"), ("2026-11-22T10:00:00+00:00", "failed")]
    statuses = {r["run_id"]: r["status"] for r in runs_json(flow, tmp_path)}  # finished: no settle needed
    assert sorted(statuses.values()) == ["failed", "success"]
    proc = flow("tick", f, "--now", "2026-11-22T11:00:00Z", "--wait")
    assert proc.returncode == 0, explain(proc)
    assert "success" in proc.stdout


def test_loop_keeps_ticking_until_stopped(pyz, tmp_path):
    import signal

    # a slot every 3 s: twenty schedules of every 1m (the fastest allowed), 3 s apart
    every = "\n        ".join(f'schedule every 1m from "2026-01-01T00:00:{s:02d}Z"' for s in range(0, 60, 3))
    f = project(tmp_path, every, "overlap allow")
    env = dict(os.environ, NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    p = subprocess.Popen([sys.executable, str(pyz), "tick", str(f), "--loop", "--every", "1s"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert wait_until(lambda: len(list((tmp_path / ".flow" / "runs").glob("*"))) >= 3
                          if (tmp_path / ".flow" / "runs").is_dir() else False, 30)
    finally:
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=30)
    assert p.returncode == 130, stderr
    assert stdout.count("fired p") >= 3 and "Traceback" not in stderr
    settle(tmp_path)


# ---- overlap with a real long-running run -----------------------------------------------

LONG = """
    pipeline slow {{
        schedule cron "0 * * * *"
        overlap {mode}
    }}
    task work {{ sh "date +%s.%N >> started; while [ ! -f release ]; do sleep 0.05; done; date +%s.%N >> ended" }}
"""


def status_of(flow, folder: Path, run_id: str) -> str:
    return {r["run_id"]: r["status"] for r in runs_json(flow, folder)}[run_id]


@pytest.mark.parametrize("mode", ["skip", "allow", "queue", "replace"])
def test_overlap_with_a_run_still_going(flow, tmp_path, mode):
    f = write_project(tmp_path, LONG.format(mode=mode), name="slow.flow")
    first = tick(flow, f, "2026-11-22T10:00:30Z")["fired"][0]["run_id"]
    assert wait_until(lambda: (tmp_path / "started").exists(), 30)
    out = tick(flow, f, "2026-11-22T11:00:30Z")
    if mode == "skip":
        assert out["fired"] == []
        assert out["skipped"] == [{"pipeline": "slow", "logical_date": "2026-11-22T11:00:00+00:00",
                                   "reason": "overlap", "running": [first]}]
        assert status_of(flow, tmp_path, first) == "running"
        (tmp_path / "release").touch()
        settle(tmp_path)
        assert len(runs_json(flow, tmp_path)) == 1
        return
    second = out["fired"][0]["run_id"]
    if mode == "allow":
        assert wait_until(lambda: len((tmp_path / "started").read_text().split()) == 2, 30)
        assert status_of(flow, tmp_path, first) == "running"
        (tmp_path / "release").touch()
        settle(tmp_path)
        assert {r["status"] for r in runs_json(flow, tmp_path)} == {"success"}
    elif mode == "queue":
        time.sleep(1.0)
        assert len((tmp_path / "started").read_text().split()) == 1  # the second waits
        assert "waiting for" in (tmp_path / ".flow" / "runs" / second / "output.log").read_text()
        (tmp_path / "release").touch()
        settle(tmp_path)
        starts = [float(x) for x in (tmp_path / "started").read_text().split()]
        ends = [float(x) for x in (tmp_path / "ended").read_text().split()]
        assert len(starts) == 2 and starts[1] >= ends[0]  # the second began after the first ended
        assert {r["status"] for r in runs_json(flow, tmp_path)} == {"success"}
    else:  # replace
        assert wait_until(lambda: status_of(flow, tmp_path, first) == "interrupted", 30)
        assert wait_until(lambda: len((tmp_path / "started").read_text().split()) == 2, 30)
        (tmp_path / "release").touch()
        settle(tmp_path)
        assert status_of(flow, tmp_path, second) == "success"
        proc = flow("run", f, "--resume", first)  # the replaced run stays resumable
        assert proc.returncode == 0, explain(proc)
        assert status_of(flow, tmp_path, first) == "success"
