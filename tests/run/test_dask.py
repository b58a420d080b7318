"""The dask executor, end to end, on a real cluster started as a user would.

One cluster for the module: `dask scheduler` and two `dask worker` processes
(two threads each) on 127.0.0.1, each command in its own session, so that
the finalizer kills every process it started, by process group. The runs are
the zipapp in a subprocess (the `flow` fixture), which finds `distributed` on
the interpreter's path: .ci/run installs the `dask` extra.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from daskkit import alive, free_port, running, stop
from runkit import explain, journal_records, run_json, spawn_run, state_runs, stopped, wait_until, write_project

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running(tmp_path_factory.mktemp("cluster")) as c:
        yield c


TASKS = {
    "tasks.py": """
        import os, sys, time

        def where(name):
            print("hello", name)
            print("to stderr", file=sys.stderr)
            return {"name": name, "file": __file__, "worker": os.getppid(), "group": os.getpgid(0) == os.getpid()}

        def double(x):
            return x * 2

        def total(values):
            return sum(values)

        def flaky(path):
            with open(path, "a") as f:
                f.write("x\\n")
            if len(open(path).read().split()) < 2:
                raise OSError("not yet")
            return "second time"

        def busy(path):
            with open(path, "w") as f:
                f.write(str(os.getpid()))
            while True:
                pass

        def slow(path, seconds):
            print("slow started", flush=True)
            with open(path, "a") as f:
                f.write(f"{os.getpid()} {os.getppid()}\\n")
            time.sleep(seconds)
            return "slept"

        def span(seconds):
            start = time.time()
            time.sleep(seconds)
            return [start, time.time()]

        def leak(token):
            print("the token is", token)
            return {"echo": token}

        def chatty(token, gate):
            print("the token is", token, flush=True)
            sys.stdout.write(token[:4])  # a secret cut in two writes, the second one later
            sys.stdout.flush()
            time.sleep(0.5)
            print(token[4:], "in two writes", flush=True)
            for _ in range(300):
                if os.path.exists(gate):
                    break
                time.sleep(0.1)
            print("after the gate")

        def thing():
            return object()

        class Patient:
            def __init__(self, path):
                self.path = path

            def run(self):
                with open(self.path, "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(60)

            def on_abort(self):
                with open("aborted.txt", "w") as f:
                    f.write("on_abort ran")

        def grandparent(seconds):
            start = time.time()
            time.sleep(seconds)
            worker = os.getppid()  # the attempt's parent is the worker process, started by its nanny
            with open(f"/proc/{worker}/stat") as f:
                nanny = int(f.read().rsplit(")", 1)[1].split()[1])
            return [nanny, start, time.time()]

        def report(report):
            with open("hook.json", "w") as f:
                f.write(str(sorted(report["tasks"])))
    """,
}


def test_run_sh_exec_foreach_results_and_logs_travel(flow, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task hello {{ run tasks:where  with {{ name = "x" }} }}
        task items {{ sh "echo '[1, 2, 3]'"  output json }}
        task each {{ foreach n in items  run tasks:double  with {{ x = n }} }}
        task sum {{ run tasks:total  with {{ values = each }} }}
        task shell {{ sh "echo {{sum}} $FLOW_TASK; echo oops >&2" }}
        task program {{ exec ["printf", "%s-%s", "{{shell}}", "{{hello.name}}"] }}
    """, TASKS)
    proc, report = run_json(flow, f, "-v")
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    assert tasks["each"]["result"] == [2, 4, 6] and tasks["sum"]["result"] == 12
    assert tasks["shell"]["result"] == "12 shell" and tasks["program"]["result"] == "12 shell-x"
    hello = tasks["hello"]["result"]
    # the module came through Dask's upload: a zip in the worker's folder, not the pipeline's folder
    assert "flowcode-" in hello["file"] and str(cluster.folder) in hello["file"], hello
    assert hello["group"] is True  # the attempt leads its own process group on the worker
    assert "hello | hello x" in proc.stderr and "shell | oops" in proc.stderr  # -v streams the output back
    run_id = report["run_id"]
    logs = flow("logs", run_id, "hello", cwd=tmp_path)
    assert logs.returncode == 0 and "hello x" in logs.stdout and "to stderr" in logs.stdout, explain(logs)
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    assert records[0]["executor"] == "dask"
    # which worker ran each attempt: in the journal, the report and `flow status`
    assert {t.get("worker", "")[:16] for k, t in tasks.items() if k != "each"} == {"tcp://127.0.0.1:"}
    assert {r.get("w", "")[:16] for r in records if r["e"] in ("began", "end")} == {"tcp://127.0.0.1:"}
    status = flow("status", run_id, cwd=tmp_path)
    assert "on tcp://127.0.0.1:" in status.stdout, explain(status)


