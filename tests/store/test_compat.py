"""State written by flow 0.1.0 before the package was regrouped still reads, resumes and ticks.

tests/data/compat-0.1.0 was made by that release's zipapp, in its folder:

    touch fail.marker
    flow run p.flow --state-dir state                                  # first ok (cached), second fails
    flow tick . --state-dir state --now 2026-12-01T10:03:00Z           # the first tick owns nothing yet
    flow tick . --state-dir state --now 2026-12-01T10:06:00Z --wait    # fires the 10:05 slot; fails too
    rm fail.marker

The manual run's snapshot and summary were then deleted, so its journal is
replayed; the scheduled run keeps both. Each test works on a copy.
"""

import json
import shutil

import pytest
from runkit import ROOT, explain

FIXTURE = ROOT / "tests" / "data" / "compat-0.1.0"
MANUAL = "compat-20261203T235034451-ea99"
SCHEDULED = "compat-20261203T235034936-9259"


@pytest.fixture
def old(tmp_path):
    folder = tmp_path / "compat"
    shutil.copytree(FIXTURE, folder)
    (folder / "state").chmod(0o700)
    return folder


def as_json(proc):
    assert proc.returncode in (0, 1), explain(proc)
    return json.loads(proc.stdout)


def test_the_history_of_old_runs_reads(flow, old):
    runs = as_json(flow("runs", "--state-dir", "state", "--json", cwd=old))
    assert [(r["run_id"], r["status"], r["trigger"]) for r in runs] == [
        (SCHEDULED, "failed", "schedule"), (MANUAL, "failed", "manual")]
    assert runs[0]["logical_date"] == "2026-12-01T10:05:00+00:00"
    for run_id in (MANUAL, SCHEDULED):
        report = as_json(flow("status", run_id, "--state-dir", "state", "--json", cwd=old))
        tasks = report["tasks"]
        assert tasks["second"]["status"] == "failed" and tasks["second"]["error"]["type"] == "RuntimeError"
        assert tasks["third"]["status"] == "skipped"
    manual = as_json(flow("status", MANUAL, "--state-dir", "state", "--json", cwd=old))
    assert manual["tasks"]["first"] == {**manual["tasks"]["first"], "status": "success",
                                        "result": {"value": 6, "when": "2026-01-02"}}
    logs = flow("logs", MANUAL, "second", "--state-dir", "state", cwd=old)
    assert logs.returncode == 0 and "second got 6" in logs.stdout, explain(logs)


def test_an_old_failed_run_resumes_keeping_what_succeeded(flow, old):
    proc = flow("run", "p.flow", "--state-dir", "state", "--resume", MANUAL, "--json", cwd=old)
    report = as_json(proc)
    assert proc.returncode == 0, explain(proc)
    assert report["run_id"] == MANUAL and report["status"] == "success"
    assert report["tasks"]["first"]["status"] == "success"
    assert report["tasks"]["first"]["result"] == {"value": 6, "when": "2026-01-02"}
    assert not (old / "state" / "runs" / MANUAL / "logs" / "first.2.log").exists()  # kept, not run again
    assert report["tasks"]["second"]["result"] == 7
    assert report["tasks"]["third"]["result"] == "third 7"


def test_the_old_result_cache_is_used(flow, old):
    proc = flow("run", "p.flow", "--state-dir", "state", "--json", cwd=old)
    report = as_json(proc)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["first"]["status"] == "cached"
    assert report["tasks"]["first"]["result"] == {"value": 6, "when": "2026-01-02"}


def test_the_old_tick_state_is_kept(flow, old):
    # the 10:05 slot was fired by the old release: not again
    again = as_json(flow("tick", ".", "--state-dir", "state", "--now", "2026-12-01T10:08:00Z", "--json", cwd=old))
    assert again["fired"] == [] and again["skipped"] == []
    # the next slot is owned from the old last tick on
    due = as_json(flow("tick", ".", "--state-dir", "state", "--now", "2026-12-01T10:11:00Z", "--dry-run",
                       "--json", cwd=old))
    assert [f["logical_date"] for f in due["fired"]] == ["2026-12-01T10:10:00+00:00"]
