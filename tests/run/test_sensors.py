"""Sensors (`wait`), end to end (language reference, section 7): file, sh and run; `every`, `timeout`,
`retry` for checks that fail; no worker held between checks; the `waiting` status; a resume waits again."""

import json
import os
import subprocess
import sys
import time

import pytest
from runkit import explain, journal_records, run_json, state_runs, wait_until, write_project


def later(seconds, *commands):
    """Run shell commands after a delay, in the background (what makes a sensor ready)."""
    return subprocess.Popen(["/bin/sh", "-c", f"sleep {seconds}; " + "; ".join(commands)])


def test_wait_file_is_ready_when_a_file_matches_and_gives_the_sorted_matches(flow, tmp_path):
    f = write_project(tmp_path, """
        task inbox {
            wait    file "incoming/{run.date}/*.csv"
            every   200ms
            timeout 30s
        }
        task count { sh "echo {inbox}" }
    """)
    logical = "2026-11-22T05:00:00+00:00"
    folder = tmp_path / "incoming" / "2026-11-22"
    helper = later(0.8, f"mkdir -p {folder}", f"touch {folder}/b.csv {folder}/a.csv {folder}/skip.txt")
    proc, report = run_json(flow, f, "--logical-date", logical)
    helper.wait()
    assert proc.returncode == 0, explain(proc)
    inbox = report["tasks"]["inbox"]
    assert inbox["status"] == "success"
    assert inbox["result"] == ["incoming/2026-11-22/a.csv", "incoming/2026-11-22/b.csv"]  # relative, as written
    assert inbox["attempts"] == 1  # "not yet" is no failed attempt
    assert inbox["checks"] >= 2
    assert "wait  inbox: no file matches incoming/2026-11-22/*.csv; checking every 200ms" in proc.stderr


def test_wait_sh_is_ready_on_exit_0_with_its_output_as_the_result(flow, tmp_path):
    f = write_project(tmp_path, """
        task ready {
            wait   sh "test -f go && cat go"
            every  100ms
            output json
        }
    """)
    helper = later(0.5, f"echo '{{\"ok\": 1}}' > {tmp_path}/go")
    proc, report = run_json(flow, f)
    helper.wait()
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["ready"]["result"] == {"ok": 1}
    assert report["tasks"]["ready"]["checks"] >= 1


def test_wait_run_is_ready_when_the_callable_returns_a_true_value(flow, tmp_path):
    f = write_project(tmp_path, """
        task ready {
            wait  run sensors:count_files
            with  { folder = "drop"  at_least = 2 }
            every 100ms
        }
    """, {"sensors.py": """
        import os

        def count_files(folder, at_least):
            names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            return names if len(names) >= at_least else []
    """})
    helper = later(0.3, f"mkdir -p {tmp_path}/drop", f"touch {tmp_path}/drop/x", "sleep 0.3",
                   f"touch {tmp_path}/drop/y")
    proc, report = run_json(flow, f)
    helper.wait()
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["ready"]["result"] == ["x", "y"]


@pytest.mark.parametrize("action", ['file "never/*.csv"', 'sh "exit 1"', "run sensors:never"])
def test_a_wait_past_its_timeout_fails_with_timeout(flow, tmp_path, action):
    f = write_project(tmp_path, f"""
        task never {{
            wait    {action}
            every   300ms
            timeout 1s
        }}
        task downstream {{ sh "echo no"  after never }}
    """, {"sensors.py": "def never():\n    return None\n"})
    started = time.monotonic()
    proc, report = run_json(flow, f)
    took = time.monotonic() - started
    assert proc.returncode == 1, explain(proc)
    never = report["tasks"]["never"]
    assert never["status"] == "failed"
    assert never["error"]["type"] == "Timeout"
    assert "check" in never["error"]["message"]
    assert never["attempts"] == 1
    assert 3 <= never["checks"] <= 5
    assert report["tasks"]["downstream"]["status"] == "skipped"
    assert took < 15


def test_the_timeout_stops_a_check_that_hangs(flow, tmp_path):
    f = write_project(tmp_path, """
        task hang {
            wait    sh "sleep 30"
            timeout 1s
        }
    """)
    started = time.monotonic()
    proc, report = run_json(flow, f)
    assert time.monotonic() - started < 10
    assert report["tasks"]["hang"]["error"]["type"] == "Timeout"


