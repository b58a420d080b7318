"""Fault injection through the CLI: kills, interrupts, damaged journals, a full disk, runs at once.

The promise under test: whatever happens to a run, its journal stays
readable, its status is never `running` once its process is gone, and a
`--resume` finishes it without running again a task the journal says had
succeeded.
"""

import json
import os
import random
import resource
import signal
import sys
import time
from pathlib import Path

import pytest
from runkit import (
    explain,
    journal_records,
    kill_marked,
    new_marker,
    run_json,
    spawn_run,
    state_runs,
    wait_until,
    write_project,
)

# Twelve short tasks, some in a chain, some side by side; each writes its
# name to ran.txt when it starts, so every execution is counted.
KILL_PIPELINE = """
    pipeline k {{ concurrency 3 }}
    task a  {{ sh "echo a >> ran.txt; sleep {s[0]}" }}
    task b  {{ sh "echo b >> ran.txt; sleep {s[1]}"  after a }}
    task c  {{ sh "echo c >> ran.txt; sleep {s[2]}"  after a }}
    task d  {{ sh "echo d >> ran.txt; sleep {s[3]}"  after a }}
    task e  {{ sh "echo e >> ran.txt; sleep {s[4]}"  after b, c }}
    task f  {{ sh "echo f >> ran.txt; sleep {s[5]}"  after d }}
    task g  {{ sh "echo g >> ran.txt; sleep {s[6]}" }}
    task h  {{ sh "echo h >> ran.txt; sleep {s[7]}"  after g }}
    task i  {{ sh "echo i >> ran.txt; sleep {s[8]}"  after h, e }}
    task j  {{ sh "echo j >> ran.txt; sleep {s[9]}"  after f }}
    task k  {{ sh "echo k >> ran.txt; sleep {s[10]}" after i, j }}
    task l  {{ sh "echo l >> ran.txt; echo {{k}} done"  after k }}
"""
TASKS = list("abcdefghijkl")
KILL_TRIALS = 24


def succeeded_in(journal: Path) -> set:
    """Tasks whose success the journal holds (what a resume must not run again)."""
    records = journal_records(journal)
    return {r["task"] for r in records if r["e"] in ("end", "reuse") and r.get("status") == "success"}


def lines(path: Path) -> list:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("trial", range(KILL_TRIALS))
def test_sigkill_at_a_random_moment_then_resume(flow, pyz, tmp_path, trial):
    rng = random.Random(trial)
    sleeps = [round(rng.uniform(0.01, 0.08), 3) for _ in range(11)]
    f = write_project(tmp_path, KILL_PIPELINE.format(s=sleeps))
    marker = new_marker()
    proc = spawn_run(pyz, f, env={"FLOW_TEST_MARKER": marker})
    try:
        time.sleep(rng.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.communicate()
    runs = state_runs(tmp_path)
    if not runs or not (runs[0] / "journal.msgpack").exists() or not journal_records(runs[0] / "journal.msgpack"):
        # killed before the run's first record was written: nothing to resume, start again
        proc, report = run_json(flow, f)
        assert report["status"] == "success", explain(proc)
        return
    journal = runs[0] / "journal.msgpack"
    done_before = succeeded_in(journal)  # readable after the kill, torn tail or not
    ran_before = lines(tmp_path / "ran.txt")
    status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] in ("interrupted", "success"), "a killed run is never shown running"
    assert wait_until(lambda: not kill_marked_alive(marker), 3), "attempts outlived their runner"

    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["status"] == "success"
    assert all(report["tasks"][t]["status"] == "success" for t in TASKS), report["tasks"]
    ran_after = lines(tmp_path / "ran.txt")[len(ran_before):]
    again = done_before & set(ran_after)
    assert not again, f"trial {trial}: {sorted(again)} had succeeded and ran again"
    assert set(ran_before) | set(ran_after) >= set(TASKS)
    assert report["tasks"]["l"]["result"] == "done"
    records = journal_records(journal)
    assert records[-1]["e"] == "done" and records[-1]["status"] == "success"


def kill_marked_alive(marker: str) -> bool:
    from runkit import marked_processes

    return bool(marked_processes(marker))


SLOW = """
    pipeline slow {}
    task first  { sh "echo first >> ran.txt" }
    task long   { sh "echo long >> ran.txt; sleep 30"  after first }
    task last   { sh "echo last >> ran.txt"  after long }
"""


def wait_for_line(path: Path, text: str, timeout: float = 10) -> bool:
    return wait_until(lambda: text in lines(path), timeout)


def test_sigint_then_resume(flow, pyz, tmp_path):
    f = write_project(tmp_path, SLOW)
    proc = spawn_run(pyz, f)
    try:
        assert wait_for_line(tmp_path / "ran.txt", "long")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "interrupted"
    assert status["tasks"]["long"]["status"] == "pending"
    f.write_text(f.read_text().replace("sleep 30", "true"))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert lines(tmp_path / "ran.txt") == ["first", "long", "long", "last"]


def test_sigkill_shows_interrupted_everywhere(flow, pyz, tmp_path):
    f = write_project(tmp_path, SLOW)
    proc = spawn_run(pyz, f)
    try:
        assert wait_for_line(tmp_path / "ran.txt", "long")
        runs = json.loads(flow("runs", "--json", cwd=tmp_path).stdout)
        assert runs[0]["status"] == "running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
        proc.communicate()
    runs = json.loads(flow("runs", "--json", cwd=tmp_path).stdout)
    assert runs[0]["status"] == "interrupted"
    table = flow("runs", cwd=tmp_path).stdout
    assert "interrupted" in table and "running" not in table
    status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "interrupted" and status["tasks"]["long"]["status"] == "pending"
    assert status["tasks"]["first"]["status"] == "success"


