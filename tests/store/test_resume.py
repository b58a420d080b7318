"""`flow run --resume` and `--from`, end to end: what is kept, what runs again, and why.

Every task appends its name to `ran.txt` when it runs, so a test can see
exactly which tasks executed in each session.
"""

import json
from pathlib import Path

from runkit import explain, journal_records, run_json, state_runs, write_project

MODULE = {
    "steps.py": """
        import os

        def _mark(name):
            with open("ran.txt", "a") as f:
                f.write(name + "\\n")

        def extract(n):
            _mark("extract")
            return {"rows": list(range(n))}

        def transform(rows):
            _mark("transform")
            if not os.path.exists("fixed"):
                raise RuntimeError("transform is broken until `fixed` exists")
            return {"total": sum(rows["rows"])}

        def load(total):
            _mark("load")
            return total["total"] * 2

        def side():
            _mark("side")
            return "side"
    """,
}

PIPELINE = """
    pipeline etl { params { n = 4 } }
    task extract   { run steps:extract    with { n = params.n } }
    task transform { run steps:transform  with { rows = extract } }
    task load      { run steps:load       with { total = transform } }
    task side      { run steps:side }
    task report    { sh "echo report >> ran.txt; echo done"  when always  after side, load }
"""


def ran(folder: Path) -> list:
    path = folder / "ran.txt"
    lines = path.read_text().split() if path.exists() else []
    path.write_text("")
    return lines


def failed_first_run(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE, MODULE)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert report["tasks"]["transform"]["status"] == "failed"
    assert report["tasks"]["load"]["status"] == "skipped"
    assert sorted(ran(tmp_path)) == ["extract", "report", "side", "transform"]
    return f, report


def succeeded_first_run(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE, MODULE)
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    ran(tmp_path)
    return f, report


def test_resume_runs_only_what_did_not_succeed(flow, tmp_path):
    f, first = failed_first_run(flow, tmp_path)
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["run_id"] == first["run_id"], "a resume continues the same run"
    assert report["status"] == "success"
    # extract and side succeeded before: kept; report ran (when always) but
    # its upstream load runs now, so it runs again too
    assert sorted(ran(tmp_path)) == ["load", "report", "transform"]
    tasks = report["tasks"]
    assert tasks["extract"]["result"] == {"rows": [0, 1, 2, 3]}
    assert tasks["extract"]["kept_from"] == first["run_id"]
    assert tasks["load"]["result"] == 12
    assert tasks["report"]["result"] == "done"
    assert tasks["transform"]["attempts"] == 2, "attempt numbers continue across sessions"
    assert len(state_runs(tmp_path)) == 1


def test_resume_by_run_id_and_nothing_to_resume(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE, MODULE)
    proc = flow("run", f, "--resume", cwd=tmp_path)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr, explain(proc)
    proc, first = run_json(flow, f)
    (tmp_path / "fixed").write_text("")
    proc, second = run_json(flow, f)  # a newer run, which succeeds
    assert proc.returncode == 0
    ran(tmp_path)
    proc, report = run_json(flow, f, "--resume", first["run_id"][:-3])  # a unique prefix
    assert proc.returncode == 0, explain(proc)
    assert report["run_id"] == first["run_id"]
    assert sorted(ran(tmp_path)) == ["load", "report", "transform"]
    proc = flow("run", f, "--resume", "etl-1999", cwd=tmp_path)
    assert proc.returncode == 2 and "no run `etl-1999`" in proc.stderr


def test_resume_keeps_params_and_refuses_new_ones(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE, MODULE)
    proc, first = run_json(flow, f, "--param", "n=3", "--logical-date", "2026-01-02T03:04:05+00:00")
    assert first["params"] == {"n": 3}
    proc = flow("run", f, "--resume", "--param", "n=5", cwd=tmp_path)
    assert proc.returncode == 2 and "drop --param" in proc.stderr
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["params"] == {"n": 3}
    assert report["logical_date"] == "2026-01-02T03:04:05+00:00"
    assert report["tasks"]["load"]["result"] == 6  # sum(range(3)) * 2: the same n


def test_a_changed_definition_runs_again_with_its_dependents(flow, tmp_path):
    f, first = failed_first_run(flow, tmp_path)
    (tmp_path / "fixed").write_text("")
    f.write_text(f.read_text().replace("params { n = 4 }", "params { n = 5 }"))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert sorted(ran(tmp_path)) == ["extract", "load", "report", "transform"]
    assert "extract runs again: its inputs changed" in proc.stderr
    assert report["tasks"]["load"]["result"] == 20
    assert "kept_from" in report["tasks"]["side"]


