"""flow run, end to end: crashed workers, a SIGKILLed runner, SIGINT and SIGTERM."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from runkit import (
    explain,
    journal_records,
    kill_marked,
    marked_processes,
    new_marker,
    run_json,
    spawn_run,
    state_runs,
    stopped,
    wait_until,
    write_project,
)

CRASHY = {
    "crashy.py": """
        import ctypes, os, time

        def exit3():
            os._exit(3)

        def segfault():
            ctypes.string_at(0)

        def crash_once(log):
            with open(log, "a") as f:
                f.write("x\\n")
            with open(log) as f:
                if len(f.read().split()) == 1:
                    os._exit(9)
            return "second time lucky"

        def fine(path):
            time.sleep(0.2)
            with open(path, "w") as f:
                f.write("ok")
            return "fine"
    """,
}


def test_a_crashed_worker_fails_only_its_task(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline crashes { concurrency 3 }
        task dies { run crashy:exit3 }
        task segv { run crashy:segfault }
        task ok { run crashy:fine  with { path = "ok.out" } }
        task after_ok { run crashy:fine  with { path = "after_ok.out" }  after ok }
        task after_dies { sh "touch after_dies.out"  after dies }
        task cleanup { run crashy:fine  with { path = "cleanup.out" }  after dies, segv  when always }
        task retried { run crashy:crash_once  with { log = "retried.log" }  retry 1 }
    """, CRASHY)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr
    tasks = report["tasks"]
    dies, segv = tasks["dies"], tasks["segv"]
    assert (dies["status"], dies["attempts"]) == ("failed", 1)
    assert "exit" in dies["error"]["message"] and "3" in dies["error"]["message"], dies["error"]
    assert (segv["status"], segv["attempts"]) == ("failed", 1)
    assert "SIGSEGV" in segv["error"]["message"] or "signal 11" in segv["error"]["message"], segv["error"]
    # The other branches went on, on replacement workers.
    for name in ("ok", "after_ok", "cleanup"):
        assert (tasks[name]["status"], tasks[name]["result"]) == ("success", "fine"), (name, tasks[name])
        assert (tmp_path / f"{name}.out").read_text() == "ok"
    assert tasks["after_dies"]["status"] == "skipped" and tasks["after_dies"]["attempts"] == 0
    assert not (tmp_path / "after_dies.out").exists()
    # A crash is a failure like any other: retry applies.
    assert (tasks["retried"]["status"], tasks["retried"]["attempts"]) == ("success", 2)
    assert tasks["retried"]["result"] == "second time lucky"


SLOW = {
    "slow.py": """
        import subprocess, time

        def sleep_a_while(tag, secs):
            open(tag + ".started", "w").close()
            time.sleep(secs)
            open(tag + ".finished", "w").close()

        def with_child(tag):
            open(tag + ".started", "w").close()
            subprocess.run(["sleep", "31.5"])
            open(tag + ".finished", "w").close()

        class Slow:
            def __init__(self, tag):
                self.tag = tag

            def event(self, what):
                with open(self.tag + ".events", "a") as f:
                    f.write(what + "\\n")

            def on_create(self):
                self.event("on_create")

            def run(self):
                open(self.tag + ".started", "w").close()
                time.sleep(30)
                self.event("run finished")
                open(self.tag + ".finished", "w").close()

            def on_success(self):
                self.event("on_success")

            def on_failure(self, error):
                self.event("on_failure")

            def on_abort(self):
                self.event("on_abort")

            def on_destroy(self):
                self.event("on_destroy")
    """,
}


def _started(folder: Path, tags) -> bool:
    return all((folder / f"{t}.started").exists() for t in tags)


def test_sigkill_of_the_runner_leaves_no_process_behind(pyz, tmp_path):
    marker = new_marker()
    f = write_project(tmp_path, """
        pipeline killed { concurrency 4 }
        task py { run slow:sleep_a_while  with { tag = "py"  secs = 1.0 } }
        task shell { sh "touch shell.started; sleep 31.5; touch shell.finished" }
        task prog { exec ["sh", "-c", "touch prog.started; sleep 31.5 & sleep 31.5; touch prog.finished"] }
        task downstream { sh "touch downstream.finished"  after py }
    """, SLOW)
    proc = spawn_run(pyz, f, env={"FLOW_E2E_MARK": marker})
    try:
        assert wait_until(lambda: _started(tmp_path, ("py", "shell", "prog")), 20), proc.poll()
        t_started = time.time()
        assert len(marked_processes(marker)) >= 6  # runner, 3 workers, shells, sleeps
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        t_killed = time.monotonic()
        gone = wait_until(lambda: not marked_processes(marker), 1.5)
        assert gone, f"still alive {time.monotonic() - t_killed:.1f}s after SIGKILL: {marked_processes(marker)}"
        # The python task would have written its file 1s after it started.
        time.sleep(max(0.0, t_started + 1.4 - time.time()))
        assert sorted(p.name for p in tmp_path.glob("*.finished")) == []
    finally:
        kill_marked(marker)
        proc.kill()
        proc.communicate()


