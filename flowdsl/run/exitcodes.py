"""The exit codes of the contract, a run's status as one, and the short report of a bug.

`flow` itself and a run forked away from it (`schedule.launch`) end the same way.
"""

from __future__ import annotations

import os
import sys

from .. import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 70, 130


def exit_code(status: str) -> int:
    """A run's exit code from its final status."""
    return {"success": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(status, EXIT_FAILED)


def report_bug(error: BaseException) -> int:
    """One line on stderr naming the error and a file holding its traceback; EXIT_BUG."""
    import tempfile
    import time
    import traceback

    path = os.path.join(tempfile.gettempdir(), f"flow-crash-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"flow {__version__} on Python {sys.version}\nargv: {sys.argv}\n\n")
            traceback.print_exc(file=f)
        where = f"the traceback is in {path}"
    except OSError:
        where = "the traceback could not be written"
    print(f"flow: internal error: {type(error).__name__}: {error} ({where}; please report it)", file=sys.stderr)
    return EXIT_BUG
