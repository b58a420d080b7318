"""flow run, end to end: `secret("X")` is masked as *** in every report, log and error,
and its value is never written anywhere under the state folder."""

import json
import uuid
from pathlib import Path

import pytest
from runkit import explain, run_json, state_runs, write_project

MODULE = {
    "leaky.py": """
        import sys, types

        def give_back(token):
            return {"token": token, "nested": [token + "-suffix", {"deep": (token, 1)}],
                    "raw": token.encode(), token: "as a key"}

        def fail_with(token):
            raise RuntimeError("the server refused " + token)

        def print_it(token):
            print("stdout says", token, flush=True)
            print("stderr says", token, file=sys.stderr, flush=True)
            return "printed"

        def namespace(token):
            return types.SimpleNamespace(token=token)

        def print_in_pieces(token):
            sys.stdout.write("in pieces: " + token[:5])  # a secret split across writes
            sys.stdout.flush()
            sys.stdout.write(token[5:] + " and the rest\\n")
            sys.stdout.write("tail without a newline " + token)
            return "pieces"
    """,
}


def all_files(folder: Path):
    return [p for p in folder.rglob("*") if p.is_file()]


def assert_nowhere(secret: str, folder: Path) -> None:
    needle = secret.encode()
    files = all_files(folder)
    assert files, f"nothing under {folder}"
    leaks = [str(p.relative_to(folder)) for p in files if needle in p.read_bytes()]
    assert leaks == [], f"the secret was written to {leaks}"


def test_secrets_are_masked_and_never_stored(flow, tmp_path):
    secret = "tok-" + uuid.uuid4().hex
    f = write_project(tmp_path, """
        pipeline secrets {
            params { token = secret("E2E_TOKEN") }
            on finish sh "echo hook sees {params.token}; echo hook-stderr {params.token} >&2"
            on failure sh "echo hook failed {params.token} >&2; exit 1"
        }
        task returned { run leaky:give_back  with { token = secret("E2E_TOKEN") } }
        task raised { run leaky:fail_with  with { token = params.token } }
        task shell_prints {
            sh "echo out {params.token}; echo err $FLOW_ARG_T >&2"
            with { t = secret("E2E_TOKEN") }
        }
        task shell_fails { sh "echo failing with {params.token} >&2; exit 4" }
        task exec_argv { exec ["echo", "argv", "{params.token}"] }
        task exec_missing { exec ["{params.token}-no-such-program"] }
        task downstream { exec ["echo", "from upstream", "{returned.token}"] }
    """, MODULE)
    proc, report = run_json(flow, f, "-v", env={"E2E_TOKEN": secret})
    assert proc.returncode == 1, explain(proc)
    # Not in what flow printed (the report on stdout, the -v stream on stderr)...
    assert secret not in proc.stdout
    assert secret not in proc.stderr
    # ...nor anywhere in the state folder (journal, report.json, logs of tasks and hooks).
    assert_nowhere(secret, tmp_path / ".flow")
    # Masked as ***, where it was.
    tasks = report["tasks"]
    assert report["params"]["token"] == "***"
    r = tasks["returned"]["result"]
    assert r["token"] == "***" and r["nested"][0] == "***-suffix" and r["nested"][1]["deep"][0] == "***"
    assert "***" in r
    assert tasks["raised"]["error"]["message"] == "the server refused ***"
    assert "***" in tasks["raised"]["error"]["traceback"]
    assert tasks["shell_prints"]["result"] == "out ***"
    assert "failing with ***" in tasks["shell_fails"]["error"]["message"]
    # exec has no way to hide a secret in its argv: it refuses, naming the task and the way out
    for name in ("exec_argv", "exec_missing"):
        error = tasks[name]["error"]
        assert (tasks[name]["status"], error["type"]) == ("failed", "EvalError"), tasks[name]
        assert f"`{name}`" in error["message"] and "with { key = secret(" in error["message"]
        assert tasks[name]["attempts"] == 0
    assert tasks["downstream"]["result"] == "from upstream ***"  # a result holds the masked value only
    assert "shell_prints | out ***" in proc.stderr
    assert "shell_prints | err ***" in proc.stderr
    (run,) = state_runs(tmp_path)
    logs = {p.name: p.read_text() for p in (run / "logs").iterdir()}
    assert "out ***" in logs["shell_prints.1.log"] and "err ***" in logs["shell_prints.1.log"]
    hook_logs = "".join(text for name, text in logs.items() if name.startswith("on_"))
    assert "hook sees ***" in hook_logs and "hook-stderr ***" in hook_logs
    assert json.loads((run / "report.json").read_text())["params"]["token"] == "***"
    assert all(h["status"] == "success" for h in report["hooks"] if h["event"] == "finish")
    failure_hooks = [h for h in report["hooks"] if h["event"] == "failure"]
    assert failure_hooks[0]["status"] == "failed"
    assert "hook failed ***" in failure_hooks[0]["error"]["message"]