def finished_failed_run(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline torn {}
        task a { sh "echo a >> ran.txt; echo A" }
        task b { sh "echo b >> ran.txt; test -f fixed"  after a }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1
    return f, state_runs(tmp_path)[0] / "journal.msgpack"


@pytest.mark.parametrize("tail", ["cut", "zeros"])
def test_a_torn_last_record_is_ignored_and_cut_on_resume(flow, tmp_path, tail):
    f, journal = finished_failed_run(flow, tmp_path)
    data = journal.read_bytes()
    if tail == "cut":
        journal.write_bytes(data[:-5])  # the `done` record, torn mid-write
    else:
        journal.write_bytes(data + b"\0" * 4096)  # a file system's torn append
    status = flow("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, explain(status)
    assert json.loads(status.stdout)["status"] in ("interrupted", "failed")
    (tmp_path / "fixed").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert lines(tmp_path / "ran.txt") == ["a", "b", "b"]
    records = journal_records(journal)  # whole again: the torn bytes were cut before appending
    assert records[-1]["e"] == "done" and records[-1]["status"] == "success"
    assert b"\0" * 16 not in journal.read_bytes()


@pytest.mark.parametrize("where", ["all", "middle"])
def test_a_garbage_journal_gives_one_clear_error(flow, tmp_path, where):
    f, journal = finished_failed_run(flow, tmp_path)
    data = bytearray(journal.read_bytes())
    if where == "all":
        data = bytearray(random.Random(1).randbytes(len(data)))
    else:
        data[len(data) // 2: len(data) // 2 + 8] = b"\xc1" * 8  # 0xc1 is never valid msgpack
    journal.write_bytes(bytes(data))
    for args in (["status"], ["run", f, "--resume"], ["logs", state_runs(tmp_path)[0].name]):
        proc = flow(*args, cwd=tmp_path)
        assert proc.returncode == 1, explain(proc)
        assert "Traceback" not in proc.stderr
        assert str(journal) in proc.stderr and "damaged" in proc.stderr and "delete" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # `flow runs` trusts a finished run's summary; without one it reads the journal
    assert json.loads(flow("runs", "--json", cwd=tmp_path).stdout)[0]["status"] == "failed"
    (journal.parent / "summary.json").unlink()
    runs = json.loads(flow("runs", "--json", cwd=tmp_path).stdout)
    assert runs[0]["status"] == "damaged" and str(journal) in runs[0]["error"]


def _limit_file_size(size: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        os.setsid()

    return apply


def test_a_full_disk_fails_the_run_cleanly_and_it_resumes(flow, pyz, tmp_path):
    f = write_project(tmp_path, """
        pipeline big {}
        task small { run big:small }
        task huge  { run big:huge  after small }
        task after { sh "echo after >> ran.txt"  after huge }
    """, {"big.py": """
        def small():
            open("ran.txt", "a").write("small\\n")
            return "x" * 1000

        def huge():
            open("ran.txt", "a").write("huge\\n")
            return "y" * 300_000
    """})
    import subprocess

    env = dict(os.environ, NO_COLOR="1")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(pyz), "run", str(f)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60, preexec_fn=_limit_file_size(200_000))
    assert proc.returncode == 1, explain(proc)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "cannot write the journal" in proc.stdout + proc.stderr
    assert "File too large" in proc.stdout + proc.stderr
    journal = state_runs(tmp_path)[0] / "journal.msgpack"
    records = journal_records(journal)  # readable: the failed write was cut back
    assert records[-1]["e"] == "done" and records[-1]["status"] == "failed"
    assert "cannot write the journal" in records[-1]["reason"]
    status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert status["status"] == "failed" and status["tasks"]["small"]["status"] == "success"
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["huge"]["result"] == "y" * 300_000
    ran = lines(tmp_path / "ran.txt")
    # small's success was journaled: kept. huge's end never reached the disk
    # (and `after` may have started in the same turn): they run again.
    assert ran.count("small") == 1 and ran.count("huge") == 2, ran


def test_two_runs_at_once_in_one_state_folder(flow, pyz, tmp_path):
    f = write_project(tmp_path, """
        pipeline twice { concurrency 2 }
        task a { foreach i in [1, 2, 3, 4]  sh "sleep 0.05; echo {i}" }
        task b { run sums:total  with { parts = a } }
    """, {"sums.py": "def total(parts):\n    return sum(int(p) for p in parts)\n"})
    procs = [spawn_run(pyz, f, "--json") for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    reports = [json.loads(out) for out, _ in outs]
    assert len({r["run_id"] for r in reports}) == 3
    assert all(r["tasks"]["b"]["result"] == 10 for r in reports)
    for run in state_runs(tmp_path):
        records = journal_records(run / "journal.msgpack")
        assert records[0]["run_id"] == run.name and records[-1]["status"] == "success"
        assert sum(r["e"] == "start" for r in records) == 5
    runs = json.loads(flow("runs", "--json", cwd=tmp_path).stdout)
    assert [r["status"] for r in runs] == ["success"] * 3


def test_resuming_a_live_run_is_refused(flow, pyz, tmp_path):
    f = write_project(tmp_path, SLOW)
    proc = spawn_run(pyz, f)
    try:
        assert wait_for_line(tmp_path / "ran.txt", "long")
        second = flow("run", f, "--resume", cwd=tmp_path)
        assert second.returncode == 2 and "still running" in second.stderr, explain(second)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert lines(tmp_path / "ran.txt") == ["first", "long"]


@pytest.fixture(autouse=True)
def _no_leftovers():
    marker = new_marker()
    yield
    kill_marked(marker)
