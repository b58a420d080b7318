"""The dask executor when the cluster itself fails or changes: a cluster of its own per test.

Each test starts `dask scheduler` and `dask worker` processes on 127.0.0.1 (daskkit), small ones (one
worker of two threads, or none at first), and kills the scheduler, starts it again on the same port, or
adds a worker while a run goes on, as happens to a user's cluster. The runs are the zipapp in a
subprocess, as in test_dask.py.
"""

import json
import os
import re
import signal
import textwrap
import time

import pytest
from daskkit import Cluster, alive, parent, running
from runkit import explain, journal_records, run_json, spawn_run, state_runs, stopped, wait_until, write_project

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

TASKS = {
    "tasks.py": """
        import os, time

        def slow(name, seconds):
            with open("side.log", "a") as f:
                f.write(f"start {name} {os.getpid()}\\n")
            time.sleep(seconds)
            with open("side.log", "a") as f:
                f.write(f"end {name} {os.getpid()}\\n")
            return name

        def hold(name):  # starts, then waits until the test says the worker was killed
            with open("side.log", "a") as f:
                f.write(f"start {name} {os.getpid()}\\n")
            deadline = time.time() + 60
            while not os.path.exists("killed") and time.time() < deadline:
                time.sleep(0.05)
            return name

        def span(seconds):
            start = time.time()
            time.sleep(seconds)
            return [start, time.time()]
    """,
}

PIPELINE = """
    pipeline remote {{ executor dask "{address}" }}
    task first {{ run tasks:slow  with {{ name = "first"  seconds = 0 }} }}
    task long {{ run tasks:slow  with {{ name = "long"  seconds = {seconds} }}  after first  retry 2 }}
    task last {{ run tasks:slow  with {{ name = "last"  seconds = 0 }}  after long }}
"""


@pytest.fixture
def cluster(tmp_path_factory):
    with running(tmp_path_factory.mktemp("cluster"), workers=1, threads=2) as c:
        yield c


def side(folder) -> list:
    path = folder / "side.log"
    return path.read_text().split("\n")[:-1] if path.exists() else []


def started(folder, name) -> list:
    """The pids of the processes that started task `name`, in order."""
    return [int(line.split()[2]) for line in side(folder) if line.startswith(f"start {name} ")]


def no_dask_noise(text: str) -> None:
    """Dask's own log lines (`2026-... - distributed.client - ERROR - ...`) stay out of flow's output."""
    assert not re.search(r"distributed\.|tornado|Traceback| - ERROR - ", text), text


def wait_for_dask_workers_to_leave(cluster, timeout: float = 30) -> None:
    """The workers shut down on their own once their scheduler is gone (the nanny exits with its worker)."""
    assert wait_until(lambda: all(p.poll() is not None for p in cluster.procs), timeout), \
        "the workers outlived their scheduler"
    cluster.procs.clear()


def test_a_scheduler_restarted_mid_run_is_found_again_and_nothing_runs_twice(pyz, cluster, tmp_path):
    """The run waits for the scheduler, sets itself up again there (the new scheduler knows nothing of it) and
    starts the cut-off attempt again under the same number: no retry spent, the first copy stopped."""
    f = write_project(tmp_path, PIPELINE.format(address=cluster.address, seconds=4), TASKS)
    run = spawn_run(pyz, f, "--json", env={"FLOW_DASK_RECONNECT": "60"})
    with stopped(run):
        assert wait_until(lambda: started(tmp_path, "long"), 30), side(tmp_path)
        (first_copy,) = started(tmp_path, "long")
        cluster.kill_scheduler()
        assert wait_until(lambda: not alive(first_copy), 10), "the cut-off attempt kept running on its worker"
        wait_for_dask_workers_to_leave(cluster)
        time.sleep(1)  # the run is now dialling the address
        cluster.start_scheduler()
        cluster.add_worker("again")
        out, err = run.communicate(timeout=90)
    assert run.returncode == 0, f"{out}\n{err}"
    report = json.loads(out)
    assert {t: s["status"] for t, s in report["tasks"].items()} == {"first": "success", "long": "success",
                                                                   "last": "success"}
    assert report["tasks"]["long"]["attempts"] == 1  # losing the scheduler is not the attempt's failure
    lines = side(tmp_path)
    assert [x.split()[:2] for x in lines] == [["start", "first"], ["end", "first"], ["start", "long"],
                                              ["start", "long"], ["end", "long"], ["start", "last"],
                                              ["end", "last"]], lines
    assert f"end long {first_copy}" not in lines  # the first copy was stopped, not left to finish unseen
    assert "lost the Dask scheduler" in err and "reconnected to the Dask scheduler" in err, err
    no_dask_noise(err)
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    assert [r["status"] for r in records if r["e"] == "end" and r["task"] == "long"] == ["success"]
    log = next(state_runs(tmp_path)[0].glob("logs/long.1.log")).read_text()
    assert "the Dask scheduler was lost: this attempt starts again" in log, log