def test_a_secret_printed_by_a_python_task_is_masked(flow, tmp_path):
    secret = "tok-" + uuid.uuid4().hex
    f = write_project(tmp_path, """
        task printed { run leaky:print_it  with { token = secret("E2E_TOKEN") } }
    """, MODULE)
    proc, report = run_json(flow, f, "-v", env={"E2E_TOKEN": secret})
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["printed"]["result"] == "printed"
    assert secret not in proc.stderr
    assert "printed | stdout says ***" in proc.stderr
    assert_nowhere(secret, tmp_path / ".flow")


@pytest.mark.parametrize("executor", ["process", "thread", "inline"])
def test_a_secret_written_in_pieces_is_masked_on_every_executor(flow, tmp_path, executor):
    secret = "tok-" + uuid.uuid4().hex
    f = write_project(tmp_path, """
        task pieces { run leaky:print_in_pieces  with { token = secret("E2E_TOKEN") } }
    """, MODULE)
    proc, report = run_json(flow, f, "--executor", executor, env={"E2E_TOKEN": secret})
    assert proc.returncode == 0 and report["tasks"]["pieces"]["result"] == "pieces", explain(proc)
    (log,) = (tmp_path / ".flow" / "runs").glob("*/logs/pieces.1.log")
    assert log.read_text() == "in pieces: *** and the rest\ntail without a newline ***"
    assert_nowhere(secret, tmp_path / ".flow")


def test_a_secret_inside_a_pickled_result_is_not_stored(flow, tmp_path):
    secret = "tok-" + uuid.uuid4().hex
    f = write_project(tmp_path, """
        pipeline pickled { results pickle }
        task ns { run leaky:namespace  with { token = secret("E2E_TOKEN") } }
    """, MODULE)
    proc, report = run_json(flow, f, env={"E2E_TOKEN": secret})
    assert proc.returncode == 0, explain(proc)
    assert secret not in proc.stdout
    assert_nowhere(secret, tmp_path / ".flow")


def test_a_background_child_does_not_hold_up_a_python_task_when_secrets_are_about(flow, tmp_path):
    f = write_project(tmp_path, """
        task spawn { run bg:spawn  with { token = secret("E2E_TOKEN") } }
    """, {"bg.py": """
        import subprocess

        def spawn(token):
            subprocess.Popen(["sleep", "2.5"])  # e.g. starts a server and returns
            return "spawned"
    """})
    proc, report = run_json(flow, f, env={"E2E_TOKEN": "tok-" + uuid.uuid4().hex})
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["spawn"]["result"] == "spawned"
    assert report["tasks"]["spawn"]["duration_s"] < 1.0, report["tasks"]["spawn"]


def test_a_secret_does_not_change_what_a_background_child_of_a_task_does(flow, tmp_path):
    """A child that a `run` task leaves running behaves the same with or without a secret in the run."""
    module = {"bg.py": """
        import subprocess

        def spawn(token, tag):
            subprocess.Popen(["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.1; done; touch " + tag])
            return "spawned"
    """}
    outcomes = {}
    for kind, token in (("plain", '"not secret"'), ("secret", 'secret("E2E_TOKEN")')):
        f = write_project(tmp_path / kind, f"""
            task spawn {{ run bg:spawn  with {{ token = {token}  tag = "child.done" }} }}
            task later {{ sh "sleep 0.9"  after spawn }}
        """, module)
        proc, report = run_json(flow, f, env={"E2E_TOKEN": "tok-" + uuid.uuid4().hex})
        assert proc.returncode == 0, explain(proc)
        (run,) = state_runs(f.parent)
        log = (run / "logs" / "spawn.1.log").read_text().split()
        outcomes[kind] = ((f.parent / "child.done").exists(), log.count("tick"))
    assert outcomes["secret"] == outcomes["plain"], outcomes
