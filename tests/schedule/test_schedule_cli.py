"""`flow schedule` (next fire times, DST marks, cron-step warnings) and `flow backfill`, end to end."""

import json

from runkit import explain, write_project

BERLIN = """
    pipeline berlin {
        schedule cron "30 2 * * *" tz "Europe/Berlin"
        schedule every 1h from "2026-01-01T00:30:00Z"
        schedule at "2026-12-24T18:00:00+01:00"
        catchup all
    }
    task a { sh "true" }
"""


def schedule_json(flow, *args):
    proc = flow("schedule", *args, "--json")
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout)


def test_schedule_lists_next_fire_times_in_the_zone_and_marks_dst_moves(flow, tmp_path):
    f = write_project(tmp_path, BERLIN, name="berlin.flow")
    rows = schedule_json(flow, f, "--now", "2026-03-27T12:00:00Z", "--next", "3")
    assert [(r["pipeline"], r["schedule"], r["tz"]) for r in rows] == [
        ("berlin", "cron 30 2 * * *", "Europe/Berlin"),
        ("berlin", "every 1h from 2026-01-01T00:30:00Z", "UTC"),
        ("berlin", "at 2026-12-24T18:00:00+01:00", "+01:00")]
    assert rows[0]["next"] == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00",
                               "2026-03-30T02:30:00+02:00"]
    assert rows[0]["moved"] == ["2026-03-29T03:00:00+02:00"]
    assert rows[1]["next"] == ["2026-03-27T12:30:00+00:00", "2026-03-27T13:30:00+00:00",
                               "2026-03-27T14:30:00+00:00"]
    assert rows[2]["next"] == ["2026-12-24T18:00:00+01:00"] and rows[0]["catchup"] == "all"
    proc = flow("schedule", tmp_path, "--now", "2026-03-27T12:00:00Z", "--next", "3")
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["pipeline", "schedule", "zone", "next", "rules"]
    assert any("2026-03-29T03:00:00+02:00 *" in line for line in lines)
    assert "moved by a daylight-saving gap" in proc.stdout
    assert "Europe/Berlin" in proc.stdout and "cron 30 2 * * *" in proc.stdout


