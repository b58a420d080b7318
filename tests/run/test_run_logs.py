"""flow run, end to end: where each attempt's output goes.

A log file is made by an attempt's first byte of output: an attempt that
prints nothing leaves none. A worker process catches its output at the file
descriptor level for its whole life, so these tests check that attempts one
after another on the same worker never see each other's output, that output
is in the log while the attempt still runs, and that a task stopped for its
timeout keeps what it printed.
"""

import json
import time

import pytest
from runkit import explain, run_json, spawn_run, state_runs, stopped, wait_until, write_project

MODULE = {"talk.py": """
    import os, subprocess, sys, time

    def quiet():
        return 1

    def say(name):
        print(f"{name} print", flush=True)
        sys.stderr.write(f"{name} stderr\\n")
        sys.stderr.flush()
        os.write(1, f"{name} fd\\n".encode())
        subprocess.run(["echo", f"{name} child"], check=True)
        return name

    def wait_for(path):
        print("started", flush=True)
        while not os.path.exists(path):
            time.sleep(0.05)
        print("finished")
        return "waited"

    def spawn():
        subprocess.Popen(["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.1; done"])
        return "spawned"

    def nap_and_say(name):
        time.sleep(1.0)
        print(f"{name} after the nap")
        return name

    def hang():
        print("before the timeout", flush=True)
        os.write(2, b"raw bytes before the timeout\\n")
        time.sleep(60)
"""}


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_an_attempt_that_prints_nothing_leaves_no_log_file(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task quiet_py { run talk:quiet }
        task quiet_sh { sh "true" }
        task loud_sh  { sh "echo from sh" }
        task loud_py  { run talk:say  with { name = "loud" } }
    """, MODULE)
    proc, report = run_json(flow, f, "--executor", executor)
    assert proc.returncode == 0, explain(proc)
    (run,) = state_runs(tmp_path)
    names = sorted(p.name for p in (run / "logs").iterdir())
    assert names == ["loud_py.1.log", "loud_sh.1.log"]
    assert (run / "logs" / "loud_sh.1.log").read_text() == "from sh\n"
    logs = flow("logs", report["run_id"], "quiet_py", cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout == "", explain(logs)
    everything = flow("logs", report["run_id"], cwd=tmp_path)
    assert "==> loud_sh (attempt 1) <==" in everything.stdout and "quiet" not in everything.stdout


def test_attempts_one_after_another_on_a_worker_keep_their_own_output(flow, tmp_path):
    names = [f"t{i}" for i in range(12)]
    tasks = "\n".join(f'task {n} {{ run talk:say  with {{ name = "{n}" }} }}' for n in names)
    f = write_project(tmp_path, "pipeline p { concurrency 2 }\n" + tasks + "\n", MODULE)
    proc, report = run_json(flow, f, "--workers", "2")
    assert proc.returncode == 0, explain(proc)
    (run,) = state_runs(tmp_path)
    for n in names:
        lines = (run / "logs" / f"{n}.1.log").read_text().splitlines()
        assert sorted(lines) == sorted(f"{n} {how}" for how in ("print", "stderr", "fd", "child")), (n, lines)


def test_a_running_python_task_s_output_is_in_its_log_before_it_ends(pyz, tmp_path):
    f = write_project(tmp_path, """
        task waiting { run talk:wait_for  with { path = "go" } }
    """, MODULE)
    proc = spawn_run(pyz, f)
    with stopped(proc):
        log = lambda: b"".join(p.read_bytes() for p in tmp_path.glob(".flow/runs/*/logs/waiting.1.log"))
        assert wait_until(lambda: b"started" in log(), timeout=30)
        assert b"finished" not in log()
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert log() == b"started\nfinished\n"


def test_a_child_left_running_writes_to_its_own_attempt_s_log(flow, tmp_path):
    """On one worker, the next attempt does not get the output of a child the previous one left running."""
    f = write_project(tmp_path, """
        pipeline p { concurrency 1 }
        task spawn { run talk:spawn }
        task later { run talk:nap_and_say  with { name = "later" }  after spawn }
    """, MODULE)
    proc, report = run_json(flow, f, "--workers", "1")
    assert proc.returncode == 0, explain(proc)
    (run,) = state_runs(tmp_path)
    assert (run / "logs" / "spawn.1.log").read_text().split("\n")[:6] == [f"tick {i}" for i in range(1, 7)]
    assert (run / "logs" / "later.1.log").read_text() == "later after the nap\n"


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_a_python_task_stopped_by_its_timeout_keeps_what_it_printed(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task slow { run talk:hang  timeout 1s }
    """, MODULE)
    started = time.monotonic()
    proc, report = run_json(flow, f, "--executor", executor)
    assert proc.returncode == 1 and report["tasks"]["slow"]["error"]["type"] == "Timeout", explain(proc)
    assert time.monotonic() - started < 30
    (run,) = state_runs(tmp_path)
    text = (run / "logs" / "slow.1.log").read_text()
    assert "before the timeout\n" in text and "raw bytes before the timeout\n" in text


def test_the_json_report_is_not_mixed_with_task_output(flow, tmp_path):
    f = write_project(tmp_path, """
        task loud_py { run talk:say  with { name = "loud" } }
    """, MODULE)
    proc = flow("run", f, "--json", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout)["tasks"]["loud_py"]["result"] == "loud"
    for how in ("print", "stderr", "fd", "child"):
        assert f"loud {how}" not in proc.stdout + proc.stderr
