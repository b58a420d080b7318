"""`flow fmt`: rewrite `.flow` files in canonical layout, or say which would change (`--check`, `--diff`)."""

from __future__ import annotations

import os
import sys

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from .inputs import UsageError, flow_files


def cmd_fmt(args) -> int:
    paths = list(args.paths)
    if "-" in paths and len(paths) > 1:
        raise UsageError("`-` (standard input) cannot be given with other paths")
    if paths == ["-"]:
        return _stdin(args)
    named, found = flow_files(paths)
    status = EXIT_OK
    for path in dict.fromkeys(named + found):
        status = max(status, _one(path, args))
    return status


def _formatted(raw: bytes, file: str):
    """(the original text, its canonical layout), or None after printing why it cannot be formatted."""
    from ..lang.diagnostics import Diagnostic, FlowSyntaxError, render_text
    from ..lang.fmt import format_text
    from ..lang.ir import Span

    try:
        original = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[:e.start]
        line = before.count(b"\n") + 1
        problem = Diagnostic("E005", f"byte 0x{raw[e.start]:02x} at line {line} is not UTF-8",
                             Span(file, line, 1, line, 2), "a .flow file is UTF-8 text; is this the right file?")
        print(render_text([problem], {}, color=False), file=sys.stderr)
        return None
    text = original[1:] if original.startswith("\ufeff") else original
    text = text.replace("\r\n", "\n")
    try:
        out = format_text(text, file)
    except FlowSyntaxError as e:
        print(render_text([e.diagnostic], {file: text}, color=sys.stderr.isatty() and "NO_COLOR" not in os.environ),
              file=sys.stderr)
        print(f"{file}: not formatted (syntax error)", file=sys.stderr)
        return None
    return original, out


def _diff(before: str, after: str, name: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                        f"{name} (original)", f"{name} (formatted)"))


def _stdin(args) -> int:
    raw = sys.stdin.buffer.read()
    result = _formatted(raw, "<stdin>")
    if result is None:
        return EXIT_FAILED
    original, out = result
    changed = original != out
    if args.diff:
        sys.stdout.write(_diff(original, out, "<stdin>"))
    elif args.check:
        if changed:
            print("<stdin>")
    else:
        sys.stdout.write(out)
    return EXIT_FAILED if changed and (args.check or args.diff) else EXIT_OK


def _one(path: str, args) -> int:
    from ..lang.loader import refusal

    problem = refusal(path)  # a FIFO, a device, a folder or another kind of file: never opened
    if problem is not None:
        print(f"{path}: {problem.message}", file=sys.stderr)
        return EXIT_FAILED
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    result = _formatted(raw, path)
    if result is None:
        return EXIT_FAILED
    original, out = result
    if original == out:
        return EXIT_OK
    if args.diff:
        sys.stdout.write(_diff(original, out, path))
        return EXIT_FAILED
    if args.check:
        print(path)
        return EXIT_FAILED
    try:
        _write(os.path.realpath(path), out)  # through a symlink, to the file it names
    except OSError as e:
        print(f"{path}: cannot write: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    print(path)
    return EXIT_OK


def _write(path: str, text: str) -> None:
    """Replace the file whole (a temporary file beside it, then rename), keeping its mode."""
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=".fmt-", suffix=".flow", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def add_fmt(p) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a .flow file, a folder to search for them, or - for standard input (written to stdout)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; print the files that would change and exit 1 if any would")
    p.add_argument("--diff", action="store_true", help="write nothing; print what would change as a unified diff")