def test_a_scheduler_gone_for_good_interrupts_the_run_which_resumes_without_repeating(flow, pyz, cluster,
                                                                                       tmp_path):
    f = write_project(tmp_path, PIPELINE.format(address=cluster.address, seconds=30), TASKS)
    run = spawn_run(pyz, f, "--json", env={"FLOW_DASK_RECONNECT": "2"})
    with stopped(run):
        assert wait_until(lambda: started(tmp_path, "long"), 30), side(tmp_path)
        (first_copy,) = started(tmp_path, "long")
        began = time.monotonic()
        cluster.kill_scheduler()
        out, err = run.communicate(timeout=60)
    assert run.returncode == 130, f"{out}\n{err}"  # interrupted: resumable
    assert time.monotonic() - began < 20  # a bounded wait: 2 s to reconnect, the attempt already stopped
    assert wait_until(lambda: not alive(first_copy), 10), "the remote attempt outlived the lost scheduler"
    report = json.loads(out)
    assert report["status"] == "interrupted", report
    assert report["tasks"]["first"]["status"] == "success" and report["tasks"]["last"]["status"] == "pending"
    long = report["tasks"]["long"]
    assert long["status"] == "pending" and long["attempts"] == 1 and long["error"]["type"] == "Interrupted", long
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    (end,) = [r for r in records if r["e"] == "end" and r["task"] == "long"]
    assert end["status"] == "interrupted" and end.get("retry_at") is None, end  # `retry 2` spent nothing
    assert "was lost and did not come back within 2s" in err, err
    no_dask_noise(err)
    assert not any(x.startswith("end long") for x in side(tmp_path))

    wait_for_dask_workers_to_leave(cluster)
    cluster.start()
    f.write_text(f.read_text().replace("seconds = 30", "seconds = 0"))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["first"]["attempts"] == 1  # kept: it succeeded before the scheduler went
    assert [x.split()[:2] for x in side(tmp_path)].count(["start", "first"]) == 1
    assert report["tasks"]["long"]["status"] == "success" and report["tasks"]["last"]["status"] == "success"


def test_capacity_follows_workers_that_join_after_the_run_connected(pyz, tmp_path_factory, tmp_path):
    """A run that connects to a cluster with no worker says so, and uses the threads of those that join."""
    c = Cluster(tmp_path_factory.mktemp("empty"), workers=0, threads=2)
    try:
        c.start()
        f = write_project(tmp_path, f"""
            pipeline remote {{ executor dask "{c.address}" }}
            task spans {{ foreach i in [1, 2, 3, 4, 5, 6]  run tasks:span  with {{ seconds = 1 }} }}
        """, TASKS)
        run = spawn_run(pyz, f, "--json")
        with stopped(run):
            time.sleep(3)  # the run is waiting for a worker
            assert run.poll() is None
            c.add_worker(0)
            out, err = run.communicate(timeout=90)
    finally:
        c.stop()
    assert run.returncode == 0, f"{out}\n{err}"
    assert "has no workers" in err, err
    spans = json.loads(out)["tasks"]["spans"]["result"]
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    running = most = 0
    for _, d in events:
        running += d
        most = max(most, running)
    assert most == 2, spans  # the joined worker's two threads, not the 1 the empty cluster had at connect time