def test_retries_when_hooks_and_secrets(flow, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{
            executor dask "{cluster.address}"
            params {{ token = secret("DASK_TEST_TOKEN") }}
            on finish run tasks:report
        }}
        task flaky {{ run tasks:flaky  with {{ path = "flaky.log" }}  retry 2 on OSError }}
        task broken {{ sh "exit 3" }}
        task rescue {{ sh "echo rescued"  after broken  when failure }}
        task never {{ sh "touch never.ran"  after broken }}
        task leak {{ run tasks:leak  with {{ token = params.token }} }}
    """, TASKS)
    proc, report = run_json(flow, f, env={"DASK_TEST_TOKEN": "s3cr3t-value"})
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["flaky"]["status"] == "success" and tasks["flaky"]["attempts"] == 2
    assert tasks["broken"]["status"] == "failed" and "exit status 3" in tasks["broken"]["error"]["message"]
    assert tasks["rescue"]["result"] == "rescued" and tasks["never"]["status"] == "skipped"
    assert not (tmp_path / "never.ran").exists()
    assert tasks["leak"]["result"] == {"echo": "***"}
    assert (tmp_path / "hook.json").exists()  # hooks stay local, in the pipeline's folder
    folder = state_runs(tmp_path)[0]
    for path in folder.rglob("*"):
        if path.is_file():
            assert b"s3cr3t-value" not in path.read_bytes(), path
    assert "the token is ***" in (folder / "logs" / "leak.1.log").read_text()


def test_results_use_the_pipelines_codec(flow, cluster, tmp_path):
    body = """
        task thing { run tasks:thing }
    """
    f = write_project(tmp_path, f'pipeline codec {{ executor dask "{cluster.address}" }}' + body, TASKS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert report["tasks"]["thing"]["error"]["type"] == "ResultTypeError"
    f = write_project(tmp_path / "p", f'pipeline codec {{ executor dask "{cluster.address}"  results pickle }}' + body,
                      TASKS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["thing"]["result"].startswith("<object object")


@pytest.mark.parametrize("results", ["msgpack", "pickle"])
def test_a_result_passed_whole_reaches_the_next_worker_as_its_bytes(flow, cluster, tmp_path, results):
    f = write_project(tmp_path, f"""
        pipeline whole {{ executor dask "{cluster.address}"  results {results} }}
        task make {{ run rows:make }}
        task count {{ run rows:count  with {{ rows = make  both = [make, 2]  first = make[0] }} }}
    """, {"rows.py": """
        def make():
            return [{"id": i, "when": (i, "x")} for i in range(20000)]

        def count(rows, both, first):
            assert type(rows[0]["when"]) is tuple and both[0] == rows and first == rows[0]
            return len(rows) + both[1]
    """})
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["count"]["result"] == 20002


def test_timeouts_kill_a_shell_command_and_a_busy_loop(flow, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task sleeper {{ sh "echo $$ > sleep.pid; exec sleep 60"  timeout 1s }}
        task spinner {{ run tasks:busy  with {{ path = "busy.pid" }}  timeout 1s }}
    """, TASKS)
    began = time.monotonic()
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert time.monotonic() - began < 20
    for name, pidfile in (("sleeper", "sleep.pid"), ("spinner", "busy.pid")):
        assert report["tasks"][name]["error"]["type"] == "Timeout", report["tasks"][name]
        pid = int((tmp_path / pidfile).read_text())
        assert wait_until(lambda pid=pid: not alive(pid), 5), f"{name}'s process {pid} outlived its timeout"


def most_at_once(spans) -> int:
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, d in events:
        running += d
        most = max(most, running)
    return most


@pytest.mark.parametrize("concurrency, args, expected", [
    ("concurrency 2", [], 2),
    ("", ["--workers", "1"], 1),
    ("", [], 3),  # neither: the cluster's 4 threads, not this machine's 2 CPUs (Dask may queue one behind another)
])
def test_concurrency_bounds_attempts_in_flight(flow, cluster, tmp_path, concurrency, args, expected):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}"  {concurrency} }}
        task spans {{ foreach i in [1, 2, 3, 4, 5, 6, 7, 8]  run tasks:span  with {{ seconds = 0.5 }} }}
    """, TASKS)
    proc, report = run_json(flow, f, *args)
    assert proc.returncode == 0, explain(proc)
    most = most_at_once(report["tasks"]["spans"]["result"])
    assert most == expected if args or concurrency else 3 <= most <= 4, most


def test_a_timeout_counts_from_the_start_on_a_worker_not_the_wait_in_dasks_queue(flow, cluster, tmp_path):
    """12 attempts of 1 s on the cluster's 4 threads: the last wave waits 2 s in Dask's queue, then runs 1 s;
    a timeout of 2.5 s is the run's, from each attempt's start (its `began`), so none times out."""
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}"  concurrency 12 }}
        task spans {{ foreach i in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  run tasks:span  with {{ seconds = 1 }}
                      timeout 2500ms }}
    """, TASKS)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    spans = report["tasks"]["spans"]["result"]
    assert most_at_once(spans) <= 4 and max(b for _, b in spans) - min(a for a, _ in spans) >= 2.5, spans
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    began = {r["task"]: r["t"] for r in records if r["e"] == "began"}
    assert len(began) == 12, records  # one `began` per attempt: each was queued until then
    for i, (start, _) in enumerate(spans):  # the task's own clock starts just after its `began`
        assert 0 <= start - began[f"spans[{i}]"] < 1.0, (i, start, began)


