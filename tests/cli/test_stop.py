"""`flow stop`: a live run stopped from outside, through the zipapp as a user would.

The run ends `interrupted` (its attempts and their children stopped) and a
resume finishes it; a run that is not live is exit 1, an unknown id exit 2.
"""

from __future__ import annotations

import json

import pytest
from runkit import (
    explain,
    marked_processes,
    new_marker,
    run_json,
    spawn_run,
    state_runs,
    stopped,
    wait_until,
    write_project,
)

FLOW = """
    task slow  { sh "echo started > started.txt; sleep 30; echo done > done.txt" }
    task after { sh "echo after"  after slow }
"""


@pytest.mark.parametrize("how", ["latest", "by id", "by file"])
def test_stop_ends_a_live_run_interrupted_and_a_resume_finishes_it(flow, pyz, tmp_path, how):
    marker = new_marker()
    f = write_project(tmp_path, FLOW)
    proc = spawn_run(pyz, f, "--json", env={"FLOW_E2E_MARK": marker})
    with stopped(proc, marker):
        assert wait_until(lambda: (tmp_path / "started.txt").exists(), 20), proc.poll()
        (run,) = state_runs(tmp_path)
        args = {"latest": [], "by id": [run.name[:-2]], "by file": [f]}[how]
        cwd = tmp_path if how != "by file" else tmp_path.parent
        stop = flow("stop", *args, cwd=cwd)
        assert stop.returncode == 0, explain(stop)
        assert run.name in stop.stdout and "--resume" in stop.stdout
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 130
        report = json.loads(out)
        assert report["status"] == "interrupted" and report["tasks"]["slow"]["status"] == "pending"
        assert wait_until(lambda: not [p for p in marked_processes(marker) if "sleep" in p[1]], 2)
        assert not (tmp_path / "done.txt").exists()
    again = flow("stop", run.name, cwd=tmp_path)
    assert again.returncode == 1 and "not live" in again.stdout, explain(again)
    f.write_text('task slow { sh "echo quick" }\ntask after { sh "echo after"  after slow }\n')  # made quick
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0 and report["status"] == "success", explain(proc)


def test_stop_with_nothing_live_and_with_an_unknown_id(flow, tmp_path):
    f = write_project(tmp_path, 'task a { sh "echo a" }\n')
    assert flow("run", f, cwd=tmp_path).returncode == 0
    proc = flow("stop", cwd=tmp_path)
    assert proc.returncode == 1 and "no run is live" in proc.stdout, explain(proc)
    proc = flow("stop", "nosuchrun-20260101T000000000-0000", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, explain(proc)
