"""Operating schedules: no silent no-ops, pause/unpause, backfill --skip-succeeded, a damaged or full tick state."""

import json
import subprocess
import sys

import pytest
from runkit import explain, write_project
from tickkit import fired_dates, project, settle, tick


def errors_of(proc, verb: str) -> list:
    return [line for line in proc.stderr.splitlines() if line.startswith(f"flow {verb}: error:")]


# ---- silent no-ops ---------------------------------------------------------------------


def test_an_include_cycle_is_an_error_of_tick_and_schedule_named_once_per_file(flow, tmp_path):
    (tmp_path / "a.flow").write_text('include "b.flow"\npipeline a { schedule cron "* * * * *" }\n'
                                     'task x { sh "true" }\n')
    (tmp_path / "b.flow").write_text('include "a.flow"\ntask y { sh "true" }\n')
    assert "E303" in flow("validate", tmp_path / "a.flow").stdout
    for verb, extra in (("tick", ["--now", "2026-11-22T10:00:30Z"]), ("schedule", [])):
        proc = flow(verb, tmp_path, *extra)
        assert proc.returncode == 1, explain(proc)
        lines = errors_of(proc, verb)
        assert len(lines) == 2 and len(proc.stderr.splitlines()) == 2, explain(proc)  # no diagnostics, no summary
        assert "a.flow: " in lines[0] and "b.flow: " in lines[1] and all("E303" in x for x in lines)
        assert "no pipelines found" not in proc.stdout and "Traceback" not in proc.stderr
    assert not (tmp_path / ".flow" / "runs").exists()


