"""Where `secret()` looks (cli.md v1.1), and what a `sh` hook is told: end to end through the zipapp."""

from __future__ import annotations

import json
import os

import pytest
from runkit import explain, run_json, write_project

NAME = "FLOW_TEST_SOURCE_TOKEN"

FLOW = f"""
    pipeline p {{ params {{ token = secret("{NAME}") }} }}
    task use {{ sh "test \\"$FLOW_ARG_T\\" = 'the value' && echo ok"  with {{ t = params.token }} }}
"""


def test_a_secret_from_the_credentials_directory(flow, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / NAME).write_text("the value\n")  # its final newline is not part of it
    f = write_project(tmp_path / "p", FLOW)
    proc, report = run_json(flow, f, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 0 and report["tasks"]["use"]["result"] == "ok", explain(proc)
    assert report["params"]["token"] == "***"


def test_a_secret_from_run_secrets(flow, tmp_path):
    folder = "/run/secrets"
    made = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, NAME)
    try:
        with open(path, "w") as f:
            f.write("the value")
        proc, report = run_json(flow, write_project(tmp_path, FLOW))
        assert proc.returncode == 0 and report["tasks"]["use"]["result"] == "ok", explain(proc)
    finally:
        os.unlink(path)
        if made:
            os.rmdir(folder)


def test_the_environment_comes_first(flow, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / NAME).write_text("not this one")
    proc, report = run_json(flow, write_project(tmp_path / "p", FLOW),
                            env={NAME: "the value", "CREDENTIALS_DIRECTORY": str(creds)})
    assert proc.returncode == 0 and report["tasks"]["use"]["result"] == "ok", explain(proc)


@pytest.mark.parametrize("creds", [False, True])
def test_a_missing_secret_is_a_usage_error_listing_where_flow_looked(flow, tmp_path, creds):
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")} if creds else {}
    proc = flow("run", write_project(tmp_path, FLOW), cwd=tmp_path, env=env)
    assert proc.returncode == 2, explain(proc)
    assert f"the environment variable {NAME}" in proc.stderr and f"/run/secrets/{NAME}" in proc.stderr
    assert (f"{tmp_path}/empty/{NAME}" in proc.stderr) == creds
    assert not (tmp_path / ".flow" / "runs").exists() or not os.listdir(tmp_path / ".flow" / "runs")


def test_a_sh_hook_is_told_the_failed_tasks_and_where_the_report_is(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline p { on failure sh "echo $FLOW_FAILED_TASKS > failed.txt; cp \\"$FLOW_REPORT\\" seen.json" }
        task ok   { sh "echo fine" }
        task bad  { sh "exit 1" }
        task each { foreach i in [1, 2]  sh "exit {i}" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert sorted((tmp_path / "failed.txt").read_text().split()) == ["bad", "each"]
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["run_id"] == report["run_id"] and seen["status"] == "failed"
    assert seen["tasks"]["bad"]["status"] == "failed"


def test_an_env_file_gives_env_and_secret_values_and_the_environment_wins(flow, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline p {{ params {{ token = secret("{NAME}")  region = env("FLOW_TEST_REGION") }} }}
        task use {{ sh "test \\"$FLOW_ARG_T\\" = 'the value' && echo {{params.region}}"  with {{ t = params.token }} }}
    """)
    env_file = tmp_path / "vars.env"
    env_file.write_text(f"# what cron does not have\n\nexport {NAME}='the value'\nFLOW_TEST_REGION=emea  # here\n")
    proc, report = run_json(flow, f, "--env-file", env_file)
    assert proc.returncode == 0 and report["tasks"]["use"]["result"] == "emea", explain(proc)
    proc, report = run_json(flow, f, "--env-file", env_file, env={"FLOW_TEST_REGION": "apac"})
    assert report["tasks"]["use"]["result"] == "apac", explain(proc)
    assert "the value" not in json.dumps(report)


@pytest.mark.parametrize("content, words", [("JUST A LINE\n", "vars.env:1: expected KEY=value"),
                                            ("OK=1\n1BAD=2\n", "vars.env:2:"), (None, "--env-file")])
def test_a_bad_env_file_is_a_usage_error(flow, tmp_path, content, words):
    f = write_project(tmp_path, 'task a { sh "echo a" }\n')
    if content is not None:
        (tmp_path / "vars.env").write_text(content)
    proc = flow("run", f, "--env-file", tmp_path / "vars.env", cwd=tmp_path)
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, explain(proc)
