"""Big results between tasks: `flow run` against a bare ProcessPoolExecutor script doing the same.

    python3 benchmarks/big_results.py [--rows 200000] [--rounds 5] [--pyz dist/flow.pyz]

`make` returns ROWS small dicts ({"id", "name", "amount"}: 9 MB as msgpack
for 200,000) and `count` takes them whole and returns their len(). Each
round runs, interleaved in fresh processes: the bare script (a 2-process
pool: submit make, pass its result to count) and `python PYZ run` of the
two-task pipeline (process executor, 2 workers, fresh state folder).
Printed: the median (best) wall and CPU time of each, their ratio, and the
peak RSS of the largest process of each (ru_maxrss of the process and the
children it waited for).

Then, on the state folders those runs left: the size of the run's folder
against the result's msgpack size, `flow status RUN` and `flow run
--resume RUN` (which keeps both tasks) of the big run against the same of
a two-task run whose results are tiny (interleaved, `--rounds` each).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchkit import ensure_pyz, timed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TASKS = """
def make(rows={rows}):
    return [{{"id": i, "name": "customer %d" % i, "amount": i * 1.5}} for i in range(rows)]


def count(rows):
    return len(rows)
"""

FLOW = """pipeline {name} {{ concurrency 2 }}
task make {{ run bigtasks:make{args} }}
task count {{ run bigtasks:count with {{ rows = make }} }}
"""

BARE = """
import concurrent.futures as cf, sys
sys.path.insert(0, {folder!r})
import bigtasks
with cf.ProcessPoolExecutor(2) as pool:
    rows = pool.submit(bigtasks.make).result()
    assert pool.submit(bigtasks.count, rows).result() == {rows}
"""


def msgpack_size(folder: str, pyz: str) -> int:
    """The result's size as msgpack (the pure-Python packer of the zipapp when none is installed)."""
    code = (f"import sys; sys.path[:0] = [{folder!r}, {pyz!r}]; import msgpack, bigtasks; "
            "print(len(msgpack.packb(bigtasks.make(), use_bin_type=True)))")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def folder_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def only_run(state: str) -> str:
    (run_id,) = os.listdir(os.path.join(state, "runs"))
    return run_id


def show(name, times, base=None):
    walls, cpus, rss = [t[0] for t in times], [t[1] for t in times], max(t[2] for t in times)
    text = (f"  {name:34} wall {statistics.median(walls):6.3f} s ({min(walls):6.3f})   "
            f"CPU {statistics.median(cpus):6.3f} s ({min(cpus):6.3f})   peak RSS {rss:5.0f} MB")
    if base is not None:
        bw, bc, brss = [t[0] for t in base], [t[1] for t in base], max(t[2] for t in base)
        text += (f"   x{statistics.median(walls) / statistics.median(bw):.2f} wall "
                 f"(best x{min(walls) / min(bw):.2f}), x{statistics.median(cpus) / statistics.median(bc):.2f} CPU, "
                 f"x{rss / brss:.2f} RSS")
    print(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "flow.pyz"))
    args = ap.parse_args()
    pyz = ensure_pyz(args.pyz)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="flow-big-") as folder:
        with open(os.path.join(folder, "bigtasks.py"), "w") as f:
            f.write(TASKS.format(rows=args.rows))
        with open(os.path.join(folder, "big.flow"), "w") as f:
            f.write(FLOW.format(name="big", args=""))
        with open(os.path.join(folder, "tiny.flow"), "w") as f:
            f.write(FLOW.format(name="tiny", args=" with { rows = 3 }"))
        bare = [python, "-c", BARE.format(folder=folder, rows=args.rows)]
        runs = {"bare": [], "flow": []}
        for r in range(args.rounds):
            runs["bare"].append(timed(bare, folder))
            state = os.path.join(folder, f"state-{r}")
            runs["flow"].append(timed([python, pyz, "run", "big.flow", "-q", "--state-dir", state], folder))
            if r:
                shutil.rmtree(state)
        print(f"{args.rows} rows from one task to the next, median (best) of {args.rounds} interleaved rounds:")
        show("bare ProcessPoolExecutor script", runs["bare"])
        show("flow run", runs["flow"], runs["bare"])

        big_state = os.path.join(folder, "state-0")
        big_run = only_run(big_state)
        size, stored = msgpack_size(folder, pyz), folder_size(os.path.join(big_state, "runs", big_run))
        print(f"\nthe run's folder: {stored / 1e6:.2f} MB for a result of {size / 1e6:.2f} MB as msgpack "
              f"(x{stored / size:.2f})")

        tiny_state = os.path.join(folder, "state-tiny")
        timed([python, pyz, "run", "tiny.flow", "-q", "--state-dir", tiny_state], folder)
        tiny_run = only_run(tiny_state)
        views = {k: [] for k in ("status big", "status tiny", "resume big", "resume tiny")}
        for _ in range(args.rounds):
            for what, state, run_id, flow in (("big", big_state, big_run, "big.flow"),
                                              ("tiny", tiny_state, tiny_run, "tiny.flow")):
                views[f"status {what}"].append(timed([python, pyz, "status", run_id, "--state-dir", state], folder))
                views[f"resume {what}"].append(timed([python, pyz, "run", flow, "-q", "--resume", run_id,
                                                      "--state-dir", state], folder))
        print(f"\nviews of the run, median (best) of {args.rounds} interleaved rounds, against a two-task run "
              "with tiny results:")
        show("flow status (tiny results)", views["status tiny"])
        show("flow status (big result)", views["status big"], views["status tiny"])
        show("flow run --resume (tiny results)", views["resume tiny"])
        show("flow run --resume (big result)", views["resume big"], views["resume tiny"])


if __name__ == "__main__":
    main()
