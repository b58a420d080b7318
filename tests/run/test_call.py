"""Sub-pipelines (`call`), end to end (language reference, section 7): the child run is a run of its own
in the same state folder (trigger `call`, the parent's logical date), its params from `with`, its
tasks' results the task's result, its failure ChildRunFailed; a resume of the parent resumes it."""

import json
import os
import signal
import time

from runkit import explain, new_marker, run_json, spawn_run, stopped, wait_until, write_project

CHILD = """
    pipeline monthly {
        params { month = null  region = "emea" }
    }
    task a { sh "echo a-{params.month}-{params.region}-{run.trigger}-{run.date} ; echo x >> a.count" }
    task parts { foreach n in [1, 2]  sh "echo {n}"  output json }
    task b { sh "test -f b.ok && echo b"  after a }
"""

PARENT = """
    pipeline parent { params { month = "2026-11" } }
    task monthly {
        call "reports/monthly.flow"
        with { month = params.month }
    }
    task use { sh "echo got {monthly.a} {monthly.parts}" }
"""


def project(tmp_path, parent=PARENT, child=CHILD):
    write_project(tmp_path / "reports", child, name="monthly.flow")
    return write_project(tmp_path, parent)


def runs(flow, tmp_path):
    out = flow("runs", "--json", cwd=tmp_path)
    assert out.returncode == 0, explain(out)
    return json.loads(out.stdout)


def test_a_call_runs_the_child_as_a_run_of_its_own_and_takes_its_results(flow, tmp_path):
    f = project(tmp_path)
    (tmp_path / "reports" / "b.ok").write_text("")
    proc, report = run_json(flow, f, "--logical-date", "2026-12-01T05:00:00+00:00")
    assert proc.returncode == 0, explain(proc)
    monthly = report["tasks"]["monthly"]
    assert monthly["status"] == "success"
    assert monthly["result"] == {"a": "a-2026-11-emea-call-2026-12-01", "parts": [1, 2], "b": "b"}
    child_id = monthly["child_run"]
    assert child_id.startswith("monthly-")
    assert report["tasks"]["use"]["result"] == "got a-2026-11-emea-call-2026-12-01 [1, 2]"
    listed = {r["run_id"]: r for r in runs(flow, tmp_path)}
    assert listed[child_id]["trigger"] == "call"
    assert listed[child_id]["status"] == "success"
    assert listed[child_id]["logical_date"].startswith("2026-12-01T05:00:00")
    status = flow("status", "--file", f, cwd=tmp_path)
    assert child_id in status.stdout, explain(status)
    child_status = flow("status", child_id, "--json", cwd=tmp_path)
    assert json.loads(child_status.stdout)["params"]["month"] == "2026-11"


def test_a_failed_child_fails_the_call_naming_its_failed_tasks_and_a_resume_resumes_the_child(flow, tmp_path):
    f = project(tmp_path)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1
    monthly = report["tasks"]["monthly"]
    assert monthly["status"] == "failed"
    assert monthly["error"]["type"] == "ChildRunFailed"
    assert "b" in monthly["error"]["message"] and monthly["child_run"] in monthly["error"]["message"]
    child_id = monthly["child_run"]
    assert (tmp_path / "reports" / "a.count").read_text().count("x") == 1
    (tmp_path / "reports" / "b.ok").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["monthly"]["child_run"] == child_id  # the same child run, resumed
    assert report["tasks"]["monthly"]["result"]["b"] == "b"
    assert (tmp_path / "reports" / "a.count").read_text().count("x") == 1  # its success was kept
    child = [r for r in runs(flow, tmp_path) if r["pipeline"] == "monthly"]
    assert len(child) == 1 and child[0]["status"] == "success"


def test_call_params_are_typed_and_secrets_never_reach_argv_or_the_child_journal(flow, tmp_path):
    child = """
        pipeline child { params { n = 1  token = secret("TOKEN")  when = run.logical_date } }
        task show { sh "echo {params.n} $FLOW_ARG_T"  with { t = params.token } }
        task kinds { run kinds:of  with { n = params.n  when = params.when } }
    """
    parent = """
        task c { call "sub/child.flow"  with { n = 7  token = secret("PARENT_TOKEN") } }
    """
    write_project(tmp_path / "sub", child, {"kinds.py": "def of(n, when):\n    return [type(n).__name__, "
                                                        "type(when).__name__]\n"}, name="child.flow")
    f = write_project(tmp_path, parent)
    proc, report = run_json(flow, f, env={"PARENT_TOKEN": "s3cr3t-value", "TOKEN": "unused"})
    assert proc.returncode == 0, explain(proc)
    result = report["tasks"]["c"]["result"]
    assert result["kinds"] == ["int", "datetime"]
    assert "s3cr3t-value" not in json.dumps(report)
    for path in (tmp_path / ".flow").rglob("*"):
        if path.is_file():
            assert b"s3cr3t-value" not in path.read_bytes(), path


def test_validate_checks_the_childs_params_and_cycles(flow, tmp_path):
    project(tmp_path, parent="""
        task monthly { call "reports/monthly.flow"  with { monht = 1 } }
        task self { call "p.flow" }
    """)
    proc = flow("validate", tmp_path / "p.flow")
    assert proc.returncode == 1
    assert "E403" in proc.stdout and "did you mean `month`" in proc.stdout
    assert "E404" in proc.stdout  # month's default is null: the call must give it
    assert "E303" in proc.stdout and "call cycle" in proc.stdout


def test_a_changed_child_file_is_validated_again(flow, tmp_path):
    f = project(tmp_path)
    assert flow("validate", f).returncode == 0
    child = tmp_path / "reports" / "monthly.flow"
    child.write_text(child.read_text().replace("month = null", "month = null  year = null"))
    proc = flow("validate", f)
    assert proc.returncode == 1 and "E404" in proc.stdout and "year" in proc.stdout, explain(proc)


def test_a_resume_after_the_parent_was_killed_finishes_the_childs_work_once(flow, pyz, tmp_path):
    """SIGKILL to the parent's whole group mid-call: the child run (a session of its own) ends when its
    output has nowhere to go, or runs on and is waited for; either way the parent's resume resumes that
    child, and its work is done once."""
    write_project(tmp_path / "sub", """
        task slow { sh "sleep 2; echo x >> slow.count; echo x" }
    """, name="child.flow")
    f = write_project(tmp_path, """
        task c { call "sub/child.flow" }
        task after_c { sh "echo {c.slow}" }
    """)
    marker = new_marker()
    proc = spawn_run(pyz, f, env={"FLOW_TEST_MARKER": marker})
    with stopped(proc, marker):
        def child_started():
            runs = tmp_path / ".flow" / "runs"
            return runs.is_dir() and any(p.name.startswith("child-") for p in runs.iterdir())
        assert wait_until(child_started, 20)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, not the child's own session
        proc.communicate()
    proc2, report = run_json(flow, f, "--resume", timeout=60)
    assert proc2.returncode == 0, explain(proc2)
    assert report["tasks"]["after_c"]["result"] == "x"
    assert "resuming an interrupted run" in proc2.stderr
    assert len([p for p in (tmp_path / ".flow" / "runs").iterdir() if p.name.startswith("child-")]) == 1
    assert (tmp_path / "sub" / "slow.count").read_text().count("x") == 1  # done once
