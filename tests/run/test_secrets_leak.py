"""flow run, end to end: a secret leaks nowhere, in none of its spellings.

Each tricky secret (quotes, backslashes, non-ASCII, line breaks) is looked for, as itself
and as repr(), ascii(), JSON (with and without ensure_ascii), bytes repr and shell quoting
would write it, in every place it could leak: what flow prints, the journal's bytes,
report.json, summary.json and every log, the command lines of every process while a task
sleeps (/proc/*/cmdline), and the environment of the tasks and hooks that do not use it.
"""

from __future__ import annotations

import json
import os
import shlex
import uuid
from pathlib import Path

import pytest
from runkit import explain, run_json, spawn_run, state_runs, stopped, wait_until, write_project

from flowdsl.store import codec, journal

TRICKY = {
    "quotes": "it's \"quoted\" 'twice'",
    "backslash": "back\\slash\\\\two \\n not a newline",
    "non-ascii": "ünïcødé 日本 ✓ \u00a0nbsp",
    "newline": "first line\nsecond line {u}\n\tthird",
    "everything": "'\"\\ ü\n$(touch pwned) `touch pwned2` * $HOME\ttab",
}


def make_secret(kind: str) -> str:
    u = uuid.uuid4().hex
    return f"tok-{u}-" + TRICKY[kind].replace("{u}", uuid.uuid4().hex[:12]) + f"-end-{u[:8]}"


def spellings(secret: str) -> set:
    """The ways a program may write the secret out; each holds a unique part of it."""
    out = {secret, repr(secret)[1:-1], ascii(secret)[1:-1], json.dumps(secret)[1:-1],
           json.dumps(secret, ensure_ascii=False)[1:-1], repr(secret.encode())[2:-1], shlex.quote(secret)}
    # each line of a multi-line secret on its own, where it is long enough to mean it (values.SECRET_LINE_MIN)
    out.update(line for line in secret.split("\n") if len(line.strip()) >= 4)
    return out


def leaks(secret: str, data: bytes) -> list:
    return sorted(s for s in spellings(secret) if s.encode() in data)


