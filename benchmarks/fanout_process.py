"""The whole `flow run` of an N-task fan-out against the whole script of a bare process pool.

    python3 benchmarks/fanout_process.py [--tasks 10000] [--rounds 3] [--pyz dist/flow.pyz]...

Each round runs, one after another in fresh processes: a bare script that
maps N no-op calls over a 2-process ProcessPoolExecutor (start, pool, calls,
exit), then `python PYZ run fan.flow -q` for each `--pyz` (start, parse,
check, run, report: one root task, N tasks after it, one sink, concurrency
2). Every `flow run` gets a fresh state folder. Prints, for each, the
median and best wall time and CPU time (user + system of the process and
its children, from wait4) over the rounds, the ratios to the bare script,
and the peak RSS (ru_maxrss: the largest of the process and its children).
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile

from benchkit import ensure_pyz, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2

BARE = """
import concurrent.futures as cf, sys
sys.path.insert(0, {folder!r})
import noop_tasks
with cf.ProcessPoolExecutor({workers}) as pool:
    pool.submit(noop_tasks.noop).result()
    for f in [pool.submit(noop_tasks.noop) for _ in range({n})]:
        f.result()
    pool.submit(noop_tasks.noop).result()
"""


def fanout_flow(n: int) -> str:
    lines = [f"pipeline fan {{ concurrency {WORKERS} }}", "task root { run noop_tasks:noop }"]
    lines += [f"task t{i} {{ run noop_tasks:noop after root }}" for i in range(n)]
    lines.append("task sink { run noop_tasks:noop after " + ", ".join(f"t{i}" for i in range(n)) + " }")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pyz", action="append", help="a zipapp to time (repeatable; default: dist/flow.pyz)")
    args = ap.parse_args()
    pyzs = [ensure_pyz(p) for p in (args.pyz or [os.path.join(ROOT, "dist", "flow.pyz")])]
    env_python = sys.executable
    with tempfile.TemporaryDirectory(prefix="flow-fanout-") as folder:
        shutil.copy(os.path.join(ROOT, "benchmarks", "noop_tasks.py"), folder)
        with open(os.path.join(folder, "fan.flow"), "w") as f:
            f.write(fanout_flow(args.tasks))
        bare = [env_python, "-c", BARE.format(folder=folder, workers=WORKERS, n=args.tasks)]
        results = {"bare": []}
        results.update({pyz: [] for pyz in pyzs})
        for r in range(args.rounds):
            results["bare"].append(timed(bare, folder))
            for n, pyz in enumerate(pyzs):
                state = os.path.join(folder, f"state-{r}-{n}")
                results[pyz].append(timed([env_python, pyz, "run", "fan.flow", "-q", "--state-dir", state], folder))
                shutil.rmtree(state)
    base = results["bare"]

    def show(name, times):
        walls, cpus, rss = [t[0] for t in times], [t[1] for t in times], max(t[2] for t in times)
        text = (f"  {name:30} wall {statistics.median(walls):6.2f} s ({min(walls):5.2f})   "
                f"CPU {statistics.median(cpus):6.2f} s ({min(cpus):5.2f})   peak RSS {rss:4.0f} MB")
        if times is not base:
            bw, bc = [t[0] for t in base], [t[1] for t in base]
            text += (f"   x{statistics.median(walls) / statistics.median(bw):.2f} wall "
                     f"(best x{min(walls) / min(bw):.2f}), x{statistics.median(cpus) / statistics.median(bc):.2f} CPU")
        print(text)

    print(f"{args.tasks}-task fan-out, whole process, median (best) of {args.rounds} interleaved rounds:")
    show("bare ProcessPoolExecutor script", base)
    for pyz in pyzs:
        show(f"flow run ({os.path.relpath(pyz)})", results[pyz])


if __name__ == "__main__":
    main()
