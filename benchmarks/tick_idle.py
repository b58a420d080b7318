"""`flow tick` over a folder of pipeline files where nothing is due, against the bare interpreter.

    python3 benchmarks/tick_idle.py [--files 200] [--runs 10] [--pyz dist/flow.pyz]...

Writes FILES pipelines (each with three tasks, a Python module to check
against, and a daily cron schedule in its own time zone) into a temporary
folder, ticks once to fill the cache of checked files, then times
`flow.pyz tick FOLDER --now T` (nothing due at T) and `python3 -c pass`,
interleaved run by run, and prints the medians and best of wall and CPU
time (user + system, from wait4), the ratios and the time of the first,
uncached tick. Given several `--pyz` (main's build beside this one), each
ticks its own copy of the folder, interleaved in the same rounds.
The goal: under 0.5 s.
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


def timed_cpu(cmd, env):
    """(wall s, CPU s) of one run of `cmd` (its children included), which must fire nothing and succeed."""
    before = os.times()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    after = os.times()
    if proc.returncode != 0 or proc.stdout.strip():
        raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}, something fired or failed:\n"
                         f"{proc.stdout}{proc.stderr}")
    return took, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def line(name: str, times, base=None) -> str:
    walls, cpus = [w for w, _ in times], [c for _, c in times]
    text = (f"  {name:28} wall {statistics.median(walls) * 1000:7.1f} ({min(walls) * 1000:6.1f}) ms   "
            f"CPU {statistics.median(cpus) * 1000:7.1f} ({min(cpus) * 1000:6.1f}) ms")
    if base is not None:
        bw, bc = [w for w, _ in base], [c for _, c in base]
        text += (f"   x{statistics.median(walls) / statistics.median(bw):.1f} wall, "
                 f"x{statistics.median(cpus) / statistics.median(bc):.1f} CPU (medians)")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--pyz", action="append", help="a zipapp to time (repeatable; default: dist/flow.pyz)")
    args = ap.parse_args()
    pyzs = [ensure_pyz(p) for p in (args.pyz or [os.path.join("dist", "flow.pyz")])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with tempfile.TemporaryDirectory() as top:
        folders, firsts = [], []
        for n, pyz in enumerate(pyzs):
            folder = os.path.join(top, f"f{n}")  # each build its own state and cache
            os.mkdir(folder)
            for i in range(args.files):
                with open(os.path.join(folder, f"p{i}.flow"), "w") as f:
                    f.write(PIPELINE.format(i=i, minute=i % 60, zone=ZONES[i % len(ZONES)]))
                with open(os.path.join(folder, f"tasks{i}.py"), "w") as f:
                    f.write(MODULE)
            now = "2026-11-22T10:00:30Z"  # no slot in (10:00:00, 10:00:30]: nothing is due
            firsts.append(timed_cpu([sys.executable, pyz, "tick", folder, "--now", now], env)[0])
            folders.append(folder)
        time.sleep(2.0)  # the checked files are cached by a background process
        bare = [sys.executable, "-c", "pass"]
        a, b = [], [[] for _ in pyzs]
        for r in range(args.runs):
            a.append(timed_cpu(bare, env))
            for times, pyz, folder in zip(b, pyzs, folders):  # each a minute on: still nothing due
                times.append(timed_cpu([sys.executable, pyz, "tick", folder, "--now", f"2026-11-22T10:{1 + r:02d}:30Z"],
                                       env))
    print(f"flow tick over {args.files} files, nothing due: median (best) of {args.runs} interleaved rounds")
    print(line("python -c pass", a))
    for pyz, times, first in zip(pyzs, b, firsts):
        flow = statistics.median(w for w, _ in times)
        print(line(f"tick {os.path.relpath(pyz)}", times, a) + f"   goal {GOAL_S:.1f} s: "
              f"{'met' if flow < GOAL_S else 'MISSED'}; first, uncached tick {first:.2f} s")


if __name__ == "__main__":
    main()