def assert_nowhere(secret: str, folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files, f"nothing under {folder}"
    found = {str(p.relative_to(folder)): leaks(secret, p.read_bytes()) for p in files}
    found = {k: v for k, v in found.items() if v}
    assert found == {}, f"the secret was written to {found}"


MODULE = {
    "leak.py": """
        import json, os, sys, time

        def printer(token):
            print("plain", token)
            print("repr", repr(token), [token], {"k": token})
            print("json", json.dumps(token), json.dumps({"k": token}, ensure_ascii=False))
            print("ascii", ascii(token), "bytes", token.encode())
            print("stderr", repr(token), json.dumps(token), file=sys.stderr)
            sys.stdout.write("no line break after " + token)  # the log gets it in pieces
            sys.stdout.flush()
            return "printed"

        def raiser(token):
            raise KeyError(token)  # its message is the repr

        def raiser_json(token):
            raise ValueError(json.dumps({"token": token}))

        def returner(token):
            return {"repr": repr(token), "json": json.dumps(token), "ascii": ascii(token), "raw": [token]}

        def env_dump(path):
            with open(path, "w") as f:
                json.dump(dict(os.environ), f)
            return "dumped"

        def hook_dump(report):
            env_dump("hook_run_env.json")
    """,
}

PIPELINE = r"""
    pipeline leak {
        params { token = secret("E2E_LEAK_TOKEN") }
        on finish sh "printf '%s\n' 'hook: {params.token}' \"{params.token}\" {params.token}"
        on finish sh "env > hook_sh_env.txt"
        on finish run leak:hook_dump
    }
    task printer { run leak:printer  with { token = params.token } }
    task raiser { run leak:raiser  with { token = params.token } }
    task raiser_json { run leak:raiser_json  with { token = params.token } }
    task returner { run leak:returner  with { token = params.token } }
    task sh_quoted { sh "printf '%s|' 'single: {params.token}' \"double: {params.token}\" bare:{params.token}" }
    task sh_sleeps { sh "touch sleeping.flag; sleep 1.5; printf '%s' {params.token} >/dev/null; echo slept" }
    task sh_fails { sh "printf '%s\n' \"{params.token}\" >&2; exit 3" }
    task hook_like { sh "printf 'x: %s' \"$FLOW_ARG_T\""  with { t = secret("E2E_LEAK_TOKEN") } }
    task other_run { run leak:env_dump  with { path = "other_run_env.json" } }
    task other_sh { sh "env > other_sh_env.txt" }
    task other_exec { exec ["sh", "-c", "env > other_exec_env.txt"] }
    task uses_source { sh "printf '%s' \"$E2E_LEAK_TOKEN\" > uses_source.txt"  with { t = secret("E2E_LEAK_TOKEN") } }
    task downstream { sh "printf '%s' '{returner.json}'"  after uses_source }
"""

OTHERS = ["other_run_env.json", "other_sh_env.txt", "other_exec_env.txt", "hook_sh_env.txt", "hook_run_env.json"]


def command_lines() -> bytes:
    """Every process's command line, as `ps -ef` shows them to any user."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    out.append(f.read())
            except OSError:
                pass
    return b"\n".join(out)


@pytest.mark.parametrize("kind", sorted(TRICKY))
def test_a_tricky_secret_leaks_nowhere(pyz, tmp_path, kind):
    secret = make_secret(kind)
    f = write_project(tmp_path, PIPELINE, MODULE)
    proc = spawn_run(pyz, f, "--json", "-v", "--workers", "4", env={"E2E_LEAK_TOKEN": secret})
    with stopped(proc):
        assert wait_until(lambda: (tmp_path / "sleeping.flag").exists() or proc.poll() is not None, 30)
        seen = command_lines()  # while sh_sleeps sleeps, the others run or ran
        stdout, stderr = proc.communicate(timeout=60)
    assert leaks(secret, seen) == [], "a command line holds the secret"
    assert proc.returncode == 1, f"{stdout}\n{stderr}"
    report = json.loads(stdout)
    # Not in what flow printed, nor anywhere under the state folder, in any spelling.
    assert leaks(secret, stdout.encode()) == [] and leaks(secret, stderr.encode()) == []
    assert_nowhere(secret, tmp_path / ".flow")
    # The tasks and hooks that do not use it never had it, nor its source variable.
    for name in OTHERS:
        text = (tmp_path / name).read_bytes()
        assert leaks(secret, text) == [] and b"E2E_LEAK_TOKEN" not in text, name
        assert b"FLOW_SECRET_" not in text, name
    # The task that uses `secret("E2E_LEAK_TOKEN")` keeps the variable; the value works everywhere.
    assert (tmp_path / "uses_source.txt").read_text() == secret
    tasks = report["tasks"]
    assert tasks["sh_quoted"]["result"] == "single: ***|double: ***|bare:***|"
    assert tasks["hook_like"]["result"] == "x: ***"
    assert tasks["sh_sleeps"]["result"] == "slept"
    assert tasks["printer"]["result"] == "printed"
    assert tasks["returner"]["result"] == {"repr": "'***'", "json": '"***"', "ascii": "'***'", "raw": ["***"]}
    assert tasks["downstream"]["result"] == '"***"'  # what an upstream result holds is masked already
    assert tasks["raiser"]["error"]["message"] == "'***'"
    assert "***" in tasks["raiser_json"]["error"]["message"]
    assert "***" in tasks["sh_fails"]["error"]["message"]
    assert report["params"] == {"token": "***"}
    assert all(h["status"] == "success" for h in report["hooks"]), report["hooks"]
    (run,) = state_runs(tmp_path)
    log = (run / "logs" / "printer.1.log").read_text()
    assert log.count("***") >= 8 and "no line break after ***" in log, log
    hook_logs = "".join(p.read_text() for p in (run / "logs").glob("on_finish*"))
    assert "hook: ***\n***\n***\n" in hook_logs
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_in_process_executors_hide_the_source_variable_from_shell_tasks(flow, tmp_path, executor):
    """inline also hides it from `run` tasks (the runner waits meanwhile); thread cannot: its tasks share
    the runner's environment, so only commands they start are cleaned."""
    secret = make_secret("everything")
    f = write_project(tmp_path, PIPELINE, MODULE)
    proc, report = run_json(flow, f, "--executor", executor, env={"E2E_LEAK_TOKEN": secret})
    assert proc.returncode == 1, explain(proc)
    assert leaks(secret, proc.stdout.encode()) == [] and leaks(secret, proc.stderr.encode()) == []
    assert_nowhere(secret, tmp_path / ".flow")
    others = ["other_sh_env.txt", "other_exec_env.txt", "hook_sh_env.txt", "hook_run_env.json"]
    if executor == "inline":
        others.append("other_run_env.json")
    for name in others:
        text = (tmp_path / name).read_bytes()
        assert leaks(secret, text) == [] and b"E2E_LEAK_TOKEN" not in text, name
    assert (tmp_path / "uses_source.txt").read_text() == secret
    assert report["tasks"]["sh_quoted"]["result"] == "single: ***|double: ***|bare:***|"


SECRET_PARAM = r"""
    pipeline given {
        params { token = secret("E2E_LEAK_UNSET")  other = "plain" }
        on finish sh "printf '%s\n' 'hook: {params.token}'"
    }
    task shows { sh "printf '%s|' '{params.token}' \"{params.token}\""  }
    task python { run leak:printer  with { token = params.token } }
    task flaky { sh "test -e again || {{ touch again; exit 1; }}; printf '%s' {params.other}"  after shows }
"""


@pytest.mark.parametrize("kind", sorted(TRICKY))
def test_a_value_given_for_a_secret_param_is_a_secret(flow, tmp_path, kind):
    secret = make_secret(kind)
    f = write_project(tmp_path, SECRET_PARAM, MODULE)
    proc, report = run_json(flow, f, "-v", "--param", f"token={secret}", "--param", "other=kept")
    assert proc.returncode == 1, explain(proc)
    assert report["params"] == {"token": "***", "other": "kept"}
    assert report["tasks"]["shows"]["result"] == "***|***|"
    assert report["tasks"]["python"]["result"] == "printed"
    assert leaks(secret, proc.stdout.encode()) == [] and leaks(secret, proc.stderr.encode()) == []
    assert_nowhere(secret, tmp_path / ".flow")  # journal, snapshot, report.json, summary.json, logs
    (run,) = state_runs(tmp_path)
    head = journal.head(str(run / "journal.msgpack"))
    overrides = codec.unpack(head["overrides"])
    assert overrides["other"] == "kept" and overrides["token"] != secret
    assert head["params"]["token"] == "***"


def test_a_resume_asks_for_a_secret_param_again(flow, tmp_path):
    secret = make_secret("quotes")
    f = write_project(tmp_path, SECRET_PARAM, MODULE)
    proc, report = run_json(flow, f, "--param", f"token={secret}", "--param", "other=kept")
    assert proc.returncode == 1 and report["tasks"]["flaky"]["status"] == "failed", explain(proc)
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 2, explain(proc)
    assert "--param token" in proc.stderr and "--param other" not in proc.stderr
    proc, report = run_json(flow, f, "--resume", "--param", "other=changed")
    assert proc.returncode == 2, explain(proc)
    proc, report = run_json(flow, f, "-v", "--resume", "--param", f"token={secret}")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["flaky"]["result"] == "kept"  # the other override came back from the journal
    assert report["params"] == {"token": "***", "other": "kept"}
    assert leaks(secret, proc.stdout.encode()) == [] and leaks(secret, proc.stderr.encode()) == []
    assert_nowhere(secret, tmp_path / ".flow")
