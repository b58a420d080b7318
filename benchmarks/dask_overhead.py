"""The dask executor's overhead against Dask's own client on the same cluster.

    python3 benchmarks/dask_overhead.py [--chain 500] [--fanout 1000] [--repeat 3]

Starts a cluster on 127.0.0.1 as a user would (`dask scheduler`, two `dask
worker` processes with two threads each), measures, and stops it. Needs the
dask extra (pip install -e '.[dask]').

* chain: N no-op `run` tasks, each `after` the previous. Baselines: Dask's own
  chain of futures (`client.submit(noop, previous)`, each task depending on
  the one before, the result fetched at the end), and a round trip per task
  (`client.submit(noop).result()` one after another: what any controller
  that looks at each result before the next task must pay).
* fan-out: one root, N tasks after it, one sink. Baselines: `client.map` of
  N calls, then `client.gather`; Dask's client kept at 4 in flight. Then the
  same fan-out with the pipeline's `concurrency` at N, against `client.map`.
* makespan: 64 tasks of time.sleep(0.25) on 2 workers x 2 threads, at
  concurrency 4; ideal 4.0 s.

A flow figure is a whole `Runner.run()` in this process (connect, upload,
journal, report included); CPU is this process's CPU time (the runner, or
Dask's client), beside the wall time. Flow and baseline alternate, A B A B,
`--repeat` times; the medians are printed.
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flowdsl import check  # noqa: E402
from flowdsl.lang.planner import make_plan  # noqa: E402
from flowdsl.run.driver import Runner, RunOptions  # noqa: E402

DASK = os.path.join(os.path.dirname(sys.executable), "dask")
TASKS = "import time\n\ndef noop():\n    return None\n\ndef nap():\n    time.sleep(0.25)\n"


def noop(*_):  # defined in __main__: Dask pickles it by value, the workers need nothing
    return None


def nap(*_):
    time.sleep(0.25)


def windowed(client, fn, n: int, window: int) -> None:
    """n calls with at most `window` in flight, refilled as each ends: what a bounded controller does."""
    from distributed import as_completed

    pending = as_completed([client.submit(fn, i, pure=False) for i in range(min(n, window))])
    submitted = min(n, window)
    for future in pending:
        future.result()
        if submitted < n:
            pending.add(client.submit(fn, submitted, pure=False))
            submitted += 1


class Silent:
    refresh = 1.0

    def __getattr__(self, name):
        return lambda *a, **k: None


class Cluster:
    def __init__(self, folder: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.folder = folder
        self.procs = []

    def __enter__(self):
        import distributed

        log = open(os.path.join(self.folder, "cluster.log"), "ab")
        common = dict(stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
                                            "--no-dashboard"], **common))
        for i in range(2):
            self.procs.append(subprocess.Popen([DASK, "worker", self.address, "--nthreads", "2", "--host",
                                                "127.0.0.1", "--no-dashboard", "--local-directory",
                                                os.path.join(self.folder, f"w{i}")], **common))
        self.client = distributed.Client(self.address, timeout=30)
        self.client.wait_for_workers(2, timeout=60)
        return self

    def __exit__(self, *exc):
        self.client.close()
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()


def timed(fn):
    """(wall seconds, CPU seconds of this process) of fn()."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def flow_run(path: str, state: str, address: str):
    loaded = check(path)
    assert not [d for d in loaded.diagnostics if d.severity == "error"]
    plan = make_plan(loaded.program)

    def go():
        report = Runner(plan, RunOptions(state_dir=state, executor="dask", dask_address=address), Silent()).run()
        assert report["status"] == "success", report["status"]
        go.report = report

    return go


