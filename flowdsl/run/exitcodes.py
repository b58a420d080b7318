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


def report_bug(error: BaseException, folder: str | None = None) -> int:
    """One line on stderr naming the error and a file holding its traceback; EXIT_BUG.

    The file is the user's alone (mode 0600, a new name nobody can guess: the
    traceback and argv may say more than others should read). It goes into
    `folder` when the caller has one (a detached run: its own folder, beside
    its output.log), else into the user's state folder for flow
    ($XDG_STATE_HOME/flow, by default ~/.local/state/flow), else into the
    temporary folder.
    """
    import traceback

    text = f"flow {__version__} on Python {sys.version}\nargv: {sys.argv}\n\n{traceback.format_exc()}"
    path = _write_privately(text, [folder] if folder else [])
    where = f"the traceback is in {path}" if path else "the traceback could not be written"
    print(f"flow: internal error: {type(error).__name__}: {error} ({where}; please report it)", file=sys.stderr)
    return EXIT_BUG


def crash_folder() -> str:
    """$XDG_STATE_HOME/flow, or ~/.local/state/flow (XDG's default): made mode 0700 if missing."""
    from ..store.state import ensure_private_dir

    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    os.makedirs(base, exist_ok=True)
    return ensure_private_dir(os.path.join(base, "flow"))


def _write_privately(text: str, folders: list) -> str | None:
    """The path of a new file holding `text` in the first of the folders (then crash_folder, the temp folder)
    where one can be made; None if none can."""
    import tempfile
    import time

    prefix = f"flow-crash-{time.strftime('%Y%m%dT%H%M%S')}-"
    for where in [*folders, crash_folder, tempfile.gettempdir]:
        try:
            folder = where() if callable(where) else where
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=".txt", dir=folder)  # 0600, O_EXCL, O_NOFOLLOW
        except Exception:  # noqa: BLE001  (a bug report must not fail: try the next place)
            continue
        try:
            with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
                f.write(text)
            return path
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass
    return None
