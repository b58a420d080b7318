"""What a waiting sensor costs: CPU time of a `flow run` whose one task waits for a file, against the same
run with the file there at once (no wait), a bare `python3 -c pass` and a Python that sleeps as long,
measured in this script, interleaved.

    python3 benchmarks/sensor_idle.py [--pyz dist/flow.pyz] [--wait 10] [--every 1s] [--rounds 3]

The file appears after `--wait` seconds; the sensor checks every `--every`. Each check is an attempt
handed to a worker and given back, so the figure is the runner's and its workers' CPU seconds for the
whole wait (children included), against what a sleeping interpreter spends: a sensor that held a
worker or polled in a loop would show here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def cpu_of(argv, cwd, env=None) -> tuple:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed:\n{proc.stdout}\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pyz", default=os.path.join(os.path.dirname(__file__), os.pardir, "dist", "flow.pyz"))
    ap.add_argument("--wait", type=float, default=10.0)
    ap.add_argument("--every", default="1s")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    pyz = os.path.abspath(args.pyz)
    flow_cpu, ready_cpu, sleep_cpu, pass_cpu, checks = [], [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "p.flow"), "w") as f:
            f.write(f'task inbox {{ wait file "go" every {args.every} timeout 10m }}\n')
        for _ in range(args.rounds):
            target = os.path.join(folder, "go")
            if os.path.exists(target):
                os.remove(target)
            timer = threading.Timer(args.wait, lambda path=target: open(path, "w").close())
            timer.start()
            _, cpu, out = cpu_of([sys.executable, pyz, "run", "p.flow", "--json", "--state-dir", "state"], folder)
            timer.join()
            flow_cpu.append(cpu)
            checks.append(json.loads(out)["tasks"]["inbox"].get("checks", 0))
            _, cpu, _ = cpu_of([sys.executable, pyz, "run", "p.flow", "--json", "--state-dir", "state"], folder)
            ready_cpu.append(cpu)  # the file is there now: the same run, one check
            _, cpu, _ = cpu_of([sys.executable, "-c", f"import time; time.sleep({args.wait})"], folder)
            sleep_cpu.append(cpu)
            _, cpu, _ = cpu_of([sys.executable, "-c", "pass"], folder)
            pass_cpu.append(cpu)
    med = statistics.median
    print(f"a sensor waiting {args.wait:g}s (checks every {args.every}; {med(checks):.0f} checks), "
          f"{args.rounds} rounds interleaved, CPU seconds, median (best):")
    print(f"  flow run, the whole process and its workers: {med(flow_cpu):.3f} ({min(flow_cpu):.3f})")
    print(f"  the same run with the file there at once:    {med(ready_cpu):.3f} ({min(ready_cpu):.3f})")
    print(f"  python3 sleeping as long:                    {med(sleep_cpu):.3f} ({min(sleep_cpu):.3f})")
    print(f"  python3 -c pass:                             {med(pass_cpu):.3f} ({min(pass_cpu):.3f})")
    print(f"  waiting / not waiting: x{med(flow_cpu) / med(ready_cpu):.2f}; per check: "
          f"{(med(flow_cpu) - med(ready_cpu)) / max(1, med(checks) - 1) * 1000:.1f} ms CPU")


if __name__ == "__main__":
    main()
