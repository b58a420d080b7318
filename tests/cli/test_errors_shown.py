"""Why a task failed, whole: `flow status` prints each failure's message wrapped (not cut), a Python
task's traceback from its own code and a shell task's stderr tail; `flow logs RUN TASK` ends each failed
attempt's output with the same; `flow logs TASK` means that task of the latest run."""

import json

from runkit import explain, run_json, write_project

LONG = "a long message " * 8


def project(tmp_path):
    return write_project(tmp_path, """
        task py { run m:f }
        task shx { sh "echo to-out; echo the shell said something long enough to be cut in a table column >&2; exit 3" }
        task many { foreach i in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  sh "exit {i}" }
    """, {"m.py": f"def helper():\n    raise ValueError({LONG!r})\n\n\ndef f():\n    print('hello')\n    helper()\n"})


def test_status_prints_each_failure_whole(flow, tmp_path):
    f = project(tmp_path)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1
    out = flow("status", cwd=tmp_path, env={"COLUMNS": "100"}).stdout
    joined = " ".join(out.split())
    assert f"py (attempt 1): ValueError: {LONG.strip()}" in joined  # wrapped, never cut
    assert 'raise ValueError(' in out and "in helper" in out and "in f" in out
    assert "flowdsl" not in out  # the traceback starts at the task's own code
    assert "the shell said something long enough to be cut in a table column" in out
    assert "... and 5 more failed" in out  # py, shx, many and its 12 instances: the first 10 whole
    tb = report["tasks"]["py"]["error"]["traceback"]
    assert tb.startswith("Traceback") and "worker.py" not in tb
    assert report["tasks"]["shx"]["error"]["traceback"] == ""  # flow raised it: the message says it all


def test_logs_of_a_task_end_with_its_error_and_take_the_task_alone(flow, tmp_path):
    f = project(tmp_path)
    run_json(flow, f)
    for args in (("py",), (json.loads(flow("runs", "--json", cwd=tmp_path).stdout)[0]["run_id"], "py")):
        proc = flow("logs", *args, cwd=tmp_path)
        assert proc.returncode == 0, explain(proc)
        assert proc.stdout.startswith("hello\n")
        assert "==> py (attempt 1) failed <==" in proc.stdout
        assert "raise ValueError(" in proc.stdout
    shx = flow("logs", "shx", cwd=tmp_path).stdout
    assert "to-out" in shx and "ShellError: `sh` failed with exit status 3" in shx
    missing = flow("logs", "nothing_like_this", cwd=tmp_path)
    assert missing.returncode == 2 and "no task `nothing_like_this`" in missing.stderr, explain(missing)
