"""`flow validate`: check files and folders, report every problem in one of four formats."""

from __future__ import annotations

import os
import sys

from .. import __version__
from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError, flow_files


def cmd_validate(args) -> int:
    from ..lang.check import check
    from ..lang.diagnostics import count, render_github, render_json, render_sarif, render_text
    from ..lang.loader import Loader

    named, found = flow_files(args.paths)
    loader = Loader()
    # A file that another file of the folder includes is checked as part of
    # its includer (alone, its references to the includer's params would fail).
    fragments = loader.included_by_others(found) if found else set()
    roots = named + [f for f in found if os.path.realpath(f) not in fragments]
    diagnostics, sources, checked, reached = [], {}, [], set()
    included: dict = {}  # an included file -> the include that read it (a note under its problems)

    def check_one(path: str) -> None:
        loaded = check(path, targets=args.target, loader=loader)
        if loaded.program is not None and args.target:
            unknown = [t for t in args.target if t not in {x.name for x in loaded.program.tasks}]
            if unknown:
                raise UsageError(f"--target names no task of {path}: {', '.join(unknown)}")
        diagnostics.extend(loaded.diagnostics)
        sources.update(loaded.sources)
        for file, span in loaded.included.items():
            included.setdefault(file, span)
        reached.update(os.path.realpath(p) for p in loaded.sources)
        checked.append(path)

    for path in dict.fromkeys(roots):
        check_one(path)
    # Files only included from one another (an include cycle) have no root:
    # check them on their own, or their problems would go unseen.
    for path in found:
        if os.path.realpath(path) not in reached:
            check_one(path)
    seen = set()
    diagnostics = [d for d in diagnostics if not (d in seen or seen.add(d))]  # a shared include reports once
    errors, warnings = count(diagnostics)
    if args.format == "json":
        print(render_json(diagnostics, checked))
    elif args.format == "github":
        if diagnostics:
            print(render_github(diagnostics))
    elif args.format == "sarif":
        print(render_sarif(diagnostics, __version__))
    else:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        if diagnostics:
            print(render_text(diagnostics, sources, color=color, included=included))
        noun = "file" if len(checked) == 1 else "files"
        if errors or warnings:
            print(f"{len(checked)} {noun}: {errors} error{'s' * (errors != 1)}, "
                  f"{warnings} warning{'s' * (warnings != 1)}")
        else:
            print(f"{len(checked)} {noun} checked: no problems")
    return EXIT_FAILED if errors or (args.strict and warnings) else EXIT_OK


def add_validate(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="a .flow file, or a folder to search for them")
    p.add_argument("--format", choices=("text", "json", "github", "sarif"), default="text")
    p.add_argument("--strict", action="store_true", help="warnings fail too")
    p.add_argument("--target", action="append", default=[], metavar="TASK",
                   help="warn about tasks these targets do not need (repeatable)")


# ---- graph -------------------------------------------------------------------
