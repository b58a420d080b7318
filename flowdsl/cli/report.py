"""`flow report`: a run's HTML page, or an index of the runs with a page each (also `flow runs --html`).

`flow report [RUN_ID] --html FILE` writes one run's page (default: the
latest run; a running run gives its state so far). When FILE is a folder
(it exists, or ends with `/`), the page goes into it as `<run_id>.html`;
with no RUN_ID, the folder gets `index.html` and a page for every run.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, List, Optional

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError


def add_report(p) -> None:
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="a run id or a unique prefix (default: the latest)")
    p.add_argument("--html", metavar="FILE", required=True,
                   help="where to write the page; a folder gets <run_id>.html, or without RUN_ID an index of every run")
    p.add_argument("--state-dir", metavar="DIR", help="the state folder (default ./.flow)")
    p.add_argument("--file", metavar="F.flow", help="use the state folder of this pipeline file, as `run` does")


def cmd_report(args) -> int:
    from ..store import history, journal, state
    from .inputs import take_file

    take_file(args, "run_id")
    root = state.state_dir(args.file, args.state_dir)
    target = args.html
    is_dir = is_folder(target)
    if is_dir and args.run_id is None:
        index = index_path(target)
        written, failed = write_index(root, history.runs(root), index, f"flow runs in {root}")
        print(f"wrote {index} and {written} run pages")
        return EXIT_FAILED if failed else EXIT_OK
    try:
        run_id = history.resolve(root, args.run_id)
    except history.NoSuchRun as e:
        raise UsageError(str(e)) from None
    path = os.path.join(target, f"{run_id}.html") if is_dir else target
    if is_dir:
        index_path(target)  # makes the folder
    _check_parent(path)
    try:
        write_page(state.run_dir(root, run_id), path)
    except journal.JournalError as e:
        print(f"flow report: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {path}")
    return EXIT_OK


def is_folder(target: str) -> bool:
    """`--html` names a folder: one that exists, or a path ending with `/`."""
    return os.path.isdir(target) or target.endswith(("/", os.sep))


def index_path(target: str) -> str:
    """Where an index goes for `--html TARGET`: TARGET itself, or `index.html` in the folder it names."""
    if not is_folder(target):
        return target
    try:
        os.makedirs(target, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot make the folder {target}: {e.strerror or e}") from None
    return os.path.join(target, "index.html")


def _check_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"no such folder: {parent}")


def write_page(folder: str, path: str) -> None:
    """The run kept in `folder` as a page at `path`. Raises journal.JournalError."""
    from .reportdata import page_data
    from .reportpage import render

    _write(path, render(page_data(folder)))


def write_index(root: str, runs: List[Dict], path: str, title: str) -> tuple:
    """`path` listing `runs` (history.runs rows), with each run's page beside it: (pages written, pages failed)."""
    from ..store import journal, state
    from .reportpage import render_index

    _check_parent(path)
    folder = os.path.dirname(os.path.abspath(path))
    pages: Dict[str, str] = {}
    failed = 0
    for r in runs:
        run_id: Optional[str] = r.get("run_id")
        if not run_id:
            continue
        name = f"{run_id}.html"
        try:
            write_page(state.run_dir(root, run_id), os.path.join(folder, name))
        except journal.JournalError as e:  # a damaged run is listed, unlinked, and said once
            print(f"flow: {run_id}: no page: {e}", file=sys.stderr)
            failed += 1
            continue
        pages[run_id] = name
    _write(path, render_index(runs, title, pages))
    return len(pages), failed


def _write(path: str, text: str) -> None:
    """Whole or not at all: written aside under a name nobody can plant, then renamed over `path`."""
    import tempfile

    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path) or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644 & ~_umask())  # a page, readable as a file the user wrote would be
        os.replace(tmp, path)
    except OSError as e:
        try:
            if tmp:
                os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