def test_a_run_leaves_no_helper_no_upload_and_no_plugin_behind(flow, pyz, cluster, tmp_path):
    f = write_project(tmp_path, PIPELINE.format(address=cluster.address, seconds=0), TASKS)
    for _ in range(2):
        proc, report = run_json(flow, f)
        assert proc.returncode == 0, explain(proc)
    f.write_text(textwrap.dedent(PIPELINE.format(address=cluster.address, seconds=60)))
    run = spawn_run(pyz, f)  # a third run, SIGKILLed mid-attempt: its client leaves abruptly
    with stopped(run):
        assert wait_until(lambda: len(started(tmp_path, "long")) == 3, 30), side(tmp_path)
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)

    def clean():
        state = cluster.on_scheduler(lambda dask_scheduler: (
            sorted(n for n in dask_scheduler.plugins if n.startswith("flow")),
            sorted(n for n in dask_scheduler.worker_plugins if n.startswith("flow")),
            sorted(n for n in dask_scheduler.handlers if n.startswith("flow")),
            dask_scheduler.allowed_failures))
        folders = [p for p in cluster.folder.glob("worker0/*/*/flow-runs/*")]
        helpers = cluster.helpers()
        return state == ([], [], [], 3) and not folders and not helpers, (state, folders, helpers)

    assert wait_until(lambda: clean()[0], 15), clean()[1]


def test_a_scheduler_restarted_while_the_run_waits_for_a_retry_gets_the_runs_code(pyz, cluster, tmp_path):
    """Nothing was in flight when the scheduler went (the run waited out a retry's delay): the retry runs on
    the new scheduler, which the run set up again (its code upload, its guard)."""
    modules = dict(TASKS)
    modules["flaky.py"] = """
        import os

        def once(path):
            first = not os.path.exists(path)
            open(path, "a").close()
            if first:
                raise OSError("not yet")
            return "second time"
    """
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task flaky {{ run flaky:once  with {{ path = "flaky.mark" }}  retry 1 delay 8s }}
    """, modules)
    run = spawn_run(pyz, f, "--json", env={"FLOW_DASK_RECONNECT": "60"})
    with stopped(run):
        assert wait_until(lambda: (tmp_path / "flaky.mark").exists(), 30), "the first attempt never ran"
        time.sleep(0.5)
        cluster.kill_scheduler()
        wait_for_dask_workers_to_leave(cluster)
        cluster.start_scheduler()
        cluster.add_worker("again")
        out, err = run.communicate(timeout=90)
    assert run.returncode == 0, f"{out}\n{err}"
    flaky = json.loads(out)["tasks"]["flaky"]
    assert flaky["result"] == "second time" and flaky["attempts"] == 2, flaky
    assert "reconnected to the Dask scheduler" in err, err
    no_dask_noise(err)


def test_an_attempt_queued_on_a_worker_that_dies_is_not_started_on_another(pyz, tmp_path_factory, tmp_path):
    """Dask sends a worker more attempts than it has threads (its `worker-saturation`): one of two runs on the
    single thread, the other waits in the worker's queue, where it claimed its key on arrival. The worker
    dies; Dask gives both to the worker its nanny starts, which starts neither: flow cannot know whether
    the queued one began, and starts an attempt at most once. Each fails as WorkerDied, and `retry` starts
    its second attempt: the queued task ran once in all."""
    with running(tmp_path_factory.mktemp("cluster"), workers=1, threads=1) as cluster:
        f = write_project(tmp_path, f"""
            pipeline remote {{ executor dask "{cluster.address}"  concurrency 2 }}
            task a {{ run tasks:hold  with {{ name = "a" }}  retry 1 }}
            task b {{ run tasks:hold  with {{ name = "b" }}  retry 1 }}
        """, TASKS)
        run = spawn_run(pyz, f, "--json")
        with stopped(run):
            assert wait_until(lambda: side(tmp_path), 30), "no attempt started"
            time.sleep(1)  # the other attempt is in the worker's queue by now, its claim answered
            ((_, ran, helper),) = [line.split() for line in side(tmp_path)]
            queued = "b" if ran == "a" else "a"
            os.kill(parent(int(helper)), signal.SIGKILL)  # the worker process; its nanny starts another
            (tmp_path / "killed").write_text("")
            out, err = run.communicate(timeout=90)
    assert run.returncode == 0, f"{out}\n{err}"
    report = json.loads(out)
    assert {t: (x["status"], x["attempts"]) for t, x in report["tasks"].items()} == {
        "a": ("success", 2), "b": ("success", 2)}, report
    assert len(started(tmp_path, ran)) == 2 and len(started(tmp_path, queued)) == 1, side(tmp_path)
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    for task in (ran, queued):
        (first,) = [r for r in records if r["e"] == "end" and r["task"] == task and r["n"] == 1]
        assert first["error"]["type"] == "WorkerDied" and "did not start it" in first["error"]["message"], first
    no_dask_noise(err)
