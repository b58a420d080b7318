"""The `flow` command: `main(argv) -> exit code`, one small function per verb.

Verbs are registered in one table (VERBS). Exit codes follow the contract:
0 success, 1 the work failed, 2 the command was wrong, 130 interrupted.
A bug in flow itself prints one line and where the traceback was written.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..run.exitcodes import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, report_bug
from .inputs import UsageError

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional, Sequence, Tuple

VERBS: Dict[str, Tuple[str, str]] = {  # verb: (module of add_<verb> and cmd_<verb>, help)
    "validate": ("validate", "check .flow files; never imports user code"),
    "fmt": ("fmt", "rewrite .flow files in canonical layout, comments kept (--check, --diff, - for stdin)"),
    "graph": ("graph", "print a pipeline's task graph"),
    "run": ("run", "run a pipeline and wait for it"),
    "tick": ("schedule", "start the scheduled runs that are due (for cron, every minute)"),
    "schedule": ("schedule", "each pipeline's schedules and next fire times"),
    "backfill": ("schedule", "one run per schedule slot in a range of dates"),
    "init": ("init", "a starter project: a pipeline, its tasks module and the crontab line"),
    "runs": ("history", "list runs, newest first"),
    "status": ("history", "one run's tasks: state, attempts, duration, error"),
    "logs": ("history", "the captured output of a run or one task"),
    "report": ("report", "a run's self-contained HTML page: its graph by state, a timeline of attempts"),
    "prune": ("history", "delete old runs"),
    "stop": ("operate", "stop a live run (default: the latest); it ends interrupted, resumable"),
    "mark": ("operate", "set a task of a finished run by hand (success, failed, skipped) for a resume"),
}


def verb_function(verb: str, kind: str) -> Callable:
    """`add_<verb>` or `cmd_<verb>` from the verb's module."""
    import importlib

    module, _ = VERBS[verb]
    return getattr(importlib.import_module(f"{__package__}.{module}"), f"{kind}_{verb}")


class Formatter(argparse.HelpFormatter):
    """argparse's help layout, with the terminal's width found without importing shutil.

    argparse makes a formatter for every option it adds, and the default one
    imports shutil (with bz2 and lzma) to ask the width: a few ms of every
    cold start. This asks the same way: $COLUMNS, else the terminal, else 80.
    """

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None, **kw):
        if width is None:
            width = _columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width, **kw)


def _columns() -> int:
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else 80


def parser(verb: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line's parser; given the verb, only that verb's parser is made (and its module imported)."""
    top = argparse.ArgumentParser(prog="flow", description="Check and run pipelines written in the .flow language.",
                                  formatter_class=Formatter)
    top.add_argument("--version", action="version", version=f"flow {__version__}")
    sub = top.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (_, help_) in VERBS.items():
        if verb is not None and name != verb:
            continue  # a known verb: its parser alone (the others only for `flow --help` and a wrong verb)
        p = sub.add_parser(name, help=help_, description=help_, formatter_class=Formatter)
        verb_function(name, "add")(p)
    return top


def printable(text: str) -> str:
    """Text from the command line, the environment or the file system, with each byte that is
    not UTF-8 (a lone surrogate, as Python decodes them) shown as \\xNN."""
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:  # a surrogate that no byte made
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def lenient_stdout() -> None:
    """stdout never fails on what it prints: a file name that is not UTF-8 is shown escaped.

    Names arrive from the command line and the file system with their bytes
    that are not UTF-8 as lone surrogates (surrogateescape). Python's stdout
    writes them back as the bytes they were in the C locale, but fails on them
    (UnicodeEncodeError) under a strict error handler (another UTF-8 locale,
    PYTHONIOENCODING), where a backslash escape stands in for them instead.
    """
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict":
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):
            pass  # not a text stream of io's: left as it is


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    lenient_stdout()
    # the verb is the first word (flow has no options before it but --version and --help)
    verb = next((a for a in argv if not a.startswith("-")), None)
    try:
        args = parser(verb if verb in VERBS else None).parse_args(argv)
    except SystemExit as e:  # argparse's own usage errors and --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        return verb_function(args.verb, "cmd")(args)
    except UsageError as e:
        print(f"flow {args.verb}: error: {printable(str(e))}", file=sys.stderr)
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
