"""Choosing what a run runs: `--tag T`, `--from 'T[i]'` and `--target 'T[i]'` (cli.md v1.1), end to end."""

from __future__ import annotations

import pytest
from runkit import explain, run_json, write_project

FLOW = """
    pipeline p { defaults { tags batch } }
    task a     { sh "echo a >> ran.txt" }
    task fetch { foreach i in [0, 1, 2]  sh "echo fetch{i} >> ran.txt; echo {i}"  after a  tags io }
    task load  { sh "echo load >> ran.txt"  with { parts = fetch }  tags io, db }
    task other { sh "echo other >> ran.txt"  after a }
"""


def ran(tmp_path):
    text = (tmp_path / "ran.txt").read_text() if (tmp_path / "ran.txt").exists() else ""
    (tmp_path / "ran.txt").write_text("")
    return sorted(text.split())


def test_tag_runs_the_tagged_tasks_and_what_they_need(flow, tmp_path):
    f = write_project(tmp_path, FLOW)
    proc, report = run_json(flow, f, "--tag", "db")
    assert proc.returncode == 0, explain(proc)
    assert set(report["tasks"]) == {"a", "fetch", "fetch[0]", "fetch[1]", "fetch[2]", "load"}
    assert ran(tmp_path) == ["a", "fetch0", "fetch1", "fetch2", "load"]
    proc, report = run_json(flow, f, "--tag", "batch")  # the defaults' tag: the tasks without their own
    assert set(report["tasks"]) == {"a", "other"}, explain(proc)


@pytest.mark.parametrize("args, words", [
    (["--tag", "nope"], "--tag `nope` is on no task"),
    (["--from", "nope[1]"], "`nope` names no task"),
    (["--from", "a[1]"], "`a` is not a foreach task"),
    (["--target", "a[0]"], "`a` is not a foreach task"),
    (["--target", "nope[0]"], "`nope` names no task"),
])
def test_bad_selections_are_usage_errors(flow, tmp_path, args, words):
    f = write_project(tmp_path, FLOW)
    proc = flow("run", f, *args, cwd=tmp_path)
    assert proc.returncode == 2 and words in proc.stderr, explain(proc)


def test_from_one_instance_runs_it_and_what_depends_on_its_task(flow, tmp_path):
    f = write_project(tmp_path, FLOW)
    proc, first = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    ran(tmp_path)
    proc, report = run_json(flow, f, "--from", "fetch[1]")
    assert proc.returncode == 0, explain(proc)
    assert ran(tmp_path) == ["fetch1", "load"]  # a, fetch[0], fetch[2] and other kept from the first run
    assert report["tasks"]["fetch[0]"]["kept_from"] == first["run_id"]
    assert report["tasks"]["fetch"]["result"] == ["0", "1", "2"]


def test_dry_run_says_what_a_resume_or_from_keeps(flow, tmp_path):
    f = write_project(tmp_path, FLOW.replace('task other { sh "echo other >> ran.txt"  after a }',
                                             'task other { sh "exit 1"  after a }'))
    proc = flow("run", f, cwd=tmp_path)
    assert proc.returncode == 1
    listing = tmp_path / ".flow" / "runs"
    before = sorted(p.name for p in listing.iterdir())
    out = flow("run", f, "--resume", "--dry-run", cwd=tmp_path)
    assert out.returncode == 0, explain(out)
    lines = {line.split(":")[0].split(".")[-1].strip(): line for line in out.stdout.splitlines() if ". " in line}
    assert "kept, unless" in lines["a"] and "kept, unless" in lines["load"]
    assert "did not succeed there" in lines["other"]
    out = flow("run", f, "--from", "fetch", "--dry-run", cwd=tmp_path)
    lines = {line.split(":")[0].split(".")[-1].strip(): line for line in out.stdout.splitlines() if ". " in line}
    assert "runs again (--from)" in lines["fetch"] and "runs again (--from)" in lines["load"]
    assert "kept, unless" in lines["a"]
    assert sorted(p.name for p in listing.iterdir()) == before  # a dry run writes nothing


def test_target_one_instance_runs_it_and_what_it_needs_only(flow, tmp_path):
    f = write_project(tmp_path, FLOW)
    proc, report = run_json(flow, f, "--target", "fetch[1]")
    assert proc.returncode == 0, explain(proc)
    assert ran(tmp_path) == ["a", "fetch1"]  # not fetch[0], fetch[2], load or other
    tasks = report["tasks"]
    assert tasks["fetch[1]"]["status"] == "success"
    assert tasks["fetch[0]"]["status"] == tasks["fetch[2]"]["status"] == "skipped"
    assert tasks["fetch[0]"]["reason"] == "not a --target"
    assert tasks["fetch"]["result"] == [None, "1", None]
    assert "load" not in tasks and "other" not in tasks
    proc, report = run_json(flow, f, "--target", "fetch[0]", "--target", "fetch[2]", "--target", "other")
    assert ran(tmp_path) == ["a", "fetch0", "fetch2", "other"]
    proc, report = run_json(flow, f, "--target", "fetch[1]", "--target", "fetch")  # the whole task wins
    assert ran(tmp_path) == ["a", "fetch0", "fetch1", "fetch2"]
    dry = flow("run", f, "--target", "fetch[2]", "--dry-run", cwd=tmp_path)
    assert "only fetch[2] (--target)" in dry.stdout, explain(dry)
    proc, report = run_json(flow, f, "--target", "fetch[7]")
    assert "names none of them" in proc.stderr and ran(tmp_path) == ["a"]


def test_a_resume_of_an_instance_target_keeps_its_limit(flow, tmp_path):
    f = write_project(tmp_path, """
        task fetch { foreach i in [0, 1, 2]  sh "test -f ok{i} && echo {i} >> ran.txt" }
    """)
    proc, report = run_json(flow, f, "--target", "fetch[1]")
    assert proc.returncode == 1
    (tmp_path / "ok1").write_text("")
    (tmp_path / "ok0").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert ran(tmp_path) == ["1"]
    assert report["tasks"]["fetch[0]"]["status"] == "skipped"
