"""What the verbs read from the command line: usage errors, `.flow` paths, checked programs.

`UsageError` (exit 2) is defined in `lang.diagnostics`, so that the state folder's checks can raise it too.
"""

from __future__ import annotations

import os
import sys

from ..lang.diagnostics import UsageError

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple


def flow_files(paths: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(files named directly, files found in folders); a missing path is a usage error."""
    named, found = [], []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".flow"))
        elif os.path.exists(path):
            named.append(path)
        else:
            raise UsageError(f"no such file or folder: {path}")
    return named, found


def load_valid(path: str, targets: Sequence[str] = ()):
    """A program with no errors, or None after printing its diagnostics to stderr."""
    return load_checked(path, targets)[0]


def load_checked(path: str, targets: Sequence[str] = (), state_root: Optional[str] = None):
    """(load_valid's answer, a function that caches the checked program or None).

    With `state_root`, a program checked before and unchanged since is loaded from its cache there.
    """
    from ..lang.diagnostics import render_text
    from ..store.ircache import checked, folder

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    loaded, keep = checked(path, folder(state_root) if state_root else None, targets)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    if errors:
        print(render_text(errors, loaded.sources, color=sys.stderr.isatty(), included=loaded.included),
              file=sys.stderr)
        print(f"{path}: {len(errors)} error{'s' * (len(errors) != 1)}; run `flow validate {path}`", file=sys.stderr)
        return None, None
    return loaded.program, keep


def take_file(args, positional: str) -> None:
    """A `.flow` file given where a run id or a pipeline goes means `--file`: that file's state folder."""
    given = getattr(args, positional, None)
    if not getattr(args, "file", None) and isinstance(given, str) and given.endswith(".flow") \
            and os.path.isfile(given):
        args.file = given
        setattr(args, positional, None)
    if getattr(args, "file", None) and not os.path.isfile(args.file):
        raise UsageError(f"no such file: {args.file}")


def pipeline_of_file(path: str) -> str:
    """The pipeline a `.flow` file declares (its stem when it cannot be read)."""
    from ..lang.check import check

    try:
        loaded = check(path)
    except Exception:  # a file that cannot be read at all: what `validate` says of it is its business
        loaded = None
    program = getattr(loaded, "program", None)
    return program.pipeline.name if program is not None else os.path.splitext(os.path.basename(path))[0]


def add_file(p) -> None:
    p.add_argument("--file", metavar="F.flow", help="use the state folder of this pipeline file, as `run` does")