def test_sigkill_of_the_runner_kills_children_of_python_tasks(pyz, tmp_path):
    marker = new_marker()
    f = write_project(tmp_path, """
        task py { run slow:with_child  with { tag = "py" } }
    """, SLOW)
    proc = spawn_run(pyz, f, env={"FLOW_E2E_MARK": marker})
    try:
        assert wait_until(lambda: _started(tmp_path, ("py",)) and any(
            "sleep 31.5" in cmd for _, cmd in marked_processes(marker)), 20)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        gone = wait_until(lambda: not marked_processes(marker), 1.5)
        assert gone, f"still alive after SIGKILL: {marked_processes(marker)}"
    finally:
        kill_marked(marker)
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupt_stops_the_run_and_calls_on_abort(pyz, tmp_path, signame):
    marker = new_marker()
    f = write_project(tmp_path, """
        pipeline stopped { concurrency 3 }
        task cls { run slow:Slow  with { tag = "cls" } }
        task shell { sh "touch shell.started; sleep 31.5; touch shell.finished" }
        task later { sh "touch later.finished"  after cls }
    """, SLOW)
    proc = spawn_run(pyz, f, "--json", env={"FLOW_E2E_MARK": marker})
    with stopped(proc, marker):
        assert wait_until(lambda: _started(tmp_path, ("cls", "shell")), 20), proc.poll()
        os.kill(proc.pid, getattr(signal, signame))
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
        assert "Traceback" not in err
        report = json.loads(out)
        assert report["status"] == "interrupted"
        assert report["tasks"]["later"]["attempts"] == 0
        for name in ("cls", "shell"):
            assert report["tasks"][name]["status"] not in ("success", "running"), report["tasks"][name]
        # The class's lifecycle: on_abort ran (and on_destroy, always), not on_success.
        events = (tmp_path / "cls.events").read_text().split("\n")
        assert events[:3] == ["on_create", "on_abort", "on_destroy"], events
        # The state folder says so too.
        (run,) = state_runs(tmp_path)
        saved = json.loads((run / "report.json").read_text())
        assert saved["status"] == "interrupted" and saved["run_id"] == report["run_id"]
        records = journal_records(run / "journal.msgpack")
        assert records[-1]["e"] == "done" and records[-1]["status"] == "interrupted"
        # Nothing left running, nothing finished later.
        assert wait_until(lambda: not marked_processes(marker), 1.0), marked_processes(marker)
        assert sorted(p.name for p in tmp_path.glob("*.finished")) == []


def test_interrupt_stops_an_inline_attempt(pyz, tmp_path):
    f = write_project(tmp_path, """
        task cls { run slow:Slow  with { tag = "cls" } }
    """, {"slow.py": SLOW["slow.py"].replace("time.sleep(30)", "time.sleep(2)")})
    proc = spawn_run(pyz, f, "--json", "--executor", "inline")
    with stopped(proc):
        assert wait_until(lambda: _started(tmp_path, ("cls",)), 20), proc.poll()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
        assert not (tmp_path / "cls.finished").exists(), "the attempt ran to its end"
        assert "on_abort" in (tmp_path / "cls.events").read_text().split("\n")


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_sigkill_of_the_runner_stops_shell_tasks_of_in_process_executors(pyz, tmp_path, executor):
    marker = new_marker()
    f = write_project(tmp_path, """
        task shell { sh "touch shell.started; sleep 31.5; touch shell.finished" }
    """)
    proc = spawn_run(pyz, f, "--executor", executor, env={"FLOW_E2E_MARK": marker})
    try:
        assert wait_until(lambda: _started(tmp_path, ("shell",)), 20), proc.poll()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        gone = wait_until(lambda: not marked_processes(marker), 1.5)
        assert gone, f"still alive after SIGKILL: {marked_processes(marker)}"
    finally:
        kill_marked(marker)
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_interrupt_stops_shell_tasks_of_in_process_executors(pyz, tmp_path, executor):
    marker = new_marker()
    f = write_project(tmp_path, """
        task shell { sh "touch shell.started; sleep 2.5; touch shell.finished" }
    """)
    proc = spawn_run(pyz, f, "--json", "--executor", executor, env={"FLOW_E2E_MARK": marker})
    with stopped(proc, marker):
        assert wait_until(lambda: _started(tmp_path, ("shell",)), 20), proc.poll()
        started = time.time()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 130, f"exit {proc.returncode}\n{out}\n{err}"
        time.sleep(max(0.0, started + 2.8 - time.time()))
        assert not (tmp_path / "shell.finished").exists(), "the shell command was not stopped"
        assert not marked_processes(marker)