def test_resources_send_a_task_to_the_workers_that_have_them(flow, cluster, tmp_path):
    gpu = cluster.add_worker("gpu", "--nthreads", "1", "--resources", "gpu=1")
    try:
        with distributed.Client(cluster.address, timeout=30) as client:
            client.wait_for_workers(3, timeout=60)
        f = write_project(tmp_path, f"""
            pipeline remote {{ executor dask "{cluster.address}"  concurrency 4 }}
            task trained {{ foreach i in [1, 2, 3]  run tasks:grandparent  with {{ seconds = 0.2 }}
                            resources {{ gpu = 1 }} }}
        """, TASKS)
        proc, report = run_json(flow, f)
    finally:
        stop(gpu)
        cluster.procs.remove(gpu)
    assert proc.returncode == 0, explain(proc)
    results = report["tasks"]["trained"]["result"]
    assert {nanny for nanny, _, _ in results} == {gpu.pid}  # only the worker that declared a gpu
    spans = sorted((a, b) for _, a, b in results)
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(spans, spans[1:]))  # one gpu: one at a time


def test_a_worker_killed_mid_attempt_is_worker_died_and_retried_once(flow, pyz, cluster, tmp_path):
    """Dask does not start the attempt again behind flow's back (the second start is refused); flow's `retry`
    does. The cluster's settings stay as they were."""
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task victim {{ run tasks:slow  with {{ path = "victim.log"  seconds = 60 }}  retry 1 }}
    """, TASKS)
    run = spawn_run(pyz, f, "--json")
    with stopped(run):
        log = tmp_path / "victim.log"
        assert wait_until(lambda: log.exists() and log.read_text().strip(), 30), "the attempt never started"
        helper, worker_pid = map(int, log.read_text().split())
        first_log = lambda: b"".join(p.read_bytes() for p in tmp_path.glob(".flow/runs/*/logs/victim.1.log"))
        assert wait_until(lambda: first_log() == b"slow started\n", 10), "the output did not stream"
        os.kill(worker_pid, signal.SIGKILL)  # the `dask worker` process running it; its nanny starts another
        assert wait_until(lambda: len(log.read_text().split("\n")) > 2, 30), "the retry never started"
        assert wait_until(lambda: not alive(helper), 5), "the dead worker's attempt process lives on"
        time.sleep(2)  # time enough for a rerun behind flow's back
        lines = log.read_text().split("\n")
        assert len([x for x in lines if x]) == 2, lines  # the first attempt and flow's retry, nothing more
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    report = json.loads(out)
    records = journal_records(state_runs(tmp_path)[0] / "journal.msgpack")
    first = next(r for r in records if r["e"] == "end" and r["task"] == "victim")
    assert first["error"]["type"] == "WorkerDied" and first["retry_at"] is not None, first
    # Dask did give it to the other worker (the scheduler's allowed-failures is its default, 3, not changed
    # by flow), and that worker did not start it: each attempt starts at most once
    assert "which did not start it" in first["error"]["message"], first
    assert cluster.on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 3
    assert report["tasks"]["victim"]["attempts"] == 2
    assert first_log() == b"slow started\n"  # what had streamed stays in the dead attempt's log


def test_sigint_stops_remote_attempts_and_the_run_resumes(flow, pyz, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task quick {{ sh "echo done" }}
        task long {{ sh "echo $$ > long.pid; exec sleep 60"  after quick }}
        task last {{ sh "echo last"  after long }}
        task patient {{ run tasks:Patient  with {{ path = "patient.pid" }}  after quick }}
    """, TASKS)
    run = spawn_run(pyz, f)
    pidfile = tmp_path / "long.pid"
    with stopped(run):
        patient = tmp_path / "patient.pid"
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() and patient.exists(), 30)
        pid = int(pidfile.read_text())
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 130, f"{run.returncode}\n{out}\n{err}"
    assert wait_until(lambda: not alive(pid), 5), "the remote sleep outlived the interrupted run"
    # SIGINT reached the remote attempt, as it does a local one: the class's on_abort ran on the worker
    assert (tmp_path / "aborted.txt").read_text() == "on_abort ran"
    f.write_text(f.read_text().replace("exec sleep 60", "echo resumed").replace("run tasks:Patient", "sh \"echo\"")
                 .replace('with { path = "patient.pid" }', ""))
    proc, report = run_json(flow, f, "--resume", "--executor", f"dask://127.0.0.1:{cluster.port}")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["long"]["result"] == "resumed" and report["tasks"]["last"]["result"] == "last"
    assert report["tasks"]["quick"]["attempts"] == 1  # kept from the interrupted session


