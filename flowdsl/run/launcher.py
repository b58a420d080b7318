"""How to start this flow again: from a crontab line (`flow init`), or for a `call` task's child run."""

from __future__ import annotations

import os
import sys
from typing import List


def flow_command() -> List[str]:
    """How this flow was started, as an absolute argv prefix that cron can run.

    From a zipapp: the interpreter and the archive. Else a `flow` on PATH
    that was installed with this package.
    Else `python -m flowdsl`, with PYTHONPATH set when the package would not
    be found by a fresh interpreter (a checkout rather than an install).
    """
    import shutil
    import zipfile

    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and os.path.isfile(argv0) and (argv0.endswith(".pyz") or zipfile.is_zipfile(argv0)):
        return [sys.executable, os.path.abspath(argv0)]
    found = shutil.which("flow")
    if found and _ours(found):
        return [os.path.abspath(found)]
    home = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds flowdsl/
    # sys.path[0] is the working folder under `-m`, and $PYTHONPATH is this
    # shell's: cron has neither
    ours = {os.path.realpath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p}
    on_path = {os.path.realpath(p) for p in sys.path[1:] if p} - ours
    prefix = [] if os.path.realpath(home) in on_path else [f"PYTHONPATH={home}"]
    return prefix + [sys.executable, "-m", "flowdsl"]


def _ours(path: str) -> bool:
    """Whether the `flow` on PATH is this one (pip's launcher imports flowdsl), not Facebook's Flow."""
    try:
        with open(path, "rb") as f:
            return b"flowdsl" in f.read(4096)
    except OSError:
        return False
