"""flow run, end to end, for the promises the run machine keeps that only real processes show.

Hooks obey the run's timeout; a task that raises KeyboardInterrupt fails (the
run does not think it was interrupted); a foreach with no items that is ready
at the start releases its dependents once on every executor and the run
exits; print() in a Python task reaches its log line by line, in order with
stderr, while the task runs. The decisions themselves are tested in-process
(test_machine.py, test_crash_cuts.py).
"""

from __future__ import annotations

import json
import time

import pytest
from runkit import explain, run_json, spawn_run, state_runs, stopped, wait_until, write_project

from flowdsl.store import journal


@pytest.mark.parametrize("hook", ['on finish sh "sleep 20"', "on success run hooks:slow"])
def test_a_hook_is_killed_at_the_runs_timeout(flow, tmp_path, hook):
    f = write_project(tmp_path, f"""
        pipeline p {{ timeout 2s  {hook} }}
        task a {{ sh "echo a" }}
    """, {"hooks.py": "import time\n\ndef slow(report):\n    time.sleep(20)\n"})
    t0 = time.monotonic()
    proc, report = run_json(flow, f, timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 0, explain(proc)  # the tasks succeeded; the hook failed on its own
    assert took < 8, f"the hook ran past the run's timeout: {took:.1f}s"
    (h,) = report["hooks"]
    assert h["status"] == "failed" and h["error"]["type"] == "Timeout", h


def test_failure_hooks_still_run_after_the_run_timed_out(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { timeout 1s  on failure sh "echo alerted > alert.txt" }
        task a { sh "sleep 30" }
    """)
    proc, report = run_json(flow, f, timeout=40)
    assert proc.returncode == 1, explain(proc)
    assert report["status"] == "failed" and "timeout" in report["reason"]
    assert (tmp_path / "alert.txt").read_text().strip() == "alerted"
    assert report["hooks"][0]["status"] == "success"


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_a_task_raising_keyboard_interrupt_fails(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task k { run ki:boom }
        task after { sh "echo after" after k }
    """, {"ki.py": "def boom():\n    raise KeyboardInterrupt('from the task')\n"})
    proc, report = run_json(flow, f, "--executor", executor)
    assert proc.returncode == 1, explain(proc)
    assert report["status"] == "failed"
    assert report["tasks"]["k"]["status"] == "failed"
    assert report["tasks"]["k"]["error"]["type"] == "KeyboardInterrupt"
    assert report["tasks"]["after"]["status"] == "skipped"


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_an_empty_foreach_at_the_start_releases_its_dependents_once(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        pipeline p { params { none = [] } }
        task e1 { foreach x in []  sh "echo {x}" }
        task e2 { foreach x in params.none  sh "echo {x}" }
        task d  { sh "echo d >> d.txt"  after e1, e2 }
        task z  { sh "exit 3"  after d }
        task w  { sh "echo w >> w.txt"  after z  when failure }
    """)
    for _ in range(4):  # a double release once hung one run in forty
        proc, report = run_json(flow, f, "--executor", executor, timeout=30)
        assert proc.returncode == 1, explain(proc)
        assert proc.stdout.count('"run_id"') == 1
        assert proc.stderr.count("skip") == 0, proc.stderr
        assert report["tasks"]["d"]["status"] == "success" and report["tasks"]["w"]["status"] == "success"
    assert (tmp_path / "d.txt").read_text().split() == ["d"] * 4
    assert (tmp_path / "w.txt").read_text().split() == ["w"] * 4
    for run in state_runs(tmp_path):
        starts = [r["task"] for r in journal.read(str(run / "journal.msgpack")) if r["e"] == "start"]
        assert sorted(starts) == ["d", "w", "z"], starts


def test_print_reaches_the_log_live_and_in_order(pyz, tmp_path):
    f = write_project(tmp_path, """
        task talk { run talk:talk }
    """, {"talk.py": """
        import os, sys, time

        def talk():
            print("one")
            sys.stderr.write("two\\n")
            print("three")
            while not os.path.exists("go"):
                time.sleep(0.02)
            print("four")
            return 1
    """})
    proc = spawn_run(pyz, f)
    with stopped(proc):
        def log_text():
            runs = state_runs(tmp_path)
            path = runs[0] / "logs" / "talk.1.log" if runs else None
            return path.read_text() if path and path.exists() else ""

        assert wait_until(lambda: "three" in log_text(), 20), log_text()
        assert log_text().split() == ["one", "two", "three"]  # live, before the task ends, in order
        (tmp_path / "go").write_text("")
        proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert log_text().split() == ["one", "two", "three", "four"]


def test_a_resumed_successful_run_fires_no_hook_again(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { on success sh "echo s >> hooks.txt"  on finish sh "echo f >> hooks.txt" }
        task a { sh "echo a >> ran.txt" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    proc, again = run_json(flow, f, "--resume")
    assert proc.returncode == 0 and again["status"] == "success", explain(proc)
    assert (tmp_path / "hooks.txt").read_text().split() == ["s", "f"]
    assert (tmp_path / "ran.txt").read_text().split() == ["a"]
    assert "hooks ran then" in proc.stderr


def test_a_kill_between_the_resume_record_and_the_keeps_loses_nothing(flow, pyz, tmp_path):
    """The session is killed right after it wrote `resume` (before any `keep`): nothing that succeeded runs again."""
    f = write_project(tmp_path, """
        task many { foreach i in [1, 2, 3, 4, 5, 6, 7, 8]  sh "echo {i} >> ran.txt" }
        task bad  { sh "test -e fixed"  after many }
    """)
    proc, _ = run_json(flow, f)
    assert proc.returncode == 1
    (run,) = state_runs(tmp_path)
    path = run / "journal.msgpack"
    # a session that got as far as its `resume` record and died (as a kill -9 leaves it)
    size = path.stat().st_size
    (run / "snapshot.json").unlink()
    writer = journal.Writer(str(path), create=False)
    writer.append({"e": "resume", "t": time.time(), "pid": 1, "tasks": ["many", "bad"], "forced": []})
    writer.close()
    assert path.stat().st_size > size
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert sorted((tmp_path / "ran.txt").read_text().split()) == [str(i) for i in range(1, 9)]
    assert json.dumps(report["tasks"]["many[0]"]["status"]) == '"success"'


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_a_python_task_skips_itself_with_flowdsl_skip(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task each { foreach i in [1, 2, 3]  run sk:maybe  with { n = i } }
        task sum  { run sk:total  with { values = each } }
        task one  { run sk:maybe  with { n = 5 } }
        task next { sh "echo next"  after one }
    """, {"sk.py": """
        import flowdsl

        def maybe(n):
            if n % 2:
                raise flowdsl.Skip(f"{n} is odd")
            return n

        def total(values):
            return [v for v in values if v is not None]
    """})
    proc, report = run_json(flow, f, "--executor", executor)
    assert proc.returncode == 0, explain(proc)
    t = report["tasks"]
    assert t["each"]["status"] == "success" and t["each"]["result"] == [None, 2, None]
    assert (t["each[0]"]["status"], t["each[0]"]["reason"]) == ("skipped", "1 is odd")
    assert t["sum"]["result"] == [2]
    assert t["one"]["status"] == "skipped" and t["next"]["status"] == "skipped"


def test_quiet_says_nothing_of_a_failure_a_retry_mended(flow, tmp_path):
    f = write_project(tmp_path, """
        task flaky { sh "test -e once || {{ touch once; exit 1; }}"  retry 2 }
    """)
    proc = flow("run", f, "-q", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()] and "success" in proc.stdout
    assert "FAIL" not in proc.stdout + proc.stderr
    (tmp_path / "once").unlink()
    loud = flow("run", f, cwd=tmp_path)
    assert "run " in loud.stdout and ": 1 task, logs in" in loud.stdout and "FAIL  flaky" in loud.stdout


def test_hooks_logs_are_numbered_per_hook_shown_by_logs_and_by_verbose(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { on failure sh "echo alerting"  on finish sh "echo finishing" }
        task bad { sh "exit 1" }
    """)
    proc = flow("run", f, "-v", cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    assert "on_failure | alerting" in proc.stdout and "on_finish | finishing" in proc.stdout
    (run,) = state_runs(tmp_path)
    assert sorted(p.name for p in (run / "logs").glob("on_*")) == ["on_failure.1.log", "on_finish.1.log"]
    logs = flow("logs", run.name, "on_failure", cwd=tmp_path)
    assert logs.returncode == 0 and logs.stdout.strip() == "alerting", explain(logs)
    flow("run", f, "--resume", cwd=tmp_path)  # the hooks fire again: their logs come after the first
    assert sorted(p.name for p in (run / "logs").glob("on_*")) == [
        "on_failure.1.log", "on_failure.2.log", "on_finish.1.log", "on_finish.2.log"]
