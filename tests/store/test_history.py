"""The history verbs (`runs`, `status`, `logs`, `prune`), `run --detach`, `cache` and the state folder."""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from runkit import explain, run_json, spawn_run, state_runs, wait_until, write_project

TWO = """
    pipeline {name} {{}}
    task hello {{ sh "echo hello from {name}; echo to-stderr >&2" }}
    task each  {{ foreach x in [1, 2]  sh "echo item {{x}}" }}
    task bad   {{ sh "echo about to fail; exit {code}"  after hello }}
"""


def project(tmp_path, name="alpha", code=0, folder=None):
    return write_project(folder or tmp_path, TWO.format(name=name, code=code), name=f"{name}.flow")


def test_runs_lists_newest_first_as_a_table_and_json(flow, tmp_path):
    a = project(tmp_path, "alpha")
    b = project(tmp_path, "beta", code=3)
    for f in (a, b, a):
        flow("run", f, "-q", cwd=tmp_path)
    out = json.loads(flow("runs", "--json", cwd=tmp_path).stdout)
    assert [r["pipeline"] for r in out] == ["alpha", "beta", "alpha"]
    assert [r["status"] for r in out] == ["success", "failed", "success"]
    assert set(out[0]) == {"run_id", "pipeline", "status", "trigger", "logical_date", "started_at",
                           "finished_at", "duration_s", "error"}  # error (v1.1): null but for one that could not start
    assert [r["error"] for r in out] == [None, None, None]
    assert out[0]["trigger"] == "manual" and out[0]["duration_s"] >= 0
    assert out[0]["started_at"] > out[1]["started_at"] > out[2]["started_at"]
    table = flow("runs", cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["run", "status", "trigger"]
    assert out[0]["run_id"] in table[2] and "success" in table[2]
    only = json.loads(flow("runs", "beta", "--json", cwd=tmp_path).stdout)
    assert [r["pipeline"] for r in only] == ["beta"]
    assert len(json.loads(flow("runs", "--limit", "2", "--json", cwd=tmp_path).stdout)) == 2
    assert flow("runs", "--limit", "0", cwd=tmp_path).returncode == 2


def test_verbs_without_a_file_use_dot_flow_unless_told(flow, tmp_path):
    f = project(tmp_path)
    flow("run", f, "-q", cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "no runs" in flow("runs", cwd=elsewhere).stdout
    assert len(json.loads(flow("runs", "--json", "--state-dir", tmp_path / ".flow", cwd=elsewhere).stdout)) == 1
    env = {"FLOW_STATE_DIR": str(tmp_path / ".flow")}
    assert len(json.loads(flow("runs", "--json", cwd=elsewhere, env=env).stdout)) == 1
    proc = flow("status", cwd=elsewhere)
    assert proc.returncode == 2 and "no runs" in proc.stderr
    # and `run --state-dir` puts the run there
    flow("run", f, "-q", "--state-dir", tmp_path / "other", cwd=tmp_path)
    assert len(json.loads(flow("runs", "--json", "--state-dir", tmp_path / "other", cwd=tmp_path).stdout)) == 1


def test_status_shows_each_task_with_state_attempts_duration_error(flow, tmp_path):
    f = project(tmp_path, code=4)
    proc, report = run_json(flow, f)
    text = flow("status", cwd=tmp_path)
    assert text.returncode == 0, explain(text)
    out = text.stdout
    assert report["run_id"] in out and "failed" in out
    table = out.split("\n\n")[1]  # the header, the table, then each failure whole
    rows = {line.split()[0]: line for line in table.splitlines() if line.split() and line.split()[0] in report["tasks"]}
    assert "bad (attempt 1): ShellError" in out.split("\n\n")[2]
    assert set(rows) == {"hello", "each", "each[0]", "each[1]", "bad"}
    assert rows["bad"].split()[1:3] == ["failed", "1"] and "ShellError" in rows["bad"]
    assert rows["hello"].split()[1:3] == ["success", "1"]
    as_json = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert as_json == json.loads(flow("status", report["run_id"], "--json", cwd=tmp_path).stdout)
    assert as_json["tasks"] == report["tasks"], "status --json is the run's report"
    assert flow("status", report["run_id"][:12], cwd=tmp_path).returncode == 0, "a unique prefix will do"
    missing = flow("status", "nope-123", cwd=tmp_path)
    assert missing.returncode == 2 and "no run `nope-123`" in missing.stderr


def test_logs_of_a_run_and_of_one_task(flow, tmp_path):
    f = project(tmp_path, code=2)
    proc, report = run_json(flow, f)
    run_id = report["run_id"]
    everything = flow("logs", run_id, cwd=tmp_path).stdout
    for text in ("==> hello (attempt 1) <==", "hello from alpha", "to-stderr", "item 1", "item 2", "about to fail"):
        assert text in everything
    one = flow("logs", run_id, "hello", cwd=tmp_path).stdout
    assert one.split() == ["hello", "from", "alpha", "to-stderr"], "one log: no header"
    each = flow("logs", run_id, "each", cwd=tmp_path).stdout
    assert "==> each[0] (attempt 1) <==" in each and "item 2" in each and "hello" not in each
    unknown = flow("logs", run_id, "nosuch", cwd=tmp_path)
    assert unknown.returncode == 2 and "no task `nosuch`" in unknown.stderr


def test_logs_follow_prints_until_the_run_ends(flow, pyz, tmp_path):
    f = write_project(tmp_path, """
        pipeline follow {}
        task ticker { sh "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done" }
    """)
    proc = spawn_run(pyz, f)
    try:
        assert wait_until(lambda: bool(state_runs(tmp_path)), 10)
        run_id = state_runs(tmp_path)[0].name
        followed = flow("logs", "-f", run_id, "ticker", cwd=tmp_path, timeout=30)
        assert followed.returncode == 0, explain(followed)
        assert [line for line in followed.stdout.splitlines() if line.startswith("tick")] == \
            [f"tick {i}" for i in range(1, 6)]
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_prune_keeps_the_newest_per_pipeline_and_never_a_live_run(flow, pyz, tmp_path):
    a = project(tmp_path, "alpha")
    b = project(tmp_path, "beta")
    for f in (a, a, a, b, b):
        flow("run", f, "-q", cwd=tmp_path)
    before = [r["run_id"] for r in json.loads(flow("runs", "--json", cwd=tmp_path).stdout)]
    dry = flow("prune", "--keep", "1", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and sorted(dry.stdout.splitlines()[:3]) == sorted(
        f"would delete {r}" for r in [before[1], before[3], before[4]])  # newest first: beta, beta, alpha...
    assert len(state_runs(tmp_path)) == 5
    live = write_project(tmp_path, 'pipeline alpha {}\ntask wait { sh "sleep 30" }\n', name="alpha_live.flow")
    proc = spawn_run(pyz, live)
    try:
        assert wait_until(lambda: len(state_runs(tmp_path)) == 6, 10)
        time.sleep(0.3)
        out = flow("prune", "--keep", "1", cwd=tmp_path)
        assert out.returncode == 0, explain(out)
        after = {r["run_id"] for r in json.loads(flow("runs", "--json", cwd=tmp_path).stdout)}
        live_id = (set(r.name for r in state_runs(tmp_path)) - set(before)).pop()
        assert after == {live_id, before[0], before[2]}, "the live run, and the newest finished run of each"
    finally:
        proc.kill()
        proc.communicate()


def test_prune_older_than_and_bad_arguments(flow, tmp_path):
    f = project(tmp_path)
    for _ in range(2):
        flow("run", f, "-q", cwd=tmp_path)
    old = state_runs(tmp_path)[0]
    long_ago = time.time() - 10 * 86400
    os.utime(old / "journal.msgpack", (long_ago, long_ago))
    out = flow("prune", "--older-than", "7d", cwd=tmp_path)
    assert out.returncode == 0 and f"deleted {old.name}" in out.stdout
    assert [r.name for r in state_runs(tmp_path)] != [old.name] and len(state_runs(tmp_path)) == 1
    assert flow("prune", cwd=tmp_path).returncode == 2
    bad = flow("prune", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and "duration" in bad.stderr


def test_detach_returns_at_once_and_the_run_survives_its_shell(flow, pyz, tmp_path):
    f = write_project(tmp_path, """
        pipeline bg {}
        task wait { sh "sleep 1.5; echo slept" }
    """)
    # the run starts from a shell that exits right away, as from an ssh session
    t0 = time.monotonic()
    shell = subprocess.run(["sh", "-c", f'"{sys.executable}" "{pyz}" run "{f}" --detach'], cwd=tmp_path,
                           capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    took = time.monotonic() - t0
    assert shell.returncode == 0, shell.stderr
    run_id = shell.stdout.strip()
    assert run_id.startswith("bg-") and took < 1.5, (run_id, took)
    status = json.loads(flow("status", run_id, "--json", cwd=tmp_path).stdout)
    assert status["status"] == "running"
    assert wait_until(lambda: json.loads(flow("status", run_id, "--json", cwd=tmp_path).stdout)["status"]
                      == "success", 20)
    assert flow("logs", run_id, "wait", cwd=tmp_path).stdout.strip() == "slept"
    output = (tmp_path / ".flow" / "runs" / run_id / "output.log").read_text()
    assert f"run {run_id} success" in output


def test_cache_reuses_a_result_while_its_fingerprint_matches(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline cached { params { n = 1 } }
        task slow  { sh "echo ran >> ran.txt; echo {params.n}"  cache }
        task brief { sh "echo ran >> brief.txt; echo x"  cache 1s }
        task use   { sh "echo got {slow}" }
    """)
    proc, first = run_json(flow, f)
    assert first["tasks"]["slow"]["status"] == "success"
    proc, second = run_json(flow, f)
    assert second["tasks"]["slow"]["status"] == "cached" and second["tasks"]["slow"]["attempts"] == 0
    assert second["tasks"]["slow"]["result"] == "1"
    assert second["tasks"]["use"]["result"] == "got 1"
    assert (tmp_path / "ran.txt").read_text().split() == ["ran"]
    time.sleep(1.2)  # past brief's TTL
    proc, third = run_json(flow, f, "--param", "n=2")  # new inputs: computed again
    assert third["tasks"]["slow"]["status"] == "success" and third["tasks"]["slow"]["result"] == "2"
    assert third["tasks"]["brief"]["status"] == "success"
    assert (tmp_path / "brief.txt").read_text().split() == ["ran", "ran"]
    assert (tmp_path / "ran.txt").read_text().split() == ["ran", "ran"]
    text = flow("run", f, cwd=tmp_path).stdout
    assert "cache slow" in text


def test_the_state_folder_is_private_and_never_holds_a_secret(flow, tmp_path):
    secret = "hunter2-very-secret"
    f = write_project(tmp_path, """
        pipeline private { params { token = secret("API_TOKEN") } }
        task use  { sh "echo token is {params.token}"  cache }
        task pass { run keep:echo  with { value = params.token } }
    """, {"keep.py": "def echo(value):\n    return {'seen': value}\n"})
    env = {"API_TOKEN": secret}
    proc, report = run_json(flow, f, env=env)
    assert proc.returncode == 0, explain(proc)
    proc, report = run_json(flow, f, env=env)  # the second run reads the cache
    state = tmp_path / ".flow"
    for folder, _dirs, files in os.walk(state):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder
        for name in files:
            path = Path(folder) / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in proc.stdout + proc.stderr
