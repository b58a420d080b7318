"""Validate generated 5,000- and 50,000-task pipelines through the CLI.

Prints wall time, tasks per second, and the ratio against CPython compiling
an equivalent Python file (one dict literal per task, same references) in
this same script: a baseline for "reading a file this size" that moves with
the machine's speed.

    python3 benchmarks/validate_scale.py [--sizes 5000,50000] [--pyz dist/flow.pyz]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import genflow  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_equivalent(tasks: int) -> str:
    lines = ["tasks = {}"]
    for i in range(tasks):
        ref = f"tasks['t{i - 1}']['value']" if i else "3"
        lines.append(f"tasks['t{i}'] = dict(run='work:step', x={ref}, path=f'out/{{date}}/{i}.csv', retry=(1, 1.0))")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5000,50000")
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "flow.pyz"))
    args = ap.parse_args()
    if os.path.exists(args.pyz):
        cmd = [sys.executable, args.pyz]
    else:
        print(f"({args.pyz} not built: measuring `python -m flowdsl` from the checkout)")
        cmd = [sys.executable, "-m", "flowdsl"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    folder = tempfile.mkdtemp(prefix="flow-bench-")
    for n in (int(s) for s in args.sizes.split(",")):
        path = genflow.write_pipeline(folder, n)
        size = os.path.getsize(path)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + ["validate", path], capture_output=True, text=True, env=env)
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"validate failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        source = python_equivalent(n)
        t0 = time.perf_counter()
        compile(source, "equivalent.py", "exec")
        baseline = time.perf_counter() - t0
        print(f"{n:>6} tasks ({size / 1e6:.1f} MB): flow validate {elapsed:6.2f} s = {n / elapsed:8.0f} tasks/s; "
              f"CPython compiling the same in Python {baseline:5.2f} s; ratio {elapsed / baseline:5.1f}x")


if __name__ == "__main__":
    main()
