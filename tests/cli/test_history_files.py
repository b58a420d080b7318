"""The verbs that look back, given the pipeline's `.flow` file (cli.md v1.1), `flow logs` with no id,
and `flow status --failed` / `--state S`."""

from __future__ import annotations

import json

import pytest
from runkit import explain, write_project

FLOW = """
    task ok   { sh "echo fine" }
    task bad  { sh "echo oops; exit 2" }
    task each { foreach i in [1, 2]  sh "exit $(( {i} - 1 ))" }
"""


@pytest.fixture
def project(flow, tmp_path):
    folder = tmp_path / "pipelines"
    f = write_project(folder, FLOW, name="orders.flow")
    proc = flow("run", f, cwd=tmp_path)  # from elsewhere: the state goes beside the file
    assert proc.returncode == 1, explain(proc)
    return tmp_path, f


@pytest.mark.parametrize("how", ["positional", "--file"])
def test_each_verb_finds_the_state_beside_the_file(flow, project, how):
    cwd, f = project
    arg = [f] if how == "positional" else ["--file", f]
    runs = flow("runs", "--json", *arg, cwd=cwd)
    assert runs.returncode == 0, explain(runs)
    (run,) = json.loads(runs.stdout)
    status = flow("status", "--json", *arg, cwd=cwd)
    assert json.loads(status.stdout)["run_id"] == run["run_id"], explain(status)
    logs = flow("logs", *arg, cwd=cwd)
    assert logs.returncode == 0 and "oops" in logs.stdout, explain(logs)
    page = cwd / "page.html"
    report = flow("report", *arg, "--html", page, cwd=cwd)
    assert report.returncode == 0 and page.exists(), explain(report)
    prune = flow("prune", *arg, "--keep", "5", cwd=cwd)
    assert prune.returncode == 0, explain(prune)


def test_runs_here_says_where_to_look_when_there_is_no_state_folder(flow, project):
    cwd, f = project
    proc = flow("runs", cwd=cwd)
    assert proc.returncode == 0 and "beside its .flow file" in proc.stdout, explain(proc)


def test_logs_without_an_id_is_the_latest_run(flow, project):
    cwd, f = project
    proc = flow("logs", cwd=f.parent)
    assert proc.returncode == 0 and "oops" in proc.stdout, explain(proc)


def test_status_failed_and_state(flow, project):
    cwd, f = project
    failed = json.loads(flow("status", f, "--failed", "--json", cwd=cwd).stdout)["tasks"]
    assert sorted(failed) == ["bad", "each", "each[1]"]
    text = flow("status", f, "--state", "success", cwd=cwd).stdout
    table = text.split("\n\n", 1)[1].splitlines()[2:]  # after the header block, the header and its rule
    rows = [line.split()[0] for line in table if line.strip()]
    assert sorted(rows) == ["each[0]", "ok"], text
    both = json.loads(flow("status", f, "--state", "success", "--failed", "--json", cwd=cwd).stdout)["tasks"]
    assert len(both) == 5