def test_changed_source_and_comment_only_changes(flow, tmp_path):
    f, first = failed_first_run(flow, tmp_path)
    (tmp_path / "fixed").write_text("")
    steps = tmp_path / "steps.py"
    # a comment and a blank line change nothing that runs: extract is kept
    steps.write_text(steps.read_text().replace("def extract(n):", "# comment\n\ndef extract(n):"))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert "extract" not in ran(tmp_path)
    # a real change to side's body makes side (and report, after it) run again
    steps.write_text(steps.read_text().replace('return "side"', 'return "side v2"'))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert sorted(ran(tmp_path)) == ["report", "side"]
    assert "side runs again: its callable's source changed" in proc.stderr
    assert report["tasks"]["side"]["result"] == "side v2"


def test_a_changed_shell_command_says_its_definition_changed(flow, tmp_path):
    f, first = succeeded_first_run(flow, tmp_path)
    f.write_text(f.read_text().replace("echo report >>", "echo report  >>"))
    proc, report = run_json(flow, f, "--resume")
    assert "report runs again: its definition changed" in proc.stderr, explain(proc)
    assert ran(tmp_path) == ["report"]
    assert report["status"] == "success"


def test_from_reruns_a_task_and_its_dependents_keeping_the_rest(flow, tmp_path):
    f, first = succeeded_first_run(flow, tmp_path)
    proc, report = run_json(flow, f, "--from", "transform")
    assert proc.returncode == 0, explain(proc)
    assert report["run_id"] != first["run_id"], "--from starts a new run"
    assert sorted(ran(tmp_path)) == ["load", "report", "transform"]
    assert report["tasks"]["extract"]["kept_from"] == first["run_id"]
    assert report["tasks"]["load"]["result"] == 12
    # the new run's journal holds the kept result itself
    run = [r for r in state_runs(tmp_path) if r.name == report["run_id"]][0]
    kept = [r for r in journal_records(run / "journal.msgpack") if r["e"] == "reuse"]
    assert {r["task"] for r in kept} == {"extract", "side"}
    proc = flow("run", f, "--from", "transfrom", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean `transform`" in proc.stderr


def test_from_without_an_earlier_run_runs_everything(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE, MODULE)
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--from", "load")
    assert proc.returncode == 0, explain(proc)
    assert sorted(ran(tmp_path)) == ["extract", "load", "report", "side", "transform"]
    assert "every task runs" in proc.stderr


def test_resume_of_foreach_keeps_finished_instances(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline fan {}
        task items { sh "echo items >> ran.txt; echo '[1, 2, 3, 4]'"  output json }
        task each {
            foreach x in items
            sh "echo each{x} >> ran.txt; test {x} != 3 -o -f fixed && echo {x}"
        }
        task total { run agg:total  with { parts = each } }
    """, {"agg.py": "def total(parts):\n    return sum(int(p) for p in parts)\n"})
    proc, first = run_json(flow, f)
    assert proc.returncode == 1
    assert first["tasks"]["each[2]"]["status"] == "failed"
    ran(tmp_path)
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert ran(tmp_path) == ["each3"]
    assert report["tasks"]["total"]["result"] == 10
    assert report["tasks"]["each"]["status"] == "success"


def test_retries_start_afresh_in_a_resumed_session(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline r {}
        task flaky { sh "echo x >> ran.txt; wc -l < ran.txt; test -f fixed"  retry 1 }
    """)
    proc, first = run_json(flow, f)
    assert first["tasks"]["flaky"]["attempts"] == 2
    proc, second = run_json(flow, f, "--resume")
    assert second["tasks"]["flaky"]["attempts"] == 4, "two more attempts: the retry budget is per session"
    logs = sorted(p.name for p in (state_runs(tmp_path)[0] / "logs").iterdir())
    assert logs == ["flaky.1.log", "flaky.2.log", "flaky.3.log", "flaky.4.log"], "no log is overwritten"
    texts = [(state_runs(tmp_path)[0] / "logs" / name).read_text().strip() for name in logs]
    assert texts == ["1", "2", "3", "4"]
    status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "failed" and status["tasks"]["flaky"]["attempts"] == 4


def test_the_snapshot_agrees_with_the_journal_and_a_stale_one_is_ignored(flow, tmp_path):
    f, first = failed_first_run(flow, tmp_path)
    run = state_runs(tmp_path)[0]
    snapshot = run / "snapshot.json"
    assert snapshot.exists(), "a run that did not succeed saves its state for a fast resume"
    from_snapshot = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    saved = snapshot.read_bytes()
    snapshot.unlink()
    from_journal = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert from_snapshot == from_journal
    # a snapshot that no longer matches the journal's digest is not believed
    data = json.loads(saved)
    data["tasks"]["extract"][0] = "failed"
    data["journal"] = "0" * 64
    snapshot.write_text(json.dumps(data))
    assert json.loads(flow("status", "--json", cwd=tmp_path).stdout) == from_journal
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert sorted(ran(tmp_path)) == ["load", "report", "transform"], "extract was kept: the journal says so"
    assert not snapshot.exists(), "a run that succeeded has no snapshot"
