"""flow run, end to end: a task past its timeout is killed (with what it started), and
a pipeline timeout stops the whole run."""

import time

import pytest
from runkit import explain, kill_marked, marked_processes, new_marker, run_json, wait_until, write_project

SLEEPY = {
    "sleepy.py": """
        import time

        def sleep_then_write(path, secs):
            time.sleep(secs)
            with open(path, "w") as f:
                f.write("too late")
            return "finished"

        def child_then_write(path, secs):
            import subprocess
            subprocess.run(["sh", "-c", f"sleep {secs}; touch {path}"])
            return "finished"
    """,
}
SLEEP = 1.5  # what every task would take; its timeout is far shorter


def test_timed_out_attempts_are_really_stopped(flow, tmp_path):
    marker = new_marker()
    f = write_project(tmp_path, f"""
        pipeline timeouts {{ concurrency 6 }}
        task py {{ run sleepy:sleep_then_write  with {{ path = "py.done"  secs = {SLEEP} }}  timeout 300ms }}
        task py_child {{
            run sleepy:child_then_write  with {{ path = "py_child.done"  secs = {SLEEP} }}  timeout 300ms
        }}
        task shell {{ sh "sleep {SLEEP}; touch shell.done"  timeout 300ms }}
        task prog {{ exec ["sh", "-c", "sleep {SLEEP}; touch prog.done"]  timeout 300ms }}
        task grandchild {{ sh "sleep {SLEEP} & sleep {SLEEP}; touch grandchild.done"  timeout 300ms }}
        task exec_grandchild {{
            exec ["sh", "-c", "(sleep {SLEEP}; touch exec_grandchild.done) & sleep {SLEEP}"]
            timeout 300ms
        }}
    """, SLEEPY)
    t0 = time.time()
    try:
        proc, report = run_json(flow, f, env={"FLOW_E2E_MARK": marker})
        assert proc.returncode == 1, explain(proc)
        names = ("py", "py_child", "shell", "prog", "grandchild", "exec_grandchild")
        for name in names:
            t = report["tasks"][name]
            assert (t["status"], t["attempts"]) == ("failed", 1), (name, t)
            assert t["error"]["type"] == "Timeout", (name, t["error"])
            assert t["result"] is None
        assert report["duration_s"] < SLEEP - 0.3, "the run waited for the sleeping tasks"
        # Nothing from the run outlives it: no worker, shell or grandchild left.
        assert wait_until(lambda: not marked_processes(marker), 0.5), marked_processes(marker)
        # Wait past the sleeps: no task ever got to write its file.
        time.sleep(max(0.0, t0 + SLEEP + 0.4 - time.time()))
        assert [p.name for p in tmp_path.glob("*.done")] == []
    finally:
        kill_marked(marker)


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_timed_out_commands_are_really_stopped_by_in_process_executors(flow, tmp_path, executor):
    """A thread's timeout reaches its command's loop within a beat; the run may end first: then the
    reaper kills the group when the backend closes."""
    marker = new_marker()
    f = write_project(tmp_path, f"""
        pipeline timeouts {{ concurrency 4 }}
        task shell {{ sh "sleep {SLEEP}; touch shell.done"  timeout 300ms }}
        task prog {{ exec ["sh", "-c", "sleep {SLEEP}; touch prog.done"]  timeout 300ms }}
        task grandchild {{ sh "sleep {SLEEP} & sleep {SLEEP}; touch grandchild.done"  timeout 300ms }}
    """)
    t0 = time.time()
    try:
        proc, report = run_json(flow, f, "--executor", executor, env={"FLOW_E2E_MARK": marker})
        assert proc.returncode == 1, explain(proc)
        for name in ("shell", "prog", "grandchild"):
            t = report["tasks"][name]
            assert (t["status"], t["error"]["type"]) == ("failed", "Timeout"), (name, t)
        assert wait_until(lambda: not marked_processes(marker), 0.5), marked_processes(marker)
        time.sleep(max(0.0, t0 + SLEEP + 0.4 - time.time()))
        assert [p.name for p in tmp_path.glob("*.done")] == []
    finally:
        kill_marked(marker)


def test_a_timed_out_attempt_is_retried(flow, tmp_path):
    f = write_project(tmp_path, """
        task t { sh "echo x >> t.attempts; sleep 2; touch t.done"  timeout 200ms  retry 1 }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    t = report["tasks"]["t"]
    assert (t["status"], t["attempts"], t["error"]["type"]) == ("failed", 2, "Timeout")
    assert (tmp_path / "t.attempts").read_text().split() == ["x", "x"]


def test_pipeline_timeout_stops_the_whole_run(flow, tmp_path):
    marker = new_marker()
    long = 3 * SLEEP  # far past the run's timeout
    f = write_project(tmp_path, f"""
        pipeline limited {{
            timeout 400ms
            concurrency 3
        }}
        task quick {{ sh "touch quick.done" }}
        task slow_sh {{ sh "sleep {long}; touch slow_sh.done" }}
        task slow_py {{ run sleepy:sleep_then_write  with {{ path = "slow_py.done"  secs = {long} }} }}
        task later {{ sh "touch later.done"  after slow_sh }}
    """, SLEEPY)
    t0 = time.time()
    try:
        proc, report = run_json(flow, f, env={"FLOW_E2E_MARK": marker})
        elapsed = time.time() - t0
        assert proc.returncode == 1, explain(proc)
        assert report["status"] == "failed"
        assert "timeout" in report.get("reason", ""), report.get("reason")
        assert elapsed < long - 1, f"flow run took {elapsed:.2f}s: the run's timeout did not stop it"
        tasks = report["tasks"]
        assert tasks["quick"]["status"] == "success"
        for name in ("slow_sh", "slow_py"):
            assert tasks[name]["status"] not in ("success", "running"), tasks[name]
            assert tasks[name]["error"] is not None
        assert tasks["later"]["attempts"] == 0
        assert tasks["later"]["status"] != "success"
        # Every process of the run is gone, so no file can appear later.
        assert wait_until(lambda: not marked_processes(marker), 0.5), marked_processes(marker)
        assert sorted(p.name for p in tmp_path.glob("*.done")) == ["quick.done"]
    finally:
        kill_marked(marker)
