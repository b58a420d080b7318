"""The loader: files on disk to a Program, following `include` lines.

Reads bytes (so invalid UTF-8 is a diagnostic, not a traceback), parses each
file once, follows includes relative to the including file, reports include
cycles and names defined twice, and merges the tasks of every file into the
including pipeline.

It reads regular files whose names end in `.flow`, nothing else: what a path
names is looked at (stat) before it is opened, because opening a FIFO blocks
and a device never ends, and a file of another kind is refused unread, because
its diagnostics would quote it (`include "/proc/self/environ"` would print the
environment).
"""

from __future__ import annotations

import os
import stat

from . import ir
from .diagnostics import Diagnostic, FlowSyntaxError
from .gcpause import paused
from .ir import Span
from .parser import parse

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple, Union


class Parsed:
    """One file as read: its text (for carets) and its Module, if it parsed."""

    def __init__(self, file: str, text: str, module: Optional[ir.Module], diagnostics: List[Diagnostic]):
        self.file = file
        self.text = text
        self.module = module
        self.diagnostics = diagnostics


class Loaded:
    """What `load` returns: the Program (None if it could not be built),
    every diagnostic found so far, and the text of every file read."""

    def __init__(self, program: Optional[ir.Program], diagnostics: List[Diagnostic],
                 sources: Optional[Dict[str, str]] = None, included: Optional[Dict[str, Span]] = None):
        self.program = program
        self.diagnostics = diagnostics
        self.sources = sources if sources is not None else {}
        self.included = included if included is not None else {}  # an included file -> the include that read it


SUFFIX = ".flow"
NOT_FLOW_HINT = "flow reads regular files whose names end in .flow"


def what_is(mode: int) -> Optional[str]:
    """What a file of this mode is, in words, when it is not a regular file (else None)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _cannot_read(path: str, error: OSError) -> Diagnostic:
    return Diagnostic("E011", f"cannot read `{path}`: {error.strerror or error}", Span(path, 1, 1, 1, 1))


def _not_flow(path: str, message: str) -> Diagnostic:
    return Diagnostic("E012", message, Span(path, 1, 1, 1, 1), NOT_FLOW_HINT)


def _unreadable(path: str) -> Optional[Diagnostic]:
    """E011 if a regular file cannot be read (one byte is tried and dropped), else None."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
        try:
            if what_is(os.fstat(fd).st_mode) is None:
                os.read(fd, 1)
        finally:
            os.close(fd)
    except OSError as e:
        return _cannot_read(path, e)
    return None