def test_a_sigkilled_runner_takes_its_remote_attempts_along_and_resumes(flow, pyz, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task first {{ sh "echo one" }}
        task long {{ run tasks:slow  with {{ path = "long.log"  seconds = 60 }}  after first }}
        task short {{ sh "echo two" }}
    """, TASKS)
    run = spawn_run(pyz, f)
    log = tmp_path / "long.log"
    with stopped(run):
        assert wait_until(lambda: log.exists() and log.read_text().strip(), 30), "long never started"
        helper = int(log.read_text().split()[0])
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    assert wait_until(lambda: not alive(helper), 10), "the remote attempt outlived its runner"
    f.write_text(f.read_text().replace("seconds = 60", "seconds = 0"))
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["long"]["result"] == "slept"
    assert report["tasks"]["first"]["attempts"] == 1  # kept, not run again


# ---- choosing the executor, and when it cannot start ----------------------------------------------------

SIMPLE = """
    pipeline remote {{ executor dask "{address}" }}
    task a {{ sh "touch a.ran" }}
"""


def test_an_unreachable_scheduler_exits_2_in_bounded_time_and_journals_nothing(flow, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    f = write_project(tmp_path, SIMPLE.format(address=address))
    began = time.monotonic()
    proc = flow("run", f, "--dask-timeout", "2", cwd=tmp_path)
    assert proc.returncode == 2, explain(proc)
    assert time.monotonic() - began < 30
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and address in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / ".flow").exists() and not (tmp_path / "a.ran").exists()
    detached = flow("run", f, "--detach", cwd=tmp_path, env={"FLOW_DASK_TIMEOUT": "2"})
    assert detached.returncode == 2 and address in detached.stderr, explain(detached)
    assert not (tmp_path / ".flow").exists()


def test_a_python_without_dask_exits_2_saying_how_to_install_it(flow, tmp_path):
    bare = tmp_path / "bare"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(bare)], check=True)
    f = write_project(tmp_path / "p", SIMPLE.format(address="tcp://127.0.0.1:8786"))
    proc = flow("run", f, cwd=f.parent, python=bare / "bin" / "python")
    assert proc.returncode == 2, explain(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'dask[distributed]'" in lines[0], proc.stderr
    assert not (f.parent / ".flow").exists()
    # every other verb works there as before
    assert flow("validate", f, python=bare / "bin" / "python").returncode == 0


@pytest.mark.parametrize("args, env, words", [
    (["--executor", "dask"], {}, ["--dask-address", "FLOW_DASK_ADDRESS"]),
    (["--executor", "dask://127.0.0.1:0"], {}, ["--executor", "port 0"]),
    (["--executor", "ray"], {}, ["ray"]),
    (["--dask-address", "tcp://127.0.0.1:8786"], {}, ["--dask-address"]),
    (["--executor", "dask", "--dask-address", "ftp://x:1"], {}, ["ftp"]),
    (["--executor", "dask"], {"FLOW_DASK_ADDRESS": "not an address"}, ["FLOW_DASK_ADDRESS"]),
    (["--executor", "dask://127.0.0.1:8786", "--dask-timeout", "soon"], {}, ["soon"]),
])
def test_executor_usage_errors_exit_2(flow, tmp_path, args, env, words):
    f = write_project(tmp_path, 'task a { sh "touch a.ran" }')
    proc = flow("run", f, *args, cwd=tmp_path, env=env)
    assert proc.returncode == 2, explain(proc)
    assert "Traceback" not in proc.stderr and all(w in proc.stderr for w in words), proc.stderr
    assert not (tmp_path / "a.ran").exists()


def test_the_address_comes_from_the_command_line_then_the_environment_then_the_file(flow, cluster, tmp_path):
    wrong = f"tcp://127.0.0.1:{free_port()}"
    f = write_project(tmp_path, SIMPLE.format(address=wrong))
    proc, report = run_json(flow, f, env={"FLOW_DASK_ADDRESS": f"127.0.0.1:{cluster.port}"})
    assert proc.returncode == 0, explain(proc)
    proc, report = run_json(flow, f, "--dask-address", cluster.address, env={"FLOW_DASK_ADDRESS": wrong})
    assert proc.returncode == 0, explain(proc)
    plain = write_project(tmp_path / "plain", 'task a { run tasks:where  with { name = "y" } }', TASKS)
    proc, report = run_json(flow, plain, "--executor", "dask", env={"FLOW_DASK_ADDRESS": cluster.address})
    assert proc.returncode == 0, explain(proc)
    assert "flowcode-" in report["tasks"]["a"]["result"]["file"]
    proc, report = run_json(flow, plain, env={"FLOW_DASK_ADDRESS": wrong})  # a process pipeline stays local
    assert proc.returncode == 0 and "flowcode-" not in report["tasks"]["a"]["result"]["file"], explain(proc)


def test_validate_points_at_a_bad_address(flow, tmp_path):
    f = write_project(tmp_path, SIMPLE.format(address="tcp://127.0.0.1:99999"))
    proc = flow("validate", f, "--format", "json")
    assert proc.returncode == 1
    (d,) = json.loads(proc.stdout)["diagnostics"]
    assert (d["code"], d["line"], d["column"]) == ("E102", 2, 33), d


def test_a_port_that_is_no_scheduler_exits_2_or_fails_the_detached_run(flow, tmp_path):
    """Something listens but never speaks Dask: the foreground run gives up after --dask-timeout (exit 2);
    a detached run passes the port check, then fails without starting a task, and says why."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(16)
        address = f"tcp://127.0.0.1:{mute.getsockname()[1]}"
        f = write_project(tmp_path, SIMPLE.format(address=address))
        proc = flow("run", f, "--dask-timeout", "1", cwd=tmp_path)
        assert proc.returncode == 2 and address in proc.stderr, explain(proc)
        assert not (tmp_path / ".flow").exists()
        detached = flow("run", f, "--detach", "--dask-timeout", "1", cwd=tmp_path)
        assert detached.returncode == 0, explain(detached)
        run_id = detached.stdout.strip()
        assert wait_until(lambda: flow("status", run_id, "--json", cwd=tmp_path).stdout.count('"failed"') > 0, 60)
    status = json.loads(flow("status", run_id, "--json", cwd=tmp_path).stdout)
    assert status["status"] == "failed" and status["tasks"]["a"]["attempts"] == 0, status
    assert address in (state_runs(tmp_path)[0] / "output.log").read_text()
    assert not (tmp_path / "a.ran").exists()


def test_tick_starts_a_dask_pipeline_on_the_cluster_from_the_environment(flow, cluster, tmp_path):
    f = write_project(tmp_path, """
        pipeline hourly {
            schedule every 1h
            executor dask "tcp://127.0.0.1:1"
        }
        task where { run tasks:where  with { name = run.trigger } }
    """, TASKS)
    proc = flow("tick", tmp_path, "--now", "2026-01-01T10:00:30", "--wait", "--json", cwd=tmp_path,
                env={"FLOW_DASK_ADDRESS": cluster.address})
    assert proc.returncode == 0, explain(proc)
    (fired,) = json.loads(proc.stdout)["fired"]
    report = json.loads((state_runs(tmp_path)[0] / "report.json").read_text())
    assert report["status"] == "success", report
    result = report["tasks"]["where"]["result"]
    assert result["name"] == "schedule" and "flowcode-" in result["file"], result
    assert fired["run_id"] == report["run_id"] and f.exists()


def test_tick_reads_the_dask_settings_of_the_environment_as_run_does(flow, tmp_path):
    write_project(tmp_path, """
        pipeline hourly {
            schedule every 1h
            executor dask "tcp://127.0.0.1:1"
        }
        task where { run tasks:where  with { name = run.trigger } }
    """, TASKS)
    cases = [({"FLOW_DASK_TIMEOUT": "soon"}, "the Dask connect timeout takes seconds"),
             ({"FLOW_DASK_ADDRESS": "h:\u00b2"}, "FLOW_DASK_ADDRESS: the port of `h:\u00b2` must be a number")]
    for hour, (env, said) in enumerate(cases, 10):  # each tick owns the next hour's slot
        proc = flow("tick", tmp_path, "--now", f"2026-01-01T{hour}:00:30", "--json", cwd=tmp_path, env=env)
        assert proc.returncode == 1 and said in proc.stdout + proc.stderr, explain(proc)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert state_runs(tmp_path) == [] or all(
            not (r / "report.json").exists() or json.loads((r / "report.json").read_text())["status"] == "failed"
            for r in state_runs(tmp_path))


def attempt_log(folder: Path, name: str) -> bytes:
    paths = list(folder.glob(f".flow/runs/*/logs/{name}"))
    return paths[0].read_bytes() if paths else b""


def test_remote_output_streams_to_the_log_and_to_v_while_the_attempt_runs(pyz, cluster, tmp_path):
    sleep_until_gate = "i=0; while [ ! -e gate ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done"  # 30 s at most
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task talk {{ sh "echo first line; {sleep_until_gate}; echo second line" }}
    """)
    run = spawn_run(pyz, f, "-v")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)  # -v goes to stdout
    reader.start()
    with stopped(run):
        # the command now sleeps until `gate` exists: its first line is already in the log, and on -v
        assert wait_until(lambda: attempt_log(tmp_path, "talk.1.log") == b"first line\n", 30), \
            attempt_log(tmp_path, "talk.1.log")
        assert wait_until(lambda: "talk | first line\n" in lines, 10), lines
        time.sleep(1)
        assert run.poll() is None and attempt_log(tmp_path, "talk.1.log") == b"first line\n"
        assert not any("second line" in x for x in lines), lines
        (tmp_path / "gate").touch()
        assert run.wait(30) == 0
        reader.join(10)
    # the end of the attempt adds only what had not streamed: each line once
    assert attempt_log(tmp_path, "talk.1.log") == b"first line\nsecond line\n"
    assert lines.count("talk | first line\n") == 1 and lines.count("talk | second line\n") == 1, lines


def test_streamed_remote_output_masks_secrets(pyz, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{
            executor dask "{cluster.address}"
            params {{ token = secret("DASK_TEST_TOKEN") }}
        }}
        task chatty {{ run tasks:chatty  with {{ token = params.token  gate = "gate" }} }}
        task shell {{ sh "echo {{params.token}} from sh" }}
    """, TASKS)
    run = spawn_run(pyz, f, "-v", env={"DASK_TEST_TOKEN": "s3cr3t-value"})
    with stopped(run):
        streamed = b"the token is ***\n*** in two writes\n"
        assert wait_until(lambda: attempt_log(tmp_path, "chatty.1.log") == streamed, 30), \
            attempt_log(tmp_path, "chatty.1.log")
        (tmp_path / "gate").touch()
        out, err = run.communicate(timeout=30)
    assert run.returncode == 0, f"{out}\n{err}"
    assert attempt_log(tmp_path, "chatty.1.log") == streamed + b"after the gate\n"
    assert attempt_log(tmp_path, "shell.1.log") == b"*** from sh\n"
    assert "s3cr" not in out + err
    for path in state_runs(tmp_path)[0].rglob("*"):
        if path.is_file():
            assert b"s3cr" not in path.read_bytes(), path


