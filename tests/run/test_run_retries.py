"""flow run, end to end: retries, their delays (really waited) and the `on` filter.

The delays' arithmetic (backoff, max_delay, jitter) is tested in-process by test_machine.py.
"""

from runkit import explain, gaps, run_json, times, write_project

FLAKY = {
    "flaky.py": """
        import builtins, time
        from errpkg import errors

        def flaky(log, fails, exc="ConnectionError"):
            # One line per attempt, written by the task itself: its own clock, not the runner's.
            with open(log, "a") as f:
                f.write(repr(time.time()) + "\\n")
            with open(log) as f:
                n = len(f.read().split())
            print(f"attempt {n}")
            if n <= fails:
                cls = getattr(errors, exc, None) or getattr(builtins, exc)
                raise cls(f"attempt {n} of {log} failed")
            return n
    """,
    "errpkg/__init__.py": "",
    "errpkg/errors.py": """
        class Busy(Exception):
            pass

        class Other(Exception):
            pass

        class Boom(ConnectionError):
            pass
    """,
}


def test_retries_are_counted_and_backoff_is_really_waited(flow, tmp_path):
    f = write_project(tmp_path, """
        task t {
            run   flaky:flaky
            with  { log = "t.times"  fails = 3 }
            retry 3 delay 100ms backoff 2
        }
    """, FLAKY)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    t = report["tasks"]["t"]
    assert (t["status"], t["attempts"], t["result"], t["error"]) == ("success", 4, 4, None)
    g = gaps(times(tmp_path / "t.times"))
    assert len(g) == 3
    for i, (gap, want) in enumerate(zip(g, [0.1, 0.2, 0.4])):  # delay * backoff^(n-1)
        assert gap >= want - 0.005, f"retry {i + 1} started {gap:.3f}s after the failure, wanted >= {want}s"
        assert gap < want + 1.5, f"retry {i + 1} waited {gap:.3f}s, far more than {want}s"
    # One log file per attempt.
    (run,) = list((tmp_path / ".flow" / "runs").iterdir())
    assert sorted(p.name for p in (run / "logs").iterdir()) == [f"t.{n}.log" for n in (1, 2, 3, 4)]


def test_retries_exhausted_fail_with_the_last_error(flow, tmp_path):
    f = write_project(tmp_path, """
        task t { run flaky:flaky  with { log = "t.times"  fails = 99 }  retry 2 }
        task after_t { sh "touch after_t.ran"  after t }
    """, FLAKY)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert report["status"] == "failed"
    t = report["tasks"]["t"]
    assert (t["status"], t["attempts"]) == ("failed", 3)
    assert t["error"]["type"] == "ConnectionError"
    assert "attempt 3 of t.times failed" in t["error"]["message"]
    assert "Traceback" in t["error"]["traceback"]
    assert len(times(tmp_path / "t.times")) == 3
    # Without delay a retry starts at once (default delay 0).
    assert max(gaps(times(tmp_path / "t.times"))) < 1.0
    assert report["tasks"]["after_t"]["status"] == "skipped"
    assert not (tmp_path / "after_t.ran").exists()


def test_retry_on_filter(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline filters { concurrency 4 }
        task by_name {
            run flaky:flaky  with { log = "by_name.times"  fails = 1  exc = "ConnectionError" }
            retry 2 on ConnectionError
        }
        task by_base_name {
            run flaky:flaky  with { log = "by_base_name.times"  fails = 1  exc = "Boom" }
            retry 2 on OSError
        }
        task by_qualified_name {
            run flaky:flaky  with { log = "by_qualified_name.times"  fails = 1  exc = "Busy" }
            retry 2 on TimeoutError, errpkg.errors.Busy
        }
        task by_qualified_base {
            run flaky:flaky  with { log = "by_qualified_base.times"  fails = 1  exc = "Boom" }
            retry 2 on errpkg.errors.Boom
        }
        task not_matching {
            run flaky:flaky  with { log = "not_matching.times"  fails = 1  exc = "ValueError" }
            retry 2 on ConnectionError
        }
        task not_matching_qualified {
            run flaky:flaky  with { log = "not_matching_qualified.times"  fails = 1  exc = "Other" }
            retry 2 on errpkg.errors.Busy
        }
        task shell {
            sh "echo x >> shell.times; test $(wc -l < shell.times) -ge 2"
            retry 2
        }
    """, FLAKY)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    for name in ("by_name", "by_base_name", "by_qualified_name", "by_qualified_base", "shell"):
        assert (tasks[name]["status"], tasks[name]["attempts"]) == ("success", 2), (name, tasks[name])
        assert len((tmp_path / f"{name}.times").read_text().split()) == 2, name
    for name, exc in (("not_matching", "ValueError"), ("not_matching_qualified", "Other")):
        assert (tasks[name]["status"], tasks[name]["attempts"]) == ("failed", 1), (name, tasks[name])
        assert tasks[name]["error"]["type"] == exc
        assert len((tmp_path / f"{name}.times").read_text().split()) == 1, f"{name} was retried"


def test_a_task_statement_replaces_the_default_whole(flow, tmp_path):
    # The task's `retry 3` does not keep the default's `delay 400ms`; the default applies elsewhere.
    f = write_project(tmp_path / "project", """
        pipeline defaults_test {
            pythonpath "src"
            defaults { retry 1 delay 400ms  timeout 300ms }
        }
        include "more/extra.flow"
        task own { run errpkg_src.flaky:flaky  with { log = "own.times"  fails = 2 }  retry 3 }
        task inherited { run errpkg_src.flaky:flaky  with { log = "inherited.times"  fails = 1 } }
    """, {"src/errpkg_src/__init__.py": "", "src/errpkg_src/flaky.py": FLAKY["flaky.py"].replace(
        "from errpkg import errors", "errors = None"),
        "more/extra.flow": """
        task included_pwd { sh "pwd" }
        task included_slow { sh "sleep 2; touch included_slow.done" }
    """}, name="main.flow")
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    folder = tmp_path / "project"
    assert (tasks["own"]["status"], tasks["own"]["attempts"]) == ("success", 3)
    assert max(gaps(times(folder / "own.times"))) < 0.3, "the default's delay leaked into the task's retry"
    assert (tasks["inherited"]["status"], tasks["inherited"]["attempts"]) == ("success", 2)
    assert gaps(times(folder / "inherited.times"))[0] >= 0.395
    # An included file's tasks take the including pipeline's defaults and run in its folder.
    assert tasks["included_pwd"]["result"] == str(folder)
    slow = tasks["included_slow"]
    assert (slow["status"], slow["attempts"], slow["error"]["type"]) == ("failed", 2, "Timeout")
