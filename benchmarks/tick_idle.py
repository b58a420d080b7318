"""`flow tick` over a folder of pipeline files where nothing is due, against the bare interpreter.

    python3 benchmarks/tick_idle.py [--files 200] [--runs 10] [--pyz dist/flow.pyz]

Writes FILES pipelines (each with three tasks, a Python module to check
against, and a daily cron schedule in its own time zone) into a temporary
folder, ticks once to fill the cache of checked files, then times
`flow.pyz tick FOLDER --now T` (nothing due at T) and `python3 -c pass`,
interleaved run by run, and prints the medians, the ratio and the time of
the first, uncached tick. The goal: under 0.5 s.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchkit import ensure_pyz

GOAL_S = 0.5
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo"]

PIPELINE = """\
pipeline p{i} {{
    description "pipeline number {i}"
    schedule cron "{minute} 3 * * *" tz "{zone}"
    schedule every 6h from "2026-01-01T01:00:00Z"
    catchup latest
    overlap skip
    params {{ day = run.date }}
}}
task extract {{ run tasks{i}:extract  with {{ day = params.day }} }}
task load    {{ run tasks{i}:load  with {{ rows = extract }}  retry 2 }}
task report  {{ sh "echo {{load}} rows"  after load }}
"""
MODULE = "def extract(day):\n    return [day]\n\n\ndef load(rows):\n    return len(rows)\n"


def timed(cmd, env) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0 or proc.stdout.strip():
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}, something fired or failed:\n"
                         f"{proc.stdout}{proc.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--pyz", default=os.path.join("dist", "flow.pyz"))
    args = ap.parse_args()
    pyz = ensure_pyz(args.pyz)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.files):
            with open(os.path.join(folder, f"p{i}.flow"), "w") as f:
                f.write(PIPELINE.format(i=i, minute=i % 60, zone=ZONES[i % len(ZONES)]))
            with open(os.path.join(folder, f"tasks{i}.py"), "w") as f:
                f.write(MODULE)
        now = "2026-11-22T10:00:30Z"  # no slot in (10:00:00, 10:00:30]: nothing is due
        tick = [sys.executable, pyz, "tick", folder, "--now"]
        first = timed(tick + [now], env)
        time.sleep(2.0)  # the checked files are cached by a background process
        bare = [sys.executable, "-c", "pass"]
        a, b = [], []
        for r in range(args.runs):
            a.append(timed(bare, env))
            b.append(timed(tick + [f"2026-11-22T10:{1 + r:02d}:30Z"], env))  # each a minute on: still nothing due
        base, flow = statistics.median(a), statistics.median(b)
    print(f"flow tick over {args.files} files, nothing due (median of {args.runs}):")
    print(f"  python -c pass     {base * 1000:7.1f} ms")
    print(f"  flow tick          {flow * 1000:7.1f} ms   ({flow / base:.1f}x bare python; goal {GOAL_S:.1f} s: "
          f"{'met' if flow < GOAL_S else 'MISSED'})")
    print(f"  first tick, nothing cached yet: {first:.2f} s")


if __name__ == "__main__":
    main()
