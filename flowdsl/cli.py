"""The `flow` command: `main(argv) -> exit code`, one small function per verb.

Verbs are registered in one table (VERBS). Exit codes follow the contract:
0 success, 1 the work failed, 2 the command was wrong, 130 interrupted.
A bug in flow itself prints one line and where the traceback was written.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 70, 130


class UsageError(Exception):
    """A wrong command line: printed as one line, exit 2."""


# ---- validate ----------------------------------------------------------------


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


def cmd_validate(args) -> int:
    from . import check
    from .diagnostics import count, render_github, render_json, render_sarif, render_text
    from .loader import Loader

    named, found = flow_files(args.paths)
    loader = Loader()
    # A file that another file of the folder includes is checked as part of
    # its includer (alone, its references to the includer's params would fail).
    fragments = loader.included_by_others(found) if found else set()
    roots = named + [f for f in found if os.path.realpath(f) not in fragments]
    diagnostics, sources, checked = [], {}, []
    for path in dict.fromkeys(roots):
        loaded = check(path, targets=args.target, loader=loader)
        if loaded.program is not None and args.target:
            unknown = [t for t in args.target if t not in {x.name for x in loaded.program.tasks}]
            if unknown:
                raise UsageError(f"--target names no task of {path}: {', '.join(unknown)}")
        diagnostics.extend(loaded.diagnostics)
        sources.update(loaded.sources)
        checked.append(path)
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
            print(render_text(diagnostics, sources, color=color))
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


def load_valid(path: str, targets: Sequence[str] = ()):
    """A program with no errors, or None after printing its diagnostics to stderr."""
    from . import check
    from .diagnostics import render_text

    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    loaded = check(path, targets)
    errors = [d for d in loaded.diagnostics if d.severity == "error"]
    if errors:
        print(render_text(errors, loaded.sources, color=sys.stderr.isatty()), file=sys.stderr)
        print(f"{path}: {len(errors)} error{'s' * (len(errors) != 1)}; run `flow validate {path}`", file=sys.stderr)
        return None
    return loaded.program


def cmd_graph(args) -> int:
    from .graph import render

    program = load_valid(args.file)
    if program is None:
        return EXIT_FAILED
    print(render(program, args.format))
    return EXIT_OK


def add_graph(p) -> None:
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("ascii", "dot", "mermaid", "json"), default="ascii")


# ---- the verb table and main -------------------------------------------------

VERBS: Dict[str, Tuple[Callable, Callable, str]] = {
    "validate": (add_validate, cmd_validate, "check .flow files; never imports user code"),
    "graph": (add_graph, cmd_graph, "print a pipeline's task graph"),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="flow", description="Check and run pipelines written in the .flow language.")
    top.add_argument("--version", action="version", version=f"flow {__version__}")
    sub = top.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (add, _, help_) in VERBS.items():
        add(sub.add_parser(name, help=help_, description=help_))
    return top


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
    except SystemExit as e:  # argparse's own usage errors and --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return VERBS[args.verb][1](args)
    except UsageError as e:
        print(f"flow {args.verb}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `flow graph x.flow | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:  # a bug in flow: say so briefly, keep the traceback
        return report_bug(e)


def report_bug(error: BaseException) -> int:
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