def test_retry_applies_to_checks_that_fail_with_an_error_not_to_not_yet(flow, tmp_path):
    f = write_project(tmp_path, """
        task flaky {
            wait  run sensors:flaky
            every 100ms
            retry 2
        }
        task broken {
            wait  run sensors:broken
            every 100ms
            retry 1
        }
    """, {"sensors.py": """
        import os

        def flaky():
            n = int(open("count").read()) if os.path.exists("count") else 0
            open("count", "w").write(str(n + 1))
            if n == 1:
                raise ConnectionError("the database blinked")
            return n >= 3 and n

        def broken():
            raise ValueError("always")
    """})
    proc, report = run_json(flow, f)
    flaky, broken = report["tasks"]["flaky"], report["tasks"]["broken"]
    assert flaky["status"] == "success", explain(proc)
    assert flaky["attempts"] == 2  # the error spent one retry; the "not yet"s none
    assert flaky["result"] == 3
    assert broken["status"] == "failed" and broken["attempts"] == 2
    assert broken["error"]["type"] == "ValueError"


def test_between_checks_no_worker_is_held(flow, tmp_path):
    """concurrency 1: a waiting sensor lets the other tasks run between its checks."""
    f = write_project(tmp_path, """
        pipeline one { concurrency 1 }
        task sensor {
            wait  file "go"
            every 200ms
            timeout 20s
        }
        task worker {
            foreach i in [1, 2, 3, 4]
            sh "sleep 0.2; date +%s.%N >> ran.txt"
        }
        task last { sh "touch go"  after worker }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["sensor"]["status"] == "success"
    assert len((tmp_path / "ran.txt").read_text().split()) == 4


def test_a_waiting_task_shows_as_waiting_and_a_resume_waits_again(flow, pyz, tmp_path):
    f = write_project(tmp_path, """
        task sensor {
            wait  file "go"
            every 200ms
        }
        task after_it { sh "echo done"  after sensor }
    """)
    proc = subprocess.Popen([sys.executable, str(pyz), "run", str(f)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        def waiting():
            out = flow("status", "--file", f, "--json", cwd=tmp_path)
            if out.returncode != 0:
                return False
            task = json.loads(out.stdout)["tasks"].get("sensor", {})
            return task.get("status") == "waiting" and task.get("checks", 0) >= 2
        assert wait_until(waiting, 20), flow("status", "--file", f, cwd=tmp_path).stdout
        text = flow("status", "--file", f, cwd=tmp_path).stdout
        assert "waiting" in text
        proc.send_signal(2)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    run_dir = state_runs(tmp_path)[0]
    states = [r for r in journal_records(run_dir / "journal.msgpack") if r.get("task") == "sensor"]
    assert states[-1]["e"] == "end" and states[-1]["status"] == "interrupted"
    status = json.loads(flow("status", "--file", f, "--json", cwd=tmp_path).stdout)
    assert status["tasks"]["sensor"]["status"] == "pending"
    (tmp_path / "go").write_text("")
    proc2, report = run_json(flow, f, "--resume")
    assert proc2.returncode == 0, explain(proc2)
    assert report["tasks"]["sensor"]["status"] == "success"
    assert report["tasks"]["after_it"]["status"] == "success"


def test_sensors_on_the_thread_and_inline_executors(flow, tmp_path):
    for executor in ("thread", "inline"):
        folder = tmp_path / executor
        f = write_project(folder, """
            task a { wait file "go"  every 100ms  timeout 20s }
            task b { wait run sensors:ready  every 100ms  timeout 20s }
        """, {"sensors.py": "import os\n\ndef ready():\n    return os.path.exists('go') and 'yes'\n"})
        helper = later(0.5, f"touch {folder}/go")
        proc, report = run_json(flow, f, "--executor", executor)
        helper.wait()
        assert proc.returncode == 0, explain(proc)
        assert report["tasks"]["a"]["result"] == ["go"]
        assert report["tasks"]["b"]["result"] == "yes"


def test_validate_checks_every_and_the_callable_of_wait_run(flow, tmp_path):
    f = write_project(tmp_path, """
        task a { wait run sensors:missing  every 0s }
        task b { sh "true"  every 1m }
        task c { wait run sensors:ready  with { nope = 1 } }
    """, {"sensors.py": "def ready():\n    return True\n"})
    proc = flow("validate", f)
    assert proc.returncode == 1
    assert "E402" in proc.stdout and "E102" in proc.stdout and "W103" in proc.stdout and "E403" in proc.stdout
    assert os.path.basename(str(f)) in proc.stdout