# ---- a good citizen of a shared cluster ----------------------------------------------------------------------


def test_ctrl_c_starts_no_queued_attempt_on_the_threads_it_frees(pyz, cluster, tmp_path):
    """8 attempts for the cluster's 4 threads: 4 run, the others wait in Dask's queues (some on the workers
    themselves). SIGINT stops the 4, and none of the others starts on the freed threads."""
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}"  concurrency 8 }}
        task many {{ foreach i in [1, 2, 3, 4, 5, 6, 7, 8]  run tasks:slow
                     with {{ path = "many.log"  seconds = 30 }} }}
    """, TASKS)
    log = tmp_path / "many.log"
    run = spawn_run(pyz, f, "--json")
    with stopped(run):
        assert wait_until(lambda: log.exists() and len(log.read_text().split("\n")) > 4, 30), "4 never started"
        time.sleep(0.5)
        began = time.monotonic()
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 130, f"{out}\n{err}"
    assert time.monotonic() - began < 4.5, err  # no attempt started late, to be killed after the 5 s grace
    time.sleep(1)
    assert len(log.read_text().split("\n")[:-1]) == 4, log.read_text()
    statuses = [t["status"] for k, t in json.loads(out)["tasks"].items() if "[" in k]
    assert statuses == ["pending"] * 8, statuses


def test_an_attempt_no_worker_can_take_is_said_and_fails_after_a_bounded_wait(flow, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task fine {{ sh "echo fine" }}
        task tpu {{ sh "echo never"  resources {{ tpu = 2 }} }}
        task after_tpu {{ sh "echo never"  after tpu }}
    """)
    began = time.monotonic()
    proc, report = run_json(flow, f, env={"FLOW_DASK_PLACEMENT_TIMEOUT": "2"})
    assert proc.returncode == 1, explain(proc)
    assert time.monotonic() - began < 30
    tasks = report["tasks"]
    assert tasks["fine"]["result"] == "fine" and tasks["after_tpu"]["status"] == "skipped"
    error = tasks["tpu"]["error"]
    assert error["type"] == "NoWorker" and tasks["tpu"]["attempts"] == 1, error
    # what it asked for, and what each worker offers
    assert "tpu=2" in error["message"] and "offered: tcp://127.0.0.1:" in error["message"], error
    assert "tpu waits in Dask's queue" in proc.stderr and "within 2s" in proc.stderr, proc.stderr


