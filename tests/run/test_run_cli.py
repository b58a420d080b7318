"""flow run, end to end: the command line. Params, targets, usage errors, hooks, run
values, the working folder, executors, -v, --dry-run and the state folder."""

import json
import re
import stat
import time

import pytest
from runkit import explain, journal_records, run_json, spawn_run, state_runs, stopped, write_project

SHOW = {
    "show.py": """
        import os

        def types(**kw):
            return {k: [type(v).__name__, v] for k, v in kw.items()}

        def values(**kw):
            kw["logical_date_type"] = type(kw["logical_date"]).__name__
            kw["logical_date"] = kw["logical_date"].isoformat()
            return kw

        def cwd():
            return os.getcwd()

        def touch(path):
            open(path, "w").close()
            return path
    """,
}

PARAMS = """
    pipeline params_test {
        params {
            n = 1
            ratio = 0.5
            items = []
            quoted = "default"
            word = "default"
            wait = 1s
            flag = false
            nothing = null
            m = {}
        }
    }
    task show {
        run show:types
        with { n = params.n  ratio = params.ratio  items = params.items  quoted = params.quoted
               word = params.word  wait = params.wait  flag = params.flag  nothing = params.nothing  m = params.m }
    }
"""


def test_params_are_read_as_flow_literals(flow, tmp_path):
    f = write_project(tmp_path, PARAMS, SHOW)
    proc, report = run_json(flow, f, "--param", "n=42", "--param", "ratio=2.5", "--param", 'items=[1, "two", 3]',
                            "--param", 'quoted="a quoted string"', "--param", "word=emea",
                            "--param", "wait=1m30s", "--param", "flag=true", "--param", "nothing=null",
                            "--param", "m={ k = 1 }")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["show"]["result"] == {
        "n": ["int", 42], "ratio": ["float", 2.5], "items": ["list", [1, "two", 3]],
        "quoted": ["str", "a quoted string"], "word": ["str", "emea"], "wait": ["int", 90],
        "flag": ["bool", True], "nothing": ["NoneType", None], "m": ["dict", {"k": 1}],
    }
    assert report["params"]["n"] == 42 and report["params"]["word"] == "emea"


def test_param_defaults_are_used_without_overrides(flow, tmp_path):
    f = write_project(tmp_path, PARAMS, SHOW)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    result = report["tasks"]["show"]["result"]
    assert result["n"] == ["int", 1] and result["word"] == ["str", "default"] and result["items"] == ["list", []]