def test_a_last_tick_in_the_future_is_said_and_recovered_from(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    assert fired_dates(tick(flow, f, "2026-11-22T10:00:30Z")) == ["2026-11-22T10:00:00+00:00"]
    settle(tmp_path)
    assert fired_dates(tick(flow, f, "2099-01-01T00:00:30Z")) == ["2099-01-01T00:00:00+00:00"]  # a wrong --now
    settle(tmp_path)
    proc = flow("tick", f, "--now", "2026-11-22T10:00:40Z", "--json")
    assert proc.returncode == 0, explain(proc)
    out = json.loads(proc.stdout)
    assert out["fired"] == []  # 10:00 already has its run: never twice
    assert "after now" in proc.stderr and "2099-01-01T00:00:30" in proc.stderr and "flow tick: warning:" in proc.stderr
    assert out["warnings"][0]["file"] == str(f)
    assert fired_dates(tick(flow, f, "2026-11-22T11:00:30Z")) == ["2026-11-22T11:00:00+00:00"]  # recovered
    settle(tmp_path)
    proc = flow("tick", f, "--now", "2026-11-22T12:00:30Z")
    assert proc.returncode == 0 and proc.stderr == "", explain(proc)  # said once, not for ever
    settle(tmp_path)


def test_after_downtime_the_skipped_slots_are_one_line_per_pipeline(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    project(tmp_path, 'schedule cron "30 * * * *"', name="q")
    tick(flow, tmp_path, "2026-11-22T10:30:30Z")
    settle(tmp_path)
    proc = flow("tick", tmp_path, "--now", "2026-11-27T10:30:30Z")
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    assert lines[0].startswith("fired p 2026-11-27T10:00:00+00:00") and lines[1].startswith("fired q 2026-11-27T10:30")
    assert lines[2] == ("skipped at least 100 slots of p, 2026-11-23T06:00:00+00:00 to 2026-11-27T09:00:00+00:00: "
                        "missed while nothing ticked (catchup)")
    assert lines[3].startswith("skipped at least 100 slots of q, ")
    settle(tmp_path)
    assert f.exists()


# ---- pause ---------------------------------------------------------------------------


def test_pause_skips_the_slots_until_unpause(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    proc = flow("schedule", f, "--pause", "p")
    assert proc.returncode == 0 and proc.stdout.startswith("paused p"), explain(proc)
    assert flow("schedule", f, "--pause", "p").stdout.startswith("already paused")
    out = tick(flow, f, "2026-11-22T10:00:30Z")
    assert out["fired"] == [] and out["skipped"] == [
        {"pipeline": "p", "logical_date": "2026-11-22T10:00:00+00:00", "reason": "paused"}]
    proc = flow("tick", f, "--now", "2026-11-22T13:00:30Z")
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout == ("skipped 3 slots of p, 2026-11-22T11:00:00+00:00 to 2026-11-22T13:00:00+00:00: "
                           "paused (`flow schedule --unpause p`)\n")
    rows = json.loads(flow("schedule", f, "--json", "--now", "2026-11-22T13:00:30Z").stdout)
    assert rows[0]["paused"] is True
    assert "PAUSED" in flow("schedule", f, "--now", "2026-11-22T13:00:30Z").stdout
    proc = flow("schedule", f, "--unpause", "p")
    assert proc.returncode == 0 and proc.stdout.startswith("unpaused p"), explain(proc)
    assert json.loads(flow("schedule", f, "--json").stdout)[0]["paused"] is False
    assert fired_dates(tick(flow, f, "2026-11-22T14:00:30Z")) == ["2026-11-22T14:00:00+00:00"]  # not the paused ones
    settle(tmp_path)
    assert not any(r.get("logical_date", "").startswith("2026-11-22T1" + h) for h in "0123"
                   for r in json.loads(flow("runs", "--json", "--state-dir", tmp_path / ".flow").stdout))


def test_pause_usage(flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    for args in (["--pause", "nope"], ["--pause", "p", "--unpause", "p"], ["--pause", "p", "--json"]):
        proc = flow("schedule", f, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, explain(proc)
    assert not (tmp_path / ".flow" / "tick.json").exists()


# ---- backfill --skip-succeeded -----------------------------------------------------------


def test_backfill_skip_succeeded_runs_only_the_slots_without_a_success(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline nightly {
            schedule cron "0 2 * * *"
            executor inline
        }
        task a { sh "echo {run.logical_date} >> ran; test ! -f fail-{run.logical_date}" }
    """, name="nightly.flow")
    (tmp_path / "fail-2026-11-02T02:00:00+00:00").write_text("")
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-03", "--json")
    assert proc.returncode == 1, explain(proc)
    assert [r["status"] for r in json.loads(proc.stdout)] == ["success", "failed", "success"]
    (tmp_path / "fail-2026-11-02T02:00:00+00:00").unlink()
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-04", "--skip-succeeded", "--dry-run")
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.splitlines()[1:] == ["  2026-11-02T02:00:00+00:00 (cron 0 2 * * *)",
                                            "  2026-11-04T02:00:00+00:00 (cron 0 2 * * *)",
                                            "2 runs of nightly would start (slots with a successful run left out)"]
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-04", "--skip-succeeded", "--json")
    assert proc.returncode == 0, explain(proc)
    assert [(r["logical_date"], r["status"]) for r in json.loads(proc.stdout)] == [
        ("2026-11-02T02:00:00+00:00", "success"), ("2026-11-04T02:00:00+00:00", "success")]
    assert len((tmp_path / "ran").read_text().split()) == 5
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-04", "--skip-succeeded")
    assert proc.returncode == 0 and "no slot of nightly that has no successful run" in proc.stderr, explain(proc)


# ---- a damaged tick state ------------------------------------------------------------------

ENTRY = {"last_tick": "2026-11-22T10:00:30+00:00", "claims": [], "skipped": []}


def state_with(**entry):
    return json.dumps({"version": 1, "pipelines": {"p": dict(ENTRY, **entry)}})


DAMAGE = {
    "no last_tick": json.dumps({"version": 1, "pipelines": {"p": {"claims": [], "skipped": []}}}),
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "deeply nested object": '{"version": 1, "pipelines": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001,
    "a list": "[]",
    "pipelines a list": json.dumps({"version": 1, "pipelines": []}),
    "version a string": json.dumps({"version": "1", "pipelines": {}}),
    "last_tick a number": state_with(last_tick=5),
    "claims an object": state_with(claims={}),
    "started a string": state_with(claims=[{"slot": "2026-11-22T10:00:00+00:00", "run_id": "p-20261122T100000123-ab12",
                                            "started": "yes"}]),
    "logical_date a number": state_with(claims=[{"slot": "2026-11-22T10:00:00+00:00", "logical_date": 3,
                                                 "run_id": "p-20261122T100000123-ab12"}]),
    "paused a string": state_with(paused="yes"),
    "skipped holds numbers": state_with(skipped=[1, 2]),
    "file a list": state_with(file=[]),
}


@pytest.mark.parametrize("text", list(DAMAGE.values()), ids=list(DAMAGE))
def test_a_damaged_tick_state_names_the_file_and_the_remedy(flow, tmp_path, text):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    state = tmp_path / ".flow" / "tick.json"
    state.parent.mkdir()
    state.write_text(text)
    for args in (["tick", f, "--now", "2026-11-22T11:00:30Z"], ["tick", f, "--dry-run"], ["schedule", f],
                 ["schedule", f, "--pause", "p"]):
        proc = flow(*args)
        assert proc.returncode == 1, explain(proc)
        assert "Traceback" not in proc.stderr and f"{state}: the tick state is damaged" in proc.stderr, explain(proc)
        assert f"mv {state} {state}.damaged" in proc.stderr
    assert state.read_text() == text and not (tmp_path / ".flow" / "runs").exists()


FULL_DISK = """
import errno, os, runpy, sys
real = os.replace
def replace(src, dst, *args, **kwargs):
    if os.path.basename(dst) == "tick.json":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
    return real(src, dst, *args, **kwargs)
os.replace = replace
pyz = sys.argv.pop(1)
sys.argv[0] = pyz
runpy.run_path(pyz, run_name="__main__")
"""


def test_a_full_disk_loses_nothing_and_leaves_no_temporary_file(pyz, flow, tmp_path):
    f = project(tmp_path, 'schedule cron "0 * * * *"')
    assert fired_dates(tick(flow, f, "2026-11-22T10:00:30Z")) == ["2026-11-22T10:00:00+00:00"]
    settle(tmp_path)
    state = tmp_path / ".flow" / "tick.json"
    before = state.read_text()
    runs = sorted((tmp_path / ".flow" / "runs").iterdir())
    for args in (["tick", f, "--now", "2026-11-22T11:00:30Z"], ["schedule", f, "--pause", "p"]):
        proc = subprocess.run([sys.executable, "-c", FULL_DISK, str(pyz), *map(str, args)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, explain(proc)
        assert "Traceback" not in proc.stderr and f"{state}: cannot save the tick state" in proc.stderr, explain(proc)
        assert "No space left on device" in proc.stderr and "make room" in proc.stderr
        assert state.read_text() == before  # the last state saved, whole
        assert sorted(p.name for p in state.parent.iterdir() if "tick.json" in p.name and p != state) == []
        assert sorted((tmp_path / ".flow" / "runs").iterdir()) == runs  # nothing started without its claim saved
    # room again: the slot that tick owned is owned again, and fires once
    assert fired_dates(tick(flow, f, "2026-11-22T11:00:40Z")) == ["2026-11-22T11:00:00+00:00"]
    settle(tmp_path)
    assert json.loads(flow("schedule", f, "--json").stdout)[0]["paused"] is False


def test_a_tick_lock_that_is_a_folder_is_named_with_its_remedy(flow, tmp_path):
    write_project(tmp_path, 'pipeline s { schedule cron "* * * * *"  executor inline }\ntask a { sh "echo a" }\n',
                  name="s.flow")
    (tmp_path / ".flow").mkdir(mode=0o700)
    (tmp_path / ".flow" / "tick.lock").mkdir()
    proc = flow("tick", tmp_path, "--now", "2026-12-01T10:00:30Z", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "tick.lock is a folder" in proc.stderr and "rmdir" in proc.stderr
