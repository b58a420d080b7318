"""Runner overhead against a bare ProcessPoolExecutor doing the same calls.

    python3 benchmarks/run_overhead.py [--chain 500] [--fanout 1000] [--scale 10000]

* chain: N no-op Python tasks, each `after` the previous (process backend,
  journal on); the baseline submits the same calls one after another.
* fan-out: one root, N tasks after it, one sink after them all; the
  baseline submits N calls at once and waits for all.
* makespan: 16 tasks of time.sleep(0.25) at concurrency 4; ideal 1.0 s.
* scale: an N-task fan-out through the CLI in a subprocess: wall time, time
  per task against the 1,000-task fan-out, and the runner's peak RSS.
"""

import argparse
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import noop_tasks  # noqa: E402

from flowdsl import check  # noqa: E402
from flowdsl.lang.planner import make_plan  # noqa: E402
from flowdsl.run.runner import Runner, RunOptions  # noqa: E402

WORKERS = 2


class Silent:
    refresh = 1.0

    def __getattr__(self, name):
        return lambda *a, **k: None


def write(folder: str, name: str, body: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(body)
    return path


def chain_flow(n: int) -> str:
    tasks = [f"task t{i} {{ run noop_tasks:noop" + (f" after t{i - 1}" if i else "") + " }" for i in range(n)]
    return f"pipeline chain {{ concurrency {WORKERS} }}\n" + "\n".join(tasks) + "\n"


def fanout_flow(n: int) -> str:
    lines = [f"pipeline fan {{ concurrency {WORKERS} }}", "task root { run noop_tasks:noop }"]
    lines += [f"task t{i} {{ run noop_tasks:noop after root }}" for i in range(n)]
    lines.append("task sink { run noop_tasks:noop after " + ", ".join(f"t{i}" for i in range(n)) + " }")
    return "\n".join(lines) + "\n"


def run_flow(path: str, state: str) -> float:
    loaded = check(path)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    assert not errors, errors[:3]
    plan = make_plan(loaded.program)
    t0 = time.perf_counter()
    report = Runner(plan, RunOptions(state_dir=state, workers=WORKERS), Silent()).run()
    elapsed = time.perf_counter() - t0
    assert report["status"] == "success", report["status"]
    return elapsed


def bare_chain(n: int) -> float:
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(WORKERS) as pool:
        for _ in range(n):
            pool.submit(noop_tasks.noop).result()
    return time.perf_counter() - t0


def bare_fanout(n: int) -> float:
    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(WORKERS) as pool:
        pool.submit(noop_tasks.noop).result()
        for f in [pool.submit(noop_tasks.noop) for _ in range(n)]:
            f.result()
        pool.submit(noop_tasks.noop).result()
    return time.perf_counter() - t0


def best(fn, *args, repeat=3) -> float:
    return min(fn(*args) for _ in range(repeat))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=500)
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--scale", type=int, default=10000)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="flow-run-bench-")
    os.symlink(os.path.join(ROOT, "benchmarks", "noop_tasks.py"), os.path.join(folder, "noop_tasks.py"))
    state = os.path.join(folder, ".flow")

    n = args.chain
    path = write(folder, "chain.flow", chain_flow(n))
    flow_t, bare_t = best(run_flow, path, state), best(bare_chain, n)
    print(f"chain of {n}:     flow {flow_t / n * 1000:.3f} ms/task, bare ProcessPoolExecutor "
          f"{bare_t / n * 1000:.3f} ms/task, ratio {flow_t / bare_t:.2f}x")

    n = args.fanout
    path = write(folder, "fan.flow", fanout_flow(n))
    flow_t, bare_t = best(run_flow, path, state), best(bare_fanout, n)
    fan_per_task = flow_t / (n + 2)
    print(f"fan-out of {n}: flow {fan_per_task * 1000:.3f} ms/task, bare ProcessPoolExecutor "
          f"{bare_t / (n + 2) * 1000:.3f} ms/task, ratio {flow_t / bare_t:.2f}x")

    lines = ["pipeline nap { concurrency 4 }"] + [f"task s{i} {{ run noop_tasks:nap }}" for i in range(16)]
    path = write(folder, "nap.flow", "\n".join(lines) + "\n")
    loaded = check(path)
    t0 = time.perf_counter()
    Runner(make_plan(loaded.program), RunOptions(state_dir=state, workers=4), Silent()).run()
    makespan = time.perf_counter() - t0
    print(f"makespan: 16 x sleep(0.25) at concurrency 4: {makespan:.3f} s, ideal 1.000 s, "
          f"{(makespan - 1) * 100:+.1f}%")

    pyz = os.path.join(ROOT, "dist", "flow.pyz")
    cmd = [sys.executable, pyz] if os.path.exists(pyz) else [sys.executable, "-m", "flowdsl"]

    def through_cli(n: int):
        path = write(folder, f"scale{n}.flow", fanout_flow(n))
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd + ["run", path, "-q", "--state-dir", state],
                                env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            sys.exit(f"the {n}-task run failed ({status})")
        return time.perf_counter() - t0, usage.ru_maxrss / 1024

    small, _ = through_cli(args.fanout)
    big, rss = through_cli(args.scale)
    # ru_maxrss: the largest of the runner and its (forked, smaller) workers
    print(f"scale: {args.scale}-task fan-out, whole `flow run` ({os.path.basename(cmd[-1])}): {big:.2f} s, "
          f"{big / (args.scale + 2) * 1000:.3f} ms/task against {small / (args.fanout + 2) * 1000:.3f} at "
          f"{args.fanout} ({big / (args.scale + 2) / (small / (args.fanout + 2)):.2f}x), peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