@pytest.mark.parametrize("args, words", [
    (["--param", "nope=1"], ["nope"]),
    (["--param", "noequals"], ["noequals"]),
    (["--param", "=value"], ["param"]),
    (["--param", "two words=1"], ["param"]),
    (["--target", "nosuchtask"], ["nosuchtask"]),
    (["--workers", "0"], ["workers"]),
    (["--executor", "dask"], ["dask", "address"]),
    (["--logical-date", "not-a-date"], ["logical"]),
])
def test_usage_errors_exit_2_and_run_nothing(flow, tmp_path, args, words):
    f = write_project(tmp_path, """
        pipeline usage { params { n = 1 } }
        task a { run show:touch  with { path = "ran-{params.n}" } }
    """, SHOW)
    proc = flow("run", f, *args, cwd=tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert list(tmp_path.glob("ran*")) == []
    assert not (tmp_path / ".flow").exists()


def test_a_missing_file_exits_2(flow, tmp_path):
    proc = flow("run", tmp_path / "nowhere.flow", cwd=tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert "nowhere.flow" in proc.stderr and "Traceback" not in proc.stderr


def test_target_runs_only_what_it_needs(flow, tmp_path):
    f = write_project(tmp_path, """
        task base { sh "touch base.ran; echo 5" }
        task needed { sh "touch needed.ran; echo {base}" }
        task target { sh "touch target.ran"  after needed }
        task unrelated { sh "touch unrelated.ran" }
        task below_target { sh "touch below_target.ran"  after target }
    """)
    proc, report = run_json(flow, f, "--target", "target")
    assert proc.returncode == 0, explain(proc)
    assert sorted(p.name for p in tmp_path.glob("*.ran")) == ["base.ran", "needed.ran", "target.ran"]
    assert report["tasks"]["needed"]["result"] == "5"
    for name in ("unrelated", "below_target"):
        assert report["tasks"].get(name, {}).get("status") != "success"


HOOKS = {
    "hooks.py": """
        import json

        def dump(report):
            with open("hook_report.json", "w") as f:
                json.dump(report, f)

        def explode(report):
            raise RuntimeError("the hook exploded")
    """,
}
HOOK_ENV = "printf '%s %s %s' \\\"$FLOW_STATUS\\\" \\\"$FLOW_RUN_ID\\\" \\\"$FLOW_PIPELINE\\\""


def test_hooks_on_failure(flow, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline hooked {{
            on failure run hooks:dump
            on success sh "touch success_hook.ran"
            on finish sh "{HOOK_ENV} > finish_hook.txt"
            on finish run hooks:explode
        }}
        task bad {{ sh "exit 3" }}
        task good {{ sh "echo fine" }}
    """, HOOKS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr
    given = json.loads((tmp_path / "hook_report.json").read_text())
    assert given["run_id"] == report["run_id"] and given["pipeline"] == "hooked"
    assert given["status"] == "failed"
    assert given["tasks"]["bad"]["status"] == "failed" and given["tasks"]["good"]["result"] == "fine"
    assert (tmp_path / "finish_hook.txt").read_text() == f"failed {report['run_id']} hooked"
    assert not (tmp_path / "success_hook.ran").exists()
    hooks = report["hooks"]
    assert [(h["event"], h["status"]) for h in hooks] == [
        ("failure", "success"), ("finish", "success"), ("finish", "failed")]
    assert "the hook exploded" in hooks[2]["error"]["message"]


def test_a_failing_hook_does_not_change_a_successful_run(flow, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline hooked {{
            on success run hooks:explode
            on failure sh "touch failure_hook.ran"
            on finish sh "{HOOK_ENV} > finish_hook.txt; exit 9"
        }}
        task good {{ sh "echo fine" }}
    """, HOOKS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["status"] == "success"
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "finish_hook.txt").read_text() == f"success {report['run_id']} hooked"
    assert not (tmp_path / "failure_hook.ran").exists()
    assert [(h["event"], h["status"]) for h in report["hooks"]] == [("success", "failed"), ("finish", "failed")]
    assert "9" in report["hooks"][1]["error"]["message"]


RUN_VALUES = """
    task values {
        run show:values
        with { id = run.id  date = run.date  trigger = run.trigger  logical_date = run.logical_date
               pipeline = run.pipeline  month = "{run.logical_date:%Y-%m}"
               given = env("E2E_GIVEN", "fallback")  absent = env("E2E_ABSENT_VAR", "fallback") }
    }
    task shell {
        sh "printf '%s|%s|%s|%s' \\"$FLOW_TASK\\" \\"$FLOW_RUN_ID\\" \\"$FLOW_PIPELINE\\" \\"$FLOW_LOGICAL_DATE\\""
    }
    task where { sh "pwd" }
    task where_py { run show:cwd }
"""


def test_run_values_and_env(flow, tmp_path):
    f = write_project(tmp_path / "project", RUN_VALUES, SHOW, name="vals.flow")
    proc, report = run_json(flow, f, env={"E2E_GIVEN": "from the environment"})
    assert proc.returncode == 0, explain(proc)
    v = report["tasks"]["values"]["result"]
    run_id = report["run_id"]
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", run_id) and run_id.startswith("vals")
    assert v["id"] == run_id and v["pipeline"] == "vals"
    assert v["trigger"] == "manual" == report["trigger"]
    assert v["logical_date_type"] == "datetime"
    assert v["logical_date"] == report["logical_date"]
    assert v["date"] == v["logical_date"][:10]
    assert v["month"] == v["logical_date"][:7]
    assert v["given"] == "from the environment" and v["absent"] == "fallback"
    assert report["tasks"]["shell"]["result"] == f"shell|{run_id}|vals|{report['logical_date']}"


def test_logical_date_keeps_the_trigger_manual(flow, tmp_path):
    f = write_project(tmp_path, RUN_VALUES, SHOW, name="vals.flow")
    proc, report = run_json(flow, f, "--logical-date", "2024-02-29T05:00:00+01:00")
    assert proc.returncode == 0, explain(proc)
    v = report["tasks"]["values"]["result"]
    assert v["logical_date"] == "2024-02-29T05:00:00+01:00" == report["logical_date"]
    assert (v["date"], v["month"], v["trigger"]) == ("2024-02-29", "2024-02", "manual")
    assert report["trigger"] == "manual"
    assert report["tasks"]["shell"]["result"].endswith("|2024-02-29T05:00:00+01:00")


def test_shell_tasks_run_in_the_folder_of_the_flow_file(flow, tmp_path):
    f = write_project(tmp_path / "project", RUN_VALUES, SHOW, name="vals.flow")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, report = run_json(flow, f, cwd=elsewhere)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["where"]["result"] == str(f.parent)
    assert (f.parent / ".flow").is_dir() and not (elsewhere / ".flow").exists()


def test_python_tasks_run_in_the_folder_of_the_flow_file(flow, tmp_path):
    f = write_project(tmp_path / "project", RUN_VALUES, SHOW, name="vals.flow")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, report = run_json(flow, f, cwd=elsewhere)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["where_py"]["result"] == str(f.parent)


EXECUTORS = {
    "ex.py": """
        import os, threading

        def who(x):
            print("printed by", x)
            return {"x": x, "pid": os.getpid(), "thread": threading.current_thread().name}

        def fail():
            raise ValueError("failed on purpose")

        def sleep_write(path):
            import time
            time.sleep(0.8)
            open(path, "w").close()
    """,
}


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_thread_and_inline_executors(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task a { run ex:who  with { x = 1 } }
        task b { foreach i in [2, 3]  run ex:who  with { x = i } }
        task c { sh "echo {a.x}-{b[1].x}"  after b }
        task d { run ex:fail  retry 1 }
        task e { sh "touch e.ran"  after d }
        task slow { sh "sleep 2; touch slow.ran"  timeout 200ms }
        task slow_py { run ex:sleep_write  with { path = "slow_py.ran" }  timeout 200ms }
    """, EXECUTORS)
    t0 = time.time()
    proc, report = run_json(flow, f, "--executor", executor)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["a"]["result"]["x"] == 1
    assert [r["x"] for r in tasks["b"]["result"]] == [2, 3]
    assert tasks["c"]["result"] == "1-3"
    assert (tasks["d"]["status"], tasks["d"]["attempts"], tasks["d"]["error"]["type"]) == ("failed", 2, "ValueError")
    assert tasks["e"]["status"] == "skipped"
    assert tasks["slow"]["error"]["type"] == "Timeout"
    assert tasks["slow_py"]["error"]["type"] == "Timeout"
    # In the runner's own process: no worker processes.
    pids = {tasks["a"]["result"]["pid"]} | {r["pid"] for r in tasks["b"]["result"]}
    assert len(pids) == 1
    if executor == "inline":
        assert tasks["a"]["result"]["thread"] == "MainThread"
    # The task's print went to its log, not into the JSON on stdout.
    (run,) = state_runs(tmp_path)
    assert "printed by 1" in (run / "logs" / "a.1.log").read_text()
    assert "printed by" not in proc.stdout
    time.sleep(max(0.0, t0 + 1.2 - time.time()))
    assert list(tmp_path.glob("*.ran")) == []


def test_verbose_streams_task_output_with_the_task_name(flow, tmp_path):
    f = write_project(tmp_path, """
        task a { sh "echo line-one; echo line-two >&2" }
        task b { run ex:who  with { x = "bee" }  after a }
    """, EXECUTORS)
    proc = flow("run", f, "-v", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    lines = proc.stdout.splitlines()
    assert "a | line-one" in lines and "a | line-two" in lines
    assert "b | printed by bee" in lines
    assert lines.index("a | line-one") < lines.index("b | printed by bee")
    # Not a terminal: plain lines, no cursor movement or colours.
    assert "\r" not in proc.stdout and "\x1b" not in proc.stdout
    quiet = flow("run", f, cwd=tmp_path)
    assert quiet.returncode == 0
    assert "line-one" not in quiet.stdout and "printed by" not in quiet.stdout
    event_lines = [line for line in quiet.stdout.splitlines() if line.strip()]
    assert any(re.search(r"\bok\b.*\ba\b", line) for line in event_lines), quiet.stdout
    assert any(re.search(r"\bok\b.*\bb\b", line) for line in event_lines), quiet.stdout
    assert "\r" not in quiet.stdout and "\x1b" not in quiet.stdout


def test_verbose_streams_while_the_task_runs(pyz, tmp_path):
    f = write_project(tmp_path, """
        task talk { run talker:talk }
    """, {"talker.py": """
        import os, time

        def talk():
            print("first line", flush=True)
            for _ in range(500):  # until the test has seen the first line
                if os.path.exists("go"):
                    break
                time.sleep(0.02)
            print("second line", flush=True)
            return os.path.exists("go")
    """})
    proc = spawn_run(pyz, f, "-v", "--json")
    with stopped(proc):
        seen = []
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if line.startswith("talk | first line"):
                break
        assert "talk | first line" in seen, seen
        (tmp_path / "go").touch()
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "talk | second line" in err
        assert json.loads(out)["tasks"]["talk"]["result"] is True, "the line was shown only after the task ended"


def test_dry_run_runs_nothing(flow, tmp_path):
    f = write_project(tmp_path, """
        task first { sh "touch first.ran" }
        task second { run show:touch  with { path = "second.ran" }  after first }
        task third { exec ["touch", "third.ran"]  after second }
    """, SHOW)
    proc = flow("run", f, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout
    assert out.index("first") < out.index("second") < out.index("third")
    assert list(tmp_path.glob("*.ran")) == []
    assert not (tmp_path / ".flow").exists()
    proc = flow("run", f, "--dry-run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert json.loads(proc.stdout)["order"] == ["first", "second", "third"]
    assert list(tmp_path.glob("*.ran")) == [] and not (tmp_path / ".flow").exists()


def test_the_state_folder(flow, tmp_path):
    f = write_project(tmp_path, """
        task ok { sh "echo hello" }
        task flaky { sh "echo try >> tries; echo attempt-output; test $(wc -l < tries) -ge 2"  retry 1 }
        task fan { foreach i in [1, 2]  sh "echo fan {i}" }
        task skipped { sh "true"  after ok  when failure }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    state = tmp_path / ".flow"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    (run,) = state_runs(tmp_path)
    assert run.name == report["run_id"]
    for folder in (state / "runs", run, run / "logs"):
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert mode & 0o077 == 0, f"{folder} is mode {mode:o}"
    assert (run / "journal.msgpack").is_file()
    saved = json.loads((run / "report.json").read_text())
    assert saved == report
    logs = sorted(p.name for p in (run / "logs").iterdir())
    assert logs == ["fan[0].1.log", "fan[1].1.log", "flaky.1.log", "flaky.2.log", "ok.1.log"]
    assert (run / "logs" / "ok.1.log").read_text() == "hello\n"
    assert (run / "logs" / "flaky.2.log").read_text() == "attempt-output\n"
    records = journal_records(run / "journal.msgpack")
    assert records[0]["e"] == "run" and records[0]["run_id"] == report["run_id"]
    assert records[-1]["e"] == "done" and records[-1]["status"] == "success"
    starts = [(r["task"], r["n"]) for r in records if r["e"] == "start"]
    assert sorted(starts) == [("fan[0]", 1), ("fan[1]", 1), ("flaky", 1), ("flaky", 2), ("ok", 1)]
    assert [r["task"] for r in records if r["e"] == "skip"] == ["skipped"]


def test_flow_run_as_a_subprocess_has_a_clean_stdout(flow, tmp_path):
    """--json prints the report and nothing else on stdout, so `flow run --json | jq` works."""
    f = write_project(tmp_path, """
        task noisy { run ex:who  with { x = "noise" } }
        task shell { sh "echo shell noise" }
    """, EXECUTORS)
    proc = flow("run", f, "--json", "-v", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    json.loads(proc.stdout)
    assert "noisy | printed by noise" in proc.stderr


def test_quiet_prints_failures_and_the_final_line(flow, tmp_path):
    f = write_project(tmp_path, """
        task ok { sh "echo fine" }
        task bad { sh "echo oops >&2; exit 4" }
    """)
    proc = flow("run", f, "-q", cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert any("bad" in line and "4" in line for line in lines[:-1]), lines
    assert not any(re.search(r"\bok\b", line) for line in lines[:-1]), lines
    assert "failed" in lines[-1]
    assert len(lines) == 2, lines


def test_an_invalid_file_runs_nothing(flow, tmp_path):
    f = write_project(tmp_path, """
        task a { sh "touch a.ran" }
        task b { sh "echo {nosuch}" }
    """)
    proc = flow("run", f, "--json", cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    assert "nosuch" in proc.stderr and ":3:" in proc.stderr  # file:line:column
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "a.ran").exists() and not (tmp_path / ".flow").exists()


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_child_output_of_in_process_tasks_stays_out_of_the_json(flow, tmp_path, executor):
    f = write_project(tmp_path, """
        task noisy { run noisy:noisy }
    """, {"noisy.py": """
        import subprocess

        def noisy():
            subprocess.run(["echo", "from-a-child-process"])
            return 1
    """})
    proc = flow("run", f, "--json", "--executor", executor, cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert "from-a-child-process" not in proc.stdout
    assert json.loads(proc.stdout)["tasks"]["noisy"]["result"] == 1
    (run,) = state_runs(tmp_path)
    path = run / "logs" / "noisy.1.log"
    log = path.read_text() if path.exists() else ""  # a log file is made by the first byte of output
    if executor == "inline":  # one attempt at a time: caught at the fd level, as in a worker process
        assert "from-a-child-process" in log
    else:  # threads share fds: a child's output cannot be told apart per task, so it goes to stderr
        assert "from-a-child-process" in proc.stderr
