"""`flow fmt --check` against `flow validate` on the same generated pipelines, through the zipapp.

Interleaved (validate, fmt, fmt of the formatted copy, validate, ...) several times;
prints the median wall time and CPU time (of the child process) of each and their ratio. fmt parses twice
(the checking parser for its diagnostics, the layout parser for the tree and the
comments), prints, then parses the result once more to check that its meaning is
unchanged; validate parses once and checks names, cron and the callables' sources.

    python3 benchmarks/fmt_speed.py [--sizes 1000,5000] [--rounds 5] [--pyz dist/flow.pyz]
"""

import argparse
import os
import resource
import shutil
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
        raw = genflow.write_pipeline(folder, n)
        # a second copy, formatted: `fmt --check` on a file already in canonical layout skips the re-parse
        done = os.path.join(folder, f"formatted-{n}.flow")
        shutil.copyfile(raw, done)
        subprocess.run([sys.executable, pyz, "fmt", done], check=True, capture_output=True)
        runs = {"validate": ["validate", raw], "fmt": ["fmt", "--check", raw],
                "fmt, formatted": ["fmt", "--check", done]}
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, argv in runs.items():
                proc, wall, cpu = timed([sys.executable, pyz, *argv])
                if proc.returncode not in (0, 1) or "Traceback" in proc.stderr:
                    sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
                times[name].append((wall, cpu))
        median = {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
                  for name, t in times.items()}
        vw, vc = median["validate"]
        print(f"{n:>6} tasks ({os.path.getsize(raw) / 1e6:.2f} MB), median of {args.rounds}: "
              f"validate {vw:5.2f} s wall {vc:5.2f} s CPU")
        for name in ("fmt", "fmt, formatted"):
            w, c = median[name]
            print(f"        {name:>15}: {w:5.2f} s wall {c:5.2f} s CPU; ratio to validate {w / vw:4.2f} wall, "
                  f"{c / vc:4.2f} CPU; {n / w:6.0f} tasks/s")


if __name__ == "__main__":
    main()