def test_uploads_are_deflated_and_bring_packages_without_init(flow, cluster, tmp_path):
    modules = dict(TASKS)
    modules["ziptest.py"] = """
        import zipfile

        def how():
            path = __file__[:__file__.index(".zip") + 4]  # the run's code zip on the worker
            with zipfile.ZipFile(path) as z:
                return {"file": __file__, "compression": z.getinfo("ziptest.py").compress_type}
    """
    modules["names/inner.py"] = "def hello():\n    return 'from a package without __init__.py'\n"
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task how {{ run ziptest:how }}
        task hello {{ run names.inner:hello }}
    """, modules)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    how = report["tasks"]["how"]["result"]
    assert "flowcode-" in how["file"] and how["compression"] == 8, how  # zipfile.ZIP_DEFLATED
    assert report["tasks"]["hello"]["result"] == "from a package without __init__.py"
    # Dask's dashboard groups the attempts by pipeline and task
    prefixes = cluster.on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert "remote.how" in prefixes and "remote.hello" in prefixes, prefixes


def test_two_runs_of_the_same_folder_each_have_their_own_upload(pyz, cluster, tmp_path):
    f = write_project(tmp_path, f"""
        pipeline remote {{
            executor dask "{cluster.address}"
            params {{ nap = 0 }}
        }}
        task one {{ run tasks:span  with {{ seconds = params.nap }} }}
        task two {{ run tasks:where  with {{ name = "second module use" }}  after one }}
    """, TASKS)
    slow = spawn_run(pyz, f, "--json", "--param", "nap=3")
    fast = spawn_run(pyz, f, "--json")
    with stopped(slow), stopped(fast):
        out_fast, err_fast = fast.communicate(timeout=60)
        out_slow, err_slow = slow.communicate(timeout=60)  # goes on after the fast run ended and cleaned up
    assert fast.returncode == 0 and slow.returncode == 0, f"{err_fast}\n{err_slow}"
    files = [json.loads(out)["tasks"]["two"]["result"]["file"] for out in (out_fast, out_slow)]
    assert files[0] != files[1] and all("flow-runs" in x for x in files), files


def test_tasks_see_the_variables_of_the_runners_environment_they_name_and_no_other(flow, cluster, tmp_path):
    modules = {"envtest.py": """
        import os

        def seen():
            return {"region": os.environ.get("DASK_TEST_REGION"),
                    "ours": sorted(k for k in os.environ if k.startswith("DASK_TEST_"))}
    """}
    f = write_project(tmp_path, f"""
        pipeline remote {{
            executor dask "{cluster.address}"
            params {{ token = secret("DASK_TEST_TOKEN") }}
        }}
        task seen {{ run envtest:seen }}
        task shell {{ sh "echo $DASK_TEST_REGION $(env | grep -c '^DASK_TEST_')" }}
        task uses {{ sh "test -n \\"$DASK_TEST_TOKEN\\" && echo has-it" }}
    """, modules)
    env = {"DASK_TEST_REGION": "emea", "DASK_TEST_UNNAMED": "nope", "DASK_TEST_TOKEN": "s3cr3t-value"}
    proc, report = run_json(flow, f, env=env)
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    # as a local attempt would see it, but only what the task names: not the secret it does not use
    assert tasks["seen"]["result"] == {"region": "emea", "ours": ["DASK_TEST_REGION"]}, tasks["seen"]
    assert tasks["shell"]["result"] == "emea 1", tasks["shell"]
    assert tasks["uses"]["result"] == "has-it"  # a command that names the secret gets it (masked in its log)


def test_a_data_file_missing_on_the_worker_is_explained(flow, cluster, tmp_path):
    modules = {"reader.py": """
        import os
        import tempfile

        def read():
            os.chdir(tempfile.mkdtemp())  # as on a worker that lacks the pipeline's folder
            with open("rows.csv") as f:
                return f.read()
    """, "rows.csv": "a,b\n"}
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task read {{ run reader:read }}
    """, modules)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    error = report["tasks"]["read"]["error"]
    assert error["type"] == "FileNotFoundError", error
    assert "`rows.csv` is on the runner's machine, not on the Dask worker" in error["message"], error
    assert "only the `.py` files" in error["message"], error


