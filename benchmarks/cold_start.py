"""Cold start of the zipapp: `flow.pyz validate` against the bare interpreter.

    python3 benchmarks/cold_start.py [--python PATH]... [--runs 20] [--pyz dist/flow.pyz]... [--system]
                                     [--flow FILE]

Times `python dist/flow.pyz validate FILE` (default examples/orders/orders.flow;
benchmarks/three_tasks.flow is the issue's "3-task file") and `python -c pass`,
each a fresh process, interleaved run by run so that both see the same machine
load, and prints for each the median and the best wall time and CPU time
(user + system, from wait4), the difference in ms and the ratios.
The goal: at most 80 ms more than the bare interpreter.
Given several `--pyz` (an older build beside the new one, say), all of them
are interleaved in the same runs, so that the builds compare fairly.

By default each interpreter runs from a fresh venv without pip (made in a
temporary folder): a stock CPython with nothing installed, which is what the
zipapp promises to run on, and which keeps the build machine's site-packages
(a `regex` module that lark would pick up, .pth files) out of the figures.
`--system` runs the interpreter as it is instead.
An interpreter the archive has no bytecode tree for uses its bytecode cache
(a fresh one in a temporary folder, filled by the untimed first run), as
every run after a user's first does.
Builds the pyz first if it is missing. To see where the time goes:
`python -X importtime dist/flow.pyz validate examples/orders/orders.flow`.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchkit import ensure_pyz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join("examples", "orders", "orders.flow")
GOAL_MS = 80.0


def timed(cmd, env):
    """(wall ms, CPU ms) of one run of `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped here
    return (time.perf_counter() - start) * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def summary(times) -> dict:
    walls, cpus = [w for w, _ in times], [c for _, c in times]
    return {"wall": statistics.median(walls), "wall_best": min(walls), "cpu": statistics.median(cpus),
            "cpu_best": min(cpus)}


def measure(python: str, pyzs: list, runs: int, flow_file: str, cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["FLOW_BYTECODE_CACHE"] = cache  # a fresh one: an interpreter without a tree fills it in the check below
    bare = [python, "-c", "pass"]
    flows = [[python, pyz, "validate", flow_file] for pyz in pyzs]
    for flow in flows:
        check = subprocess.run(flow, cwd=ROOT, env=env, capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"{' '.join(flow)} exited {check.returncode}:\n{check.stdout}{check.stderr}")
    for _ in range(2):  # warm the file cache; not counted
        for cmd in [bare, *flows]:
            timed(cmd, env)
    a, b = [], [[] for _ in flows]
    for _ in range(runs):
        a.append(timed(bare, env))
        for times, flow in zip(b, flows):
            times.append(timed(flow, env))
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True).stdout.strip()
    return {"version": version, "bare": summary(a), "flows": [summary(t) for t in b]}


def in_venv(python: str, folder: str) -> str:
    """A fresh venv of `python` without pip; returns its interpreter."""
    subprocess.run([python, "-m", "venv", "--without-pip", folder], check=True)
    return os.path.join(folder, "Scripts" if os.name == "nt" else "bin", "python")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", help="an interpreter to measure (repeatable; default: this one)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--pyz", action="append", help="a zipapp to time (repeatable; default: dist/flow.pyz)")
    ap.add_argument("--system", action="store_true", help="run the interpreters as they are, not from a fresh venv")
    ap.add_argument("--flow", default=EXAMPLE, help=f"the file to validate (default {EXAMPLE})")
    args = ap.parse_args()
    pyzs = [os.path.abspath(p) for p in args.pyz] if args.pyz else [ensure_pyz(os.path.join(ROOT, "dist", "flow.pyz"))]
    flow_file = os.path.abspath(args.flow)
    print(f"cold start, {args.runs} interleaved runs: `python PYZ validate {os.path.relpath(flow_file, ROOT)}` "
          "vs `python -c pass`; median (best) in ms")
    for python in args.python or [sys.executable]:
        with tempfile.TemporaryDirectory(prefix="cold-start-") as tmp:
            exe = python if args.system else in_venv(python, os.path.join(tmp, "venv"))
            r = measure(exe, pyzs, args.runs, flow_file, os.path.join(tmp, "cache"))
        base = r["bare"]
        print(f"  Python {r['version']:8} bare: wall {base['wall']:6.1f} ({base['wall_best']:5.1f})   "
              f"CPU {base['cpu']:6.1f} ({base['cpu_best']:5.1f})")
        for pyz, flow in zip(pyzs, r["flows"]):
            diff = flow["wall"] - base["wall"]
            verdict = "ok" if diff <= GOAL_MS else "MISSED"
            print(f"    {os.path.relpath(pyz)}: wall {flow['wall']:6.1f} ({flow['wall_best']:5.1f}) "
                  f"x{flow['wall'] / base['wall']:.1f} (x{flow['wall_best'] / base['wall_best']:.1f})   "
                  f"CPU {flow['cpu']:6.1f} ({flow['cpu_best']:5.1f}) x{flow['cpu'] / base['cpu']:.1f} "
                  f"(x{flow['cpu_best'] / base['cpu_best']:.1f})   +{diff:5.1f} ms (goal +{GOAL_MS:.0f}: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