def write(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def compare(label: str, n: int, flow_fn, baselines, repeat: int) -> None:
    runs = {"flow": []}
    runs.update({name: [] for name in baselines})
    for _ in range(repeat):
        runs["flow"].append(timed(flow_fn))
        for name, fn in baselines.items():
            runs[name].append(timed(fn))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}
    fw, fc = med["flow"]
    print(f"{label}: flow {fw / n * 1000:.2f} ms/task wall, {fc / n * 1000:.2f} ms/task CPU")
    for name in baselines:
        bw, bc = med[name]
        print(f"    {name}: {bw / n * 1000:.2f} ms/task wall, {bc / n * 1000:.2f} ms/task CPU; "
              f"flow/{name} = {fw / bw:.2f}x wall, {fc / bc:.2f}x CPU")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=500)
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--makespan", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="flow-dask-bench-")
    write(folder, "bench_tasks.py", TASKS)
    state = os.path.join(folder, ".flow")
    with Cluster(folder) as cluster:
        client = cluster.client
        n = args.chain
        lines = [f"task t{i} {{ run bench_tasks:noop" + (f" after t{i - 1}" if i else "") + " }" for i in range(n)]
        path = write(folder, "chain.flow", "\n".join(lines) + "\n")

        def dask_chain():
            f = None
            for _ in range(n):
                f = client.submit(noop, f, pure=False)
            f.result()

        def round_trips():
            for _ in range(n):
                client.submit(noop, pure=False).result()

        compare(f"chain of {n}", n, flow_run(path, state, cluster.address),
                {"dask submit chain": dask_chain, "dask submit+result each": round_trips}, args.repeat)

        n = args.fanout
        lines = ["task root { run bench_tasks:noop }"] + [f"task t{i} {{ run bench_tasks:noop after root }}"
                                                          for i in range(n)]
        lines.append("task sink { run bench_tasks:noop after " + ", ".join(f"t{i}" for i in range(n)) + " }")
        path = write(folder, "fan.flow", "\n".join(lines) + "\n")

        def dask_map():
            client.submit(noop, pure=False).result()
            client.gather(client.map(noop, range(n), pure=False))
            client.submit(noop, pure=False).result()

        def dask_window():
            client.submit(noop, pure=False).result()
            windowed(client, noop, n, 4)
            client.submit(noop, pure=False).result()

        compare(f"fan-out of {n}", n + 2, flow_run(path, state, cluster.address),
                {"dask map": dask_map, "dask 4 in flight": dask_window}, args.repeat)

        # the same fan-out with `concurrency` as wide as the fan-out: flow keeps every attempt in flight
        wide = write(folder, "fan_wide.flow", f"pipeline fan_wide {{ concurrency {n} }}\n" + "\n".join(lines) + "\n")
        compare(f"fan-out of {n} at concurrency {n}", n + 2, flow_run(wide, state, cluster.address),
                {"dask map": dask_map}, args.repeat)

        n = args.makespan
        lines = ["pipeline nap { concurrency 4 }"] + [f"task s{i} {{ run bench_tasks:nap }}" for i in range(n)]
        go = flow_run(write(folder, "nap.flow", "\n".join(lines) + "\n"), state, cluster.address)
        spans = []
        for _ in range(args.repeat):
            wall, _ = timed(go)
            tasks = [t for k, t in go.report["tasks"].items()]
            from datetime import datetime

            first = min(datetime.fromisoformat(t["started_at"]) for t in tasks)
            last = max(datetime.fromisoformat(t["finished_at"]) for t in tasks)
            spans.append(((last - first).total_seconds(), wall, timed(lambda: windowed(client, nap, n, 4))[0]))
        tasks_span = statistics.median(s for s, _, _ in spans)
        wall = statistics.median(w for _, w, _ in spans)
        dask_wall = statistics.median(d for _, _, d in spans)
        ideal = n * 0.25 / 4
        print(f"makespan: {n} x sleep(0.25) on 2 workers x 2 threads: first start to last end {tasks_span:.3f} s "
              f"({(tasks_span / ideal - 1) * 100:+.1f}% over the ideal {ideal:.1f} s); whole run with connect and "
              f"upload {wall:.3f} s ({(wall / ideal - 1) * 100:+.1f}%); Dask's own client, 4 in flight: "
              f"{dask_wall:.3f} s ({(dask_wall / ideal - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
