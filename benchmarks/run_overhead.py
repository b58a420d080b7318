"""Runner overhead against a bare ProcessPoolExecutor doing the same calls.

    python3 benchmarks/run_overhead.py [--chain 500] [--fanout 1000] [--big 10000] [--rounds 5]

Each shape runs `--rounds` times, flow and the bare pool alternating (A B A
B ...), in this process; it prints the median and the best of each side,
wall and CPU time (this process and its reaped workers), and their ratios.

* chain: N no-op Python tasks, each `after` the previous (process backend,
  two workers, journal on); the baseline submits the same calls one after
  another.
* fan-out (`--fanout` and `--big`): one root, N tasks after it, one sink
  after them all; the baseline submits N calls at once and waits for all.
  flow's figure is `Runner.run()` alone: the file is checked before the clock
  starts (the whole process is benchmarks/fanout_process.py's job).
* makespan: 16 tasks of time.sleep(0.25) at concurrency 4; ideal 1.0 s.

The whole `flow run` process (start, parse, check, run, report) and its peak
memory are measured by benchmarks/fanout_process.py.
"""

import argparse
import concurrent.futures as cf
import os
import resource
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import noop_tasks  # noqa: E402

from flowdsl import check  # noqa: E402
from flowdsl.lang.planner import make_plan  # noqa: E402
from flowdsl.run.driver import Runner, RunOptions  # noqa: E402

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


def cpu_now() -> float:
    """CPU seconds of this process and of its children reaped so far."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    def run(*args):
        c0, t0 = cpu_now(), time.perf_counter()
        fn(*args)
        return time.perf_counter() - t0, cpu_now() - c0
    return run


@timed
def run_flow(plan, state: str) -> None:
    report = Runner(plan, RunOptions(state_dir=state, workers=WORKERS), Silent()).run()
    assert report["status"] == "success", report["status"]


def checked(path: str):
    loaded = check(path)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    assert not errors, errors[:3]
    return make_plan(loaded.program)


@timed
def bare_chain(n: int) -> None:
    with cf.ProcessPoolExecutor(WORKERS) as pool:
        for _ in range(n):
            pool.submit(noop_tasks.noop).result()


@timed
def bare_fanout(n: int) -> None:
    with cf.ProcessPoolExecutor(WORKERS) as pool:
        pool.submit(noop_tasks.noop).result()
        for f in [pool.submit(noop_tasks.noop) for _ in range(n)]:
            f.result()
        pool.submit(noop_tasks.noop).result()


def compare(label: str, tasks: int, rounds: int, plan, state: str, bare, n: int) -> None:
    """flow and the bare pool alternating; medians and bests of wall and CPU time."""
    flow, base = [], []
    for _ in range(rounds):
        flow.append(run_flow(plan, state))
        base.append(bare(n))

    def line(name, runs):
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        return (f"  {name:<5} wall {statistics.median(walls) / tasks * 1000:.3f} ms/task "
                f"(best {min(walls) / tasks * 1000:.3f}), CPU {statistics.median(cpus) / tasks * 1000:.3f} ms/task")

    ratio = statistics.median(w for w, _ in flow) / statistics.median(w for w, _ in base)
    best = min(w for w, _ in flow) / min(w for w, _ in base)
    paired = statistics.median(f[0] / b[0] for f, b in zip(flow, base))
    cpu = statistics.median(c for _, c in flow) / statistics.median(c for _, c in base)
    print(f"{label}, {rounds} rounds interleaved: wall x{ratio:.2f} (medians), x{best:.2f} (bests), "
          f"x{paired:.2f} (median of each round's ratio); CPU x{cpu:.2f}")
    print(line("flow", flow))
    print(line("bare", base))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chain", type=int, default=500)
    ap.add_argument("--fanout", type=int, default=1000)
    ap.add_argument("--big", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="flow-run-bench-")
    os.symlink(os.path.join(ROOT, "benchmarks", "noop_tasks.py"), os.path.join(folder, "noop_tasks.py"))
    state = os.path.join(folder, ".flow")

    n = args.chain
    compare(f"chain of {n}", n, args.rounds, checked(write(folder, "chain.flow", chain_flow(n))), state,
            bare_chain, n)
    for n in (args.fanout, args.big):
        compare(f"fan-out of {n}", n + 2, args.rounds, checked(write(folder, f"fan{n}.flow", fanout_flow(n))),
                state, bare_fanout, n)

    lines = ["pipeline nap { concurrency 4 }"] + [f"task s{i} {{ run noop_tasks:nap }}" for i in range(16)]
    path = write(folder, "nap.flow", "\n".join(lines) + "\n")
    plan = checked(path)
    spans = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        Runner(plan, RunOptions(state_dir=state, workers=4), Silent()).run()
        spans.append(time.perf_counter() - t0)
    makespan = statistics.median(spans)
    print(f"makespan: 16 x sleep(0.25) at concurrency 4, median of {args.rounds}: {makespan:.3f} s "
          f"(best {min(spans):.3f}), ideal 1.000 s, {(makespan - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
