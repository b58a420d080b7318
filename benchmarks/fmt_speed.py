"""`flow fmt --check` against `flow validate` on the same generated pipelines, through the zipapp.

Interleaved (validate, fmt, validate, fmt, ...) several times; prints the median wall
time and CPU time (of the child process) of each and their ratio. fmt parses twice
(the checking parser for its diagnostics, the layout parser for the tree and the
comments), prints, then parses the result once more to check that its meaning is
unchanged; validate parses once and checks names, cron and the callables' sources.

    python3 benchmarks/fmt_speed.py [--sizes 1000,5000] [--rounds 5] [--pyz dist/flow.pyz]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchkit  # noqa: E402
import genflow  # noqa: E402


def timed(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,5000")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pyz", default=os.path.join(benchkit.ROOT, "dist", "flow.pyz"))
    args = ap.parse_args()
    pyz = benchkit.ensure_pyz(args.pyz)
    folder = tempfile.mkdtemp(prefix="flow-fmt-bench-")
    for n in (int(s) for s in args.sizes.split(",")):
        path = genflow.write_pipeline(folder, n)
        # formatted first, so that every fmt run reads the same text and writes nothing
        subprocess.run([sys.executable, pyz, "fmt", path], check=True, capture_output=True)
        times = {"validate": [], "fmt": []}
        for _ in range(args.rounds):
            for verb, extra in (("validate", []), ("fmt", ["--check"])):
                proc, wall, cpu = timed([sys.executable, pyz, verb, *extra, path])
                if proc.returncode != 0:
                    sys.exit(f"{verb} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
                times[verb].append((wall, cpu))
        (vw, vc), (fw, fc) = ((statistics.median(w for w, _ in times[v]), statistics.median(c for _, c in times[v]))
                              for v in ("validate", "fmt"))
        print(f"{n:>6} tasks ({os.path.getsize(path) / 1e6:.2f} MB), median of {args.rounds}: "
              f"validate {vw:5.2f} s wall {vc:5.2f} s CPU; fmt --check {fw:5.2f} s wall {fc:5.2f} s CPU; "
              f"ratio fmt/validate {fw / vw:4.2f} wall, {fc / vc:4.2f} CPU; fmt {n / fw:7.0f} tasks/s")


if __name__ == "__main__":
    main()
