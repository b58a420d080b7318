"""What several benchmarks share: the zipapp they measure."""

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