def refusal(path: str) -> Optional[Diagnostic]:
    """Why `path` is not read as a .flow file (E011, E012), or None: a regular file named *.flow.

    Only stat is asked, so nothing that would block or never end is opened. A
    regular file of another name is opened only to tell "cannot be read" (E011)
    from "not a .flow file" (E012); nothing of it is kept.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return _cannot_read(path, e)
    kind = what_is(mode)
    if kind is not None:
        return _not_flow(path, f"`{path}` is {kind}, not a .flow file")
    real = os.path.realpath(path)
    if path.endswith(SUFFIX) and real.endswith(SUFFIX):
        return None
    problem = _unreadable(path)
    if problem is not None:
        return problem
    if path.endswith(SUFFIX):  # a link named *.flow to a file that is not one
        return _not_flow(path, f"`{path}` leads to `{real}`, which is not a .flow file")
    return _not_flow(path, f"`{path}` is not a .flow file")


def read_text(path: str) -> Union[Tuple[str, None], Tuple[None, Diagnostic]]:
    """The text of a .flow file, or None and the one diagnostic that says why not."""
    problem = refusal(path)
    if problem is not None:
        return None, problem
    try:
        fd = os.open(path, _OPEN_FLAGS)
        with os.fdopen(fd, "rb") as f:
            kind = what_is(os.fstat(f.fileno()).st_mode)
            if kind is not None:  # replaced since it was looked at: still never read
                return None, _not_flow(path, f"`{path}` is {kind}, not a .flow file")
            data = f.read()
    except OSError as e:
        return None, _cannot_read(path, e)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[:e.start]
        line = before.count(b"\n") + 1
        col = len(before[before.rfind(b"\n") + 1:].decode("utf-8", "replace")) + 1
        return None, Diagnostic("E005", f"byte 0x{data[e.start]:02x} at line {line}, column {col} is not UTF-8",
                                Span(path, line, col, line, col + 1),
                                "a .flow file is UTF-8 text; is this the right file?")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n"), None


class Loader:
    """Parses files once each (a folder's files may include one another)."""

    def __init__(self) -> None:
        self.parsed: Dict[str, Parsed] = {}

    def parse_file(self, path: str) -> Parsed:
        key = os.path.realpath(path)
        if key not in self.parsed:
            read = read_text(path)
            if read[1] is not None:
                self.parsed[key] = Parsed(path, "", None, [read[1]])
            else:
                text = read[0]
                try:
                    with paused():
                        module, diagnostics = parse(text, path)
                except FlowSyntaxError as e:
                    module, diagnostics = None, [e.diagnostic]
                self.parsed[key] = Parsed(path, text, module, diagnostics)
        return self.parsed[key]

    def included_by_others(self, paths: List[str]) -> Set[str]:
        """Real paths of the files that some file in `paths` includes."""
        out: Set[str] = set()
        for path in paths:
            p = self.parse_file(path)
            if p.module is not None:
                for inc in p.module.includes:
                    if inc.path is not None and "\0" not in inc.path:
                        out.add(os.path.realpath(os.path.join(os.path.dirname(path), inc.path)))
        return out

    def load(self, path: str) -> Loaded:
        root = self.parse_file(path)
        diagnostics = list(root.diagnostics)
        sources = {root.file: root.text}
        if root.module is None:
            return Loaded(None, diagnostics, sources)
        tasks: List[ir.Task] = []
        files: List[str] = []
        included: Dict[str, Span] = {}
        self._gather(root, root.module, [], set(), tasks, files, diagnostics, sources, included)
        pipeline = root.module.pipeline or ir.PipelineDecl(
            name=_stem(path), name_span=None, span=Span(path, 1, 1, 1, 1))
        unique: Dict[str, ir.Task] = {}
        for task in tasks:
            first = unique.get(task.name)
            if first is None:
                unique[task.name] = task
                continue
            where = f"line {first.name_span.line}" if first.name_span.file == task.name_span.file \
                else f"{first.name_span.file}:{first.name_span.line}"
            diagnostics.append(Diagnostic("E202", f"task `{task.name}` is defined twice", task.name_span,
                                          f"first defined at {where}"))
        if not tasks and not any(d.severity == "error" for d in diagnostics):
            diagnostics.append(Diagnostic("E006", "no tasks are defined", Span(path, 1, 1, 1, 1),
                                          "add a block such as `task hello { sh \"echo hello\" }`"))
        program = ir.Program(path, pipeline, tuple(unique.values()), tuple(files))
        return Loaded(program, diagnostics, sources, included)

    def _gather(self, parsed: Parsed, module: ir.Module, stack: List[str], done: Set[str], tasks: List[ir.Task],
                files: List[str], diagnostics: List[Diagnostic], sources: Dict[str, str],
                included: Dict[str, Span]) -> None:
        """Gather a file that parsed (`module` is its `parsed.module`) and what it includes, in order."""
        key = os.path.realpath(parsed.file)
        done.add(key)
        files.append(parsed.file)
        tasks.extend(module.tasks)
        stack = stack + [key]
        for inc in module.includes:
            if inc.path is None:
                continue
            if "\0" in inc.path:
                continue  # the builder reported the NUL (E002)
            target = os.path.normpath(os.path.join(os.path.dirname(parsed.file), inc.path))
            target_key = os.path.realpath(target)
            if target_key in stack:
                chain = " → ".join(os.path.basename(k) for k in stack[stack.index(target_key):] + [target_key])
                diagnostics.append(Diagnostic("E303", f"include cycle: {chain}", inc.span))
                continue
            if target_key in done:
                continue  # included twice along different paths: once is enough
            try:
                is_folder = stat.S_ISDIR(os.stat(target).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                diagnostics.append(Diagnostic("E302", f"included file `{inc.path}` not found", inc.span,
                                              f"looked for {target}"))
                continue
            except OSError:
                is_folder = False  # parse_file says why it cannot be read
            if is_folder:
                diagnostics.append(Diagnostic("E302", f"`{inc.path}` is a folder, not a .flow file", inc.span,
                                              "an include names one .flow file; include each file of the folder"))
                continue
            # not a .flow file, or unreadable: said where it is included, of the path this include names
            problem = refusal(target)
            if problem is None:
                child = self.parse_file(target)  # (read below only when there is no problem: always set then)
                if child.module is None and child.diagnostics and child.diagnostics[0].code in ("E011", "E012"):
                    problem = child.diagnostics[0]
            if problem is not None:
                diagnostics.append(Diagnostic(problem.code, problem.message, inc.span, problem.hint))
                sources.setdefault(target, "")  # reached (a folder's check does not take it alone), not read
                continue
            sources[child.file] = child.text
            included.setdefault(child.file, inc.span)
            diagnostics.extend(child.diagnostics)
            if child.module is None:
                continue
            if child.module.pipeline is not None:
                diagnostics.append(Diagnostic("E304", f"`{inc.path}` has a pipeline block, so it cannot be included",
                                              # Optional in the IR, but the builder always sets a parsed block's
                                              child.module.pipeline.span,  # type: ignore[arg-type]
                                              "an included file holds tasks and `include` lines only"))
            self._gather(child, child.module, stack, done, tasks, files, diagnostics, sources, included)


def _stem(path: str) -> str:
    base = os.path.basename(path)
    return base[:-5] if base.endswith(".flow") else base
