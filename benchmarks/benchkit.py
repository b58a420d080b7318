"""What several benchmarks share: the zipapp they measure, and how a whole process is timed."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_pyz(path: str) -> str:
    """The zipapp at `path` (absolute), built first if it is missing."""
    pyz = os.path.abspath(path)
    if not os.path.exists(pyz):
        print(f"building {os.path.relpath(pyz, ROOT)}...", file=sys.stderr)
        subprocess.run([sys.executable, os.path.join(ROOT, "build_zipapp.py"), "--output", pyz], check=True)
    return pyz


def timed(cmd, cwd):
    """(wall s, CPU s, peak RSS MB) of one run of `cmd`, which must succeed. CPU: user + system of the
    process and the children it waited for (wait4); peak RSS: the largest of them (ru_maxrss)."""
    import time

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    proc.returncode = 0  # reaped above
    if status != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({status}):\n{err}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