def test_executor_dask_without_an_address_takes_flow_dask_address(flow, cluster, tmp_path):
    f = write_project(tmp_path, 'pipeline p { executor dask }\ntask a { sh "echo ok" }')
    assert flow("validate", f).returncode == 0
    proc, report = run_json(flow, f, env={"FLOW_DASK_ADDRESS": cluster.address})
    assert proc.returncode == 0 and report["tasks"]["a"]["result"] == "ok", explain(proc)
    proc = flow("run", f, cwd=tmp_path, env={"FLOW_DASK_ADDRESS": ""})
    assert proc.returncode == 2 and "FLOW_DASK_ADDRESS" in proc.stderr, explain(proc)


def test_shipped_files_travel_with_the_code_to_a_worker_without_the_pipelines_folder(flow, cluster, tmp_path):
    """`ship`: the files and folders named travel with the code; an attempt on a worker that lacks the
    pipeline's folder (here: the folder is moved away before it runs) finds them where they lay."""
    project = tmp_path / "proj"
    f = write_project(project, f"""
        pipeline remote {{
            executor dask "{cluster.address}"
            ship "data", "lookup.txt"
        }}
        task hide {{ sh "mv {project} {tmp_path / 'moved'}" }}
        task read {{ sh "cat data/rows.csv lookup.txt; test -f notes.txt || echo no-notes"  after hide }}
    """, {"data/rows.csv": "a,b\n", "lookup.txt": "looked up\n", "notes.txt": "not shipped\n"})
    proc, report = run_json(flow, f, "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["read"]["result"] == "a,b\nlooked up\nno-notes"
    assert not project.exists()


def test_ship_is_checked_by_validate(flow, tmp_path):
    f = write_project(tmp_path / "p", """
        pipeline p { ship "data", "missing.csv", "../outside.txt", "/etc/hosts" }
        task t { sh "true" }
    """, {"data/x.csv": "1\n"})
    (tmp_path / "outside.txt").write_text("x")
    proc = flow("validate", f)
    assert proc.returncode == 1
    assert "E302 shipped path `missing.csv` not found" in proc.stdout
    assert proc.stdout.count("E101 `ship` takes a path inside the pipeline's folder") == 2, proc.stdout
    assert "`data`" not in proc.stdout  # a folder inside the pipeline's, which exists: fine


def test_get_client_inside_a_task_reaches_the_cluster_that_runs_it(flow, cluster, tmp_path):
    """A task's `get_client()` (distributed's or dask.distributed's) gives a client of the run's scheduler,
    whose futures run on the cluster, as Prefect's tasks use it. What it submits must unpickle on a Dask
    worker, which does not have the run's code: functions made inside the task (pickled by value) do."""
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task fan {{ run inner:fan  with {{ n = 5 }} }}
        task again {{ run inner:again  after fan }}
    """, {"inner.py": """
        from dask.distributed import get_client
        import distributed


        def fan(n):
            client = get_client()
            square = lambda x: x * x  # noqa: E731
            return [sum(client.gather(client.map(square, range(n)))), client.scheduler.address]


        def again():
            def cube(x):
                return x ** 3
            return distributed.get_client().submit(cube, 3).result()
    """})
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    total, address = report["tasks"]["fan"]["result"]
    assert total == 0 + 1 + 4 + 9 + 16
    assert address.rsplit(":", 1)[1] == cluster.address.rsplit(":", 1)[1]
    assert report["tasks"]["again"]["result"] == 27


def test_a_sensor_waits_on_the_cluster_holding_no_worker_thread(flow, cluster, tmp_path):
    """`wait` on Dask: each check is an attempt on the cluster, "not yet" frees its worker thread, and a
    resumed run waits again; other tasks run meanwhile."""
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task inbox {{ wait file "go"  every 200ms  timeout 60s }}
        task probe {{ wait run probes:ready  every 200ms  timeout 60s }}
        task busy {{ foreach i in [1, 2, 3, 4, 5, 6]  sh "sleep 0.2; echo {{i}}" }}
        task make {{ sh "touch go" after busy }}
    """, {"probes.py": "import os\n\ndef ready():\n    return os.path.exists('go') and 'ready'\n"})
    proc, report = run_json(flow, f, timeout=120)
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    assert tasks["inbox"]["result"] == ["go"] and tasks["probe"]["result"] == "ready"
    assert tasks["inbox"]["checks"] >= 1 and tasks["inbox"]["attempts"] == 1
    assert tasks["inbox"]["worker"].startswith("tcp://")


def test_a_call_runs_its_child_from_a_dask_worker(flow, cluster, tmp_path):
    """`call` on Dask: the child run starts where the attempt runs (a worker that sees the same paths, as
    this one on the runner's machine does) and lands in the parent's state folder."""
    write_project(tmp_path / "sub", 'task inner { sh "echo from-child" }\n', name="child.flow")
    f = write_project(tmp_path, f"""
        pipeline remote {{ executor dask "{cluster.address}" }}
        task c {{ call "sub/child.flow" }}
    """)
    proc, report = run_json(flow, f, timeout=120)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["c"]["result"] == {"inner": "from-child"}
    child = report["tasks"]["c"]["child_run"]
    assert (tmp_path / ".flow" / "runs" / child).is_dir()
