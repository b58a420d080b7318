"""A claimed slot always becomes a run (cli.md, "Scheduled runs that cannot start").

A tick or a backfill whose run cannot start (a param's secret unset, the Dask
scheduler unreachable) records the run all the same: failed, its trigger
`schedule` or `backfill`, the reason as its error in `runs`, `status` and the
report, its failure hooks fired, and resumable once the cause is fixed. The
tick exits 1, and a later tick does not fire the slot again.
"""

from __future__ import annotations

import json

import pytest
from runkit import explain, write_project

SECRET = "FLOW_TEST_CANNOT_START_TOKEN"

CASES = {
    "secret": f"""
        pipeline p {{
            schedule cron "0 * * * *"
            params {{ token = secret("{SECRET}") }}
            on failure sh "echo failed >> alert.txt"
        }}
        task use {{ sh "echo using the token; test -n \\"$FLOW_ARG_T\\""  with {{ t = params.token }} }}
    """,
    "dask": """
        pipeline p {
            schedule cron "0 * * * *"
            executor dask "tcp://127.0.0.1:9"
            on failure sh "echo failed >> alert.txt"
        }
        task use { sh "echo hello" }
    """,
}


def runs_of(flow, folder):
    proc = flow("runs", "--json", cwd=folder)
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("why", sorted(CASES))
def test_a_slot_whose_run_cannot_start_becomes_a_failed_run(flow, tmp_path, why):
    f = write_project(tmp_path, CASES[why])
    env = {"FLOW_DASK_TIMEOUT": "2"}
    proc = flow("tick", tmp_path, "--now", "2026-12-01T10:00:30Z", "--wait", cwd=tmp_path, env=env)
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr and "cannot start the run of" in proc.stderr
    (run,) = runs_of(flow, tmp_path)
    assert (run["status"], run["trigger"]) == ("failed", "schedule")
    assert run["error"]["type"] == "CannotStart"
    assert (SECRET if why == "secret" else "127.0.0.1:9") in run["error"]["message"]
    status = flow("status", run["run_id"], "--json", cwd=tmp_path)
    report = json.loads(status.stdout)
    assert report["error"] == run["error"] and report["tasks"]["use"]["status"] == "pending"
    text = flow("status", run["run_id"], cwd=tmp_path).stdout
    assert "failed" in text and run["error"]["message"].split(":")[0] in text
    assert (tmp_path / "alert.txt").read_text().split() == ["failed"]  # the failure hook ran
    # the slot is not fired again by a later tick
    again = flow("tick", tmp_path, "--now", "2026-12-01T10:01:30Z", "--wait", "--json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["fired"] == [], explain(again)
    assert len(runs_of(flow, tmp_path)) == 1
    if why == "secret":  # fixed: the same run resumes and succeeds, its error gone
        proc = flow("run", f, "--resume", run["run_id"], "--json", cwd=tmp_path, env={SECRET: "s3cr3t"})
        assert proc.returncode == 0, explain(proc)
        resumed = json.loads(proc.stdout)
        assert resumed["status"] == "success" and resumed["error"] is None
        assert resumed["trigger"] == "schedule" and resumed["run_id"] == run["run_id"]


def test_a_backfill_whose_runs_cannot_start_records_a_failed_run(flow, tmp_path):
    f = write_project(tmp_path, CASES["secret"])
    proc = flow("backfill", f, "--start", "2026-12-01T10:00Z", "--end", "2026-12-01T12:00Z", cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr and "cannot start the run of" in proc.stderr
    runs = runs_of(flow, tmp_path)
    assert len(runs) == 1  # the first records why; the rest are not started, and the message says how to
    assert (runs[0]["status"], runs[0]["trigger"], runs[0]["error"]["type"]) == ("failed", "backfill", "CannotStart")
    assert "backfill them with --start" in proc.stderr


def test_other_runs_have_no_error(flow, tmp_path):
    f = write_project(tmp_path, 'task a { sh "echo a" }\n')
    proc = flow("run", f, "--json", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["error"] is None
    assert runs_of(flow, tmp_path)[0]["error"] is None
