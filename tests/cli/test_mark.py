"""`flow mark`: a task of a finished run set by hand, which a resume then takes as it is."""

from __future__ import annotations

import json

import pytest
from runkit import explain, run_json, spawn_run, state_runs, stopped, wait_until, write_project

FLOW = """
    task a  { sh "echo a >> ran.txt" }
    task b  { sh "echo b >> ran.txt; exit 3"  after a  output json }
    task c  { sh "echo c{b.n} >> ran.txt; echo c{b.n}"  after b }
    task fe { foreach i in [1, 2, 3]  sh "echo fe{i} >> ran.txt; test {i} -ne 2"  after a }
    task d  { sh "echo d >> ran.txt"  after fe }
"""


def failed_run(flow, tmp_path):
    f = write_project(tmp_path, FLOW)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    (tmp_path / "ran.txt").write_text("")
    return f, report["run_id"]


def ran(tmp_path):
    return (tmp_path / "ran.txt").read_text().split()


def test_a_task_marked_success_is_kept_by_the_resume_with_its_result(flow, tmp_path):
    f, run_id = failed_run(flow, tmp_path)
    proc = flow("mark", run_id, "b", "success", "--result", '{"n": 3}', cwd=tmp_path)
    assert proc.returncode == 0 and "marked b success" in proc.stdout, explain(proc)
    proc = flow("mark", run_id, "fe[1]", "success", "--result", "7", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    status = json.loads(flow("status", run_id, "--json", cwd=tmp_path).stdout)
    assert status["tasks"]["b"]["status"] == "success" and status["tasks"]["b"]["marked"] is True
    assert status["tasks"]["b"]["result"] == {"n": 3}
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0 and report["status"] == "success", explain(proc)
    assert sorted(ran(tmp_path)) == ["c3", "d"]  # nothing marked or kept ran again; c saw the marked result
    assert report["tasks"]["fe"]["result"] == ["", 7, ""] and report["tasks"]["c"]["result"] == "c3"


def test_a_task_marked_skipped_stays_skipped_and_its_dependents_follow_when(flow, tmp_path):
    f, run_id = failed_run(flow, tmp_path)
    assert flow("mark", run_id, "b", "skipped", cwd=tmp_path).returncode == 0
    assert flow("mark", run_id, "fe[1]", "skipped", cwd=tmp_path).returncode == 0
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0 and report["status"] == "success", explain(proc)
    assert report["tasks"]["b"]["status"] == "skipped" and report["tasks"]["c"]["status"] == "skipped"
    # a skipped instance does not fail its foreach: its result is null, and what follows runs
    assert report["tasks"]["fe"]["status"] == "success" and report["tasks"]["fe"]["result"] == ["", None, ""]
    assert report["tasks"]["fe[1]"]["reason"] == "marked skipped by hand"
    assert ran(tmp_path) == ["d"]


def test_a_task_marked_failed_runs_again(flow, tmp_path):
    f, run_id = failed_run(flow, tmp_path)
    assert flow("mark", run_id, "a", "failed", cwd=tmp_path).returncode == 0
    status = json.loads(flow("status", run_id, "--json", cwd=tmp_path).stdout)
    assert status["tasks"]["a"]["status"] == "failed" and status["tasks"]["a"]["error"]["type"] == "Marked"
    run_json(flow, f, "--resume")
    assert "a" in ran(tmp_path)


@pytest.mark.parametrize("args, words", [
    (["nope", "success"], "no task `nope`"),
    (["bb", "success"], "did you mean"),
    (["fe", "success"], "foreach task"),
    (["b", "failed", "--result", "1"], "--result goes with"),
    (["b", "success", "--result", "{not json"], "--result takes JSON"),
    (["b", "done"], "invalid choice"),
])
def test_mark_refuses_what_makes_no_sense(flow, tmp_path, args, words):
    _, run_id = failed_run(flow, tmp_path)
    proc = flow("mark", run_id, *args, cwd=tmp_path)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, explain(proc)


def test_mark_refuses_a_live_run_and_an_unknown_one(flow, pyz, tmp_path):
    f = write_project(tmp_path, 'task slow { sh "touch started; sleep 20" }\n')
    proc = spawn_run(pyz, f)
    with stopped(proc):
        assert wait_until(lambda: (tmp_path / "started").exists(), 20)
        (run,) = state_runs(tmp_path)
        mark = flow("mark", run.name, "slow", "success", cwd=tmp_path)
        assert mark.returncode == 2 and "is live" in mark.stderr, explain(mark)
    proc = flow("mark", "nope-20260101T000000000-0000", "slow", "success", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, explain(proc)