def test_schedule_warns_about_steps_that_do_not_divide_their_range(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline steps { schedule cron "*/7 * * * *" }
        task a { sh "true" }
    """, name="steps.flow")
    proc = flow("schedule", f, "--now", "2026-11-22T10:58:00Z", "--next", "2")
    assert proc.returncode == 0, explain(proc)
    assert "`*/7` in the minute field does not mean every 7" in proc.stderr
    assert f"{f}:2:" in proc.stderr
    rows = schedule_json(flow, f, "--now", "2026-11-22T10:58:00Z", "--next", "2")
    assert rows[0]["next"] == ["2026-11-22T11:00:00+00:00", "2026-11-22T11:07:00+00:00"]  # 56, then 0: not 7


def test_schedule_shows_pipelines_without_schedule_and_ended_windows(flow, tmp_path):
    write_project(tmp_path, 'pipeline manual {}\ntask a { sh "true" }\n', name="manual.flow")
    write_project(tmp_path, """
        pipeline over {
            schedule cron "0 * * * *"
            window "2026-01-01T00:00:00Z" to "2026-02-01T00:00:00Z"
        }
        task a { sh "true" }
    """, name="over.flow")
    rows = {r["pipeline"]: r for r in schedule_json(flow, tmp_path, "--now", "2026-11-22T10:00:00Z")}
    assert rows["manual"]["schedule"] is None and rows["manual"]["next"] == []
    assert rows["over"]["next"] == []
    proc = flow("schedule", tmp_path, "--now", "2026-11-22T10:00:00Z")
    assert "runs only when started" in proc.stdout and "the window has ended" in proc.stdout


def test_schedule_reports_a_bad_file_and_lists_the_others(flow, tmp_path):
    write_project(tmp_path, BERLIN, name="berlin.flow")
    (tmp_path / "bad.flow").write_text('pipeline bad { schedule cron "0 0 * *" }\ntask a { sh "true" }\n')
    proc = flow("schedule", tmp_path, "--json")
    assert proc.returncode == 1, explain(proc)
    assert {r["pipeline"] for r in json.loads(proc.stdout)} == {"berlin"}
    assert "bad.flow:1:" in proc.stderr and "Traceback" not in proc.stderr
    assert flow("schedule", tmp_path, "--next", "0").returncode == 2


DAILY = """
    pipeline daily {
        schedule cron "0 5 * * *" tz "Europe/Berlin"
        executor inline
    }
    task a { sh "echo {run.logical_date} {run.trigger} >> ran" }
"""


def test_backfill_runs_each_slot_oldest_first_with_its_logical_date(flow, tmp_path):
    f = write_project(tmp_path, DAILY, name="daily.flow")
    proc = flow("backfill", f, "--start", "2026-11-01", "--end", "2026-11-03", "--json")
    assert proc.returncode == 0, explain(proc)
    runs = json.loads(proc.stdout)
    dates = ["2026-11-01T05:00:00+01:00", "2026-11-02T05:00:00+01:00", "2026-11-03T05:00:00+01:00"]
    assert [(r["logical_date"], r["status"]) for r in runs] == [(d, "success") for d in dates]
    assert (tmp_path / "ran").read_text().split() == [x for d in dates for x in (d, "backfill")]
    history = json.loads(flow("runs", "--json", "--state-dir", tmp_path / ".flow").stdout)
    assert [(r["logical_date"], r["trigger"]) for r in history] == [(d, "backfill") for d in reversed(dates)]


def test_backfill_includes_both_ends_of_an_exact_range(flow, tmp_path):
    f = write_project(tmp_path, DAILY, name="daily.flow")
    proc = flow("backfill", f, "--start", "2026-11-01T05:00:00+01:00", "--end", "2026-11-02T04:00:00Z",
                "--dry-run", "--json")
    assert proc.returncode == 0, explain(proc)
    assert [r["logical_date"] for r in json.loads(proc.stdout)] == [
        "2026-11-01T05:00:00+01:00", "2026-11-02T05:00:00+01:00"]
    assert not (tmp_path / ".flow" / "runs").exists()
    proc = flow("backfill", f, "--start", "2026-11-01T05:00:01+01:00", "--end", "2026-11-02T03:59:59Z",
                "--dry-run")
    assert proc.returncode == 0 and proc.stdout.startswith("0 runs"), explain(proc)


def test_backfill_across_a_dst_change_and_a_failing_slot(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline nightly {
            schedule cron "30 2 * * *" tz "Europe/Berlin"
            executor inline
        }
        task a { sh "test {run.logical_date} != 2026-03-30T02:30:00+02:00" }
    """, name="nightly.flow")
    proc = flow("backfill", f, "--start", "2026-03-28", "--end", "2026-03-30", "--json")
    assert proc.returncode == 1, explain(proc)
    assert [(r["logical_date"], r["status"]) for r in json.loads(proc.stdout)] == [
        ("2026-03-28T02:30:00+01:00", "success"), ("2026-03-29T03:00:00+02:00", "success"),
        ("2026-03-30T02:30:00+02:00", "failed")]


def test_backfill_usage_errors(flow, tmp_path):
    f = write_project(tmp_path, DAILY, name="daily.flow")
    m = write_project(tmp_path, 'pipeline manual {}\ntask a { sh "true" }\n', name="manual.flow")
    for args in ([f, "--start", "2026-11-03", "--end", "2026-11-01"],
                 [f, "--start", "soon", "--end", "2026-11-01"],
                 [m, "--start", "2026-11-01", "--end", "2026-11-02"],
                 [tmp_path / "none.flow", "--start", "2026-11-01", "--end", "2026-11-02"],
                 [f, "--start", "2026-11-01"], [f, "--start", "0001-01-01", "--end", "2026-11-01"],
                 [f, "--start", "9999-12-30", "--end", "9999-12-31"]):
        proc = flow("backfill", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, explain(proc)
    assert not (tmp_path / ".flow" / "runs").exists()
