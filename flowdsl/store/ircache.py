"""Checked programs, cached by the contents of the files they were built from.

Parsing and checking a 10,000-task file takes half a second; loading the
checked program back takes about a fifth of that. `flow run` (a resume above
all) and `flow tick` (every pipeline, every minute) load through this cache;
`flow validate` never does, so CI always checks from scratch.

An entry is kept only for a program without errors, in
`<state>/cache/ir/<hash of the file's path>.json`, and is used only while
every file it came from is unchanged: each `.flow` file by the hash of its
bytes, each Python module the checks read by its size and mtime (as Python's
own bytecode cache does).

An entry is data that cannot carry code: a line of JSON with the targets and
the stamps (so a stale entry costs little), then one with the IR, each record
as `[class name, fields...]`, a span's file as an index into a table of files.
Only the classes of SCHEMA are made, each field checked against its kind;
anything else makes the entry corrupt, and a corrupt entry is ignored (the
program is checked afresh). Nor is an entry read that someone else could have
written: it and its folder must be this user's, writable by nobody else.

Why JSON (benchmarks/ircache_load.py): json's scanner is C in every CPython,
while the zipapp has no msgpack C extension, and msgpack's pure-Python unpacker
takes three to four times as long as the old pickles did. marshal is hardly faster
once the records are made, and a dozen planted bytes make it crash.
"""

from __future__ import annotations

import gc
import hashlib
import os
import stat
import sys

from .. import __version__
from ..lang.gcpause import paused

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

    from ..lang.loader import Loaded

    Decoder = Callable[[Any, List[str]], Any]  # (an entry's data, its table of files) -> the IR it holds
    Keep = Callable[..., None]  # what `checked` returns to cache the program: keep(background=True)

# 3: JSON and an allow-list. Formats 1 and 2 were pickles, which could be made to run code:
# named `.pickle`, they are never read, and deleted when an entry is written.
FORMAT = 5  # 4: the forms of language v1.1 (conditions, sensors, calls, shell, env_file); 5: PipelineDecl
MAGIC = "flow-ir"
SUFFIX = ".json"

# The allow-list: the record classes an entry may name (a Program's IR, ir.py, and its
# warnings, diagnostics.py; Module and Include are IR too, never part of a Program), each
# with the kind of each of its fields, in order: one of PLAIN (exact types: True is no
# int), a class of this list, a union (UNIONS); `X?` for X or null, `X*` for a list of X
# (a tuple in the IR).
SCHEMA = {
    "Span": ("file", "int", "int", "int", "int"),  # the file: an index into the body's table of files
    "Literal": ("value", "Span"),
    "Duration": ("number", "str", "Span"),
    "Ref": ("str", "key*", "Span"),
    "Field": ("Ref", "str?", "Span"),
    "Template": ("part*", "Span"),
    "ListExpr": ("Expr*", "Span"),
    "Entry": ("str", "Span", "Expr"),
    "MapExpr": ("Entry*", "Span"),
    "EnvCall": ("str", "Expr?", "bool", "Span"),
    "CallableRef": ("str", "str", "Span"),
    "RunAction": ("CallableRef", "Span"),
    "ShAction": ("Template", "Span"),
    "ExecAction": ("Expr", "Span"),
    "Name": ("str", "Span"),
    "Retry": ("Expr", "Expr?", "Expr?", "Expr?", "Expr?", "Name*", "Span"),
    "Foreach": ("Name", "Expr", "Span", "Name?"),
    "Word": ("str", "Span"),
    "Cache": ("Expr?", "Span"),
    "Settings": ("Retry?", "Expr?", "Word?", "Word?", "Cache?", "Name*", "MapExpr?", "Expr?"),
    "Task": ("str", "Span", "Action?", "MapExpr?", "Name*", "Foreach?", "Template?", "Settings", "Span",
             "Condition?", "Expr?"),
    "Compare": ("str", "Expr", "Expr", "Span"),
    "BoolOp": ("str", "Expr*", "Span"),
    "Not": ("Expr", "Span"),
    "Condition": ("Expr", "str", "Span"),
    "WaitAction": ("str", "waited", "Span"),
    "CallAction": ("Template", "Span"),
    "PostAction": ("Template", "Span"),
    "Schedule": ("str", "Expr", "Template?", "Span"),
    "Window": ("Template", "Template?", "Span"),
    "Executor": ("str", "Template?", "Span"),
    "Hook": ("str", "Action", "Span"),
    "PipelineDecl": ("str", "Span?", "Template?", "Schedule*", "Window?", "Word?", "Word?", "Expr?", "Executor?",
                 "Expr?", "Template*", "MapExpr?", "Settings", "Word?", "Hook*", "Span?", "Expr?", "Template?",
                 "Template*"),
    "Program": ("str", "PipelineDecl", "Task*", "str*"),
    "Diagnostic": ("str", "str", "Span", "str?"),  # a warning's: an entry holds no errors
}
PLAIN = {"str": (str,), "int": (int,), "bool": (bool,), "number": (int, float),
         "value": (str, int, float, bool, type(None))}
UNIONS = {
    "Expr": ("Literal", "Duration", "Ref", "Template", "ListExpr", "MapExpr", "EnvCall", "Compare", "BoolOp", "Not"),
    "Action": ("RunAction", "ShAction", "ExecAction", "WaitAction", "CallAction", "PostAction"),
    "waited": ("Template", "CallableRef"),  # of a WaitAction: a file pattern or a command, or a callable
    "part": ("str", "Field"),  # of a Template: text, or an interpolated field
    "key": ("str", "int"),  # of a Ref's path: `.key`, `[0]`
    "str": ("str",),  # of Program.files
}


def folder(state_root: str) -> str:
    """Where a state folder keeps its checked programs."""
    return os.path.join(state_root, "cache", "ir")


def entry_path(cache_dir: str, path: str) -> str:
    # the path as given is part of the key: the program keeps it (in every span)
    key = f"{os.path.abspath(path)}\0{path}\0{__version__}\0{FORMAT}\0{sys.version_info[:2]}"
    return os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest()[:24] + SUFFIX)


def _stamp(path: str, kind: str) -> Any:
    """What must not change for an entry to hold: a .flow file's hash, a module's [size, mtime]."""
    try:
        if kind == "py":
            st = os.stat(path)
            return [st.st_size, st.st_mtime_ns]
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:  # nor block on a FIFO
            return hashlib.sha256(f.read()).hexdigest() if stat.S_ISREG(os.fstat(f.fileno()).st_mode) else None
    except (OSError, ValueError):
        return None


def _private(st: os.stat_result) -> bool:
    """This user's, and nobody else's to write: no one else can have put an entry there."""
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


class _Corrupt(ValueError):
    """Not an entry this module wrote: ignored, and the program is checked afresh."""


def _no_constant(name: str) -> NoReturn:
    raise _Corrupt(name)  # NaN and Infinity: json's, not JSON's, and never in an entry


_parse: Optional[Callable[[str], Any]] = None  # json's decoder refusing those: made once, not one a call


def load(cache_dir: str, path: str, targets: Sequence[str]) -> Optional[Loaded]:
    """The cached `loader.Loaded` (program and warnings) if it is still true, else None."""
    global _parse
    if _parse is None:
        import json

        _parse = json.JSONDecoder(parse_constant=_no_constant).decode
    try:
        if not _private(os.stat(cache_dir)):
            return None
        with open(os.open(entry_path(cache_dir, path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as f:
            st = os.fstat(f.fileno())
            if not (stat.S_ISREG(st.st_mode) and _private(st)):
                return None
            head, body = f.read().split(b"\n", 1)
        header = _parse(head.decode())
        if not (type(header) is list and header[:3] == [MAGIC, FORMAT, list(targets)] and len(header) == 4
                and type(header[3]) is list):
            return None
        flow_files = []
        for dep in header[3]:
            if type(dep) is not list or len(dep) != 3 or type(dep[0]) is not str or dep[1] not in ("flow", "py") \
                    or _stamp(dep[0], dep[1]) != dep[2]:
                return None
            if dep[1] == "flow":
                flow_files.append(dep[0])
        # The decoding makes about a million objects for 10,000 tasks and no reference
        # cycles: the cyclic collector would only walk them, again and again (half the
        # time of loading the old pickles went there). So it is off meanwhile; the JSON's
        # lists are gone before it is back, and in the zipapp, whose process is the `flow`
        # command, the program is frozen out of its reach, like the parser's tables.
        with paused() as pause:
            body = _parse(body.decode())
            program, warnings = _decode(body)
            del body
            if flow_files != list(program.files):
                return None  # the stamps checked must be those of every file the program came from
            if pause.was_on and type(globals().get("__loader__")).__name__ == "zipimporter":
                gc.freeze()
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError):
        return None  # unreadable, foreign or corrupt (json's errors and _Corrupt are ValueErrors)
    from ..lang.loader import Loaded

    return Loaded(program, warnings)


def _classes() -> Dict[str, type]:
    from ..lang import diagnostics, ir

    return {name: getattr(diagnostics if name == "Diagnostic" else ir, name) for name in SCHEMA}


_DECODERS: Dict[str, Decoder] = {}


def _decoders() -> Dict[str, Decoder]:
    """The decoders of SCHEMA and UNIONS by name, made once: `decode(data, files) -> the IR`.

    One function per class checks a record's list (its class name, its length,
    each field's kind), replaces its fields by what they decode to, and makes
    the record; anything else raises _Corrupt. Span, half of all records, has
    its own. `files` is the entry's table of files, passed down, not kept.
    """
    if _DECODERS:
        return _DECODERS
    from ..lang.ir import Span

    decoders: Dict[str, Decoder] = {}  # made whole, then kept

    def span(a: Any, files: List[str]) -> Span:
        if type(a) is list and len(a) == 6 and a[0] == "Span":
            _, f, line, col, end_line, end_col = a
            if (type(f) is int and 0 <= f < len(files) and type(line) is int and type(col) is int
                    and type(end_line) is int and type(end_col) is int):
                return Span(files[f], line, col, end_line, end_col)
        raise _Corrupt

    def record(name: str, cls: type, size: int, plain: Tuple[Tuple[int, Tuple[type, ...]], ...],
               parts: List[Tuple[int, bool, Decoder]]) -> Decoder:
        def decode(a: Any, files: List[str]) -> Any:
            if type(a) is not list or len(a) != size or a[0] != name:
                raise _Corrupt
            for i, types in plain:
                if type(a[i]) not in types:
                    raise _Corrupt
            for i, nullable, part in parts:
                if a[i] is not None or not nullable:
                    a[i] = part(a[i], files)
            return cls(*a[1:])

        return decode

    def union(members: Tuple[str, ...]) -> Decoder:
        plain = tuple(PLAIN[m][0] for m in members if m in PLAIN)
        named = tuple(m for m in members if m not in PLAIN)

        def decode(a: Any, files: List[str]) -> Any:
            if type(a) in plain:
                return a
            if type(a) is list and a and type(a[0]) is str and a[0] in named:
                return decoders[a[0]](a, files)
            raise _Corrupt

        return decode

    def sequence(item: Decoder) -> Decoder:
        def decode(a: Any, files: List[str]) -> Tuple[Any, ...]:
            if type(a) is not list:
                raise _Corrupt
            return tuple([item(x, files) for x in a])

        return decode

    # (a record's parts, to fill once every decoder exists; [(field index, nullable, kind)])
    unresolved: List[Tuple[List[Tuple[int, bool, Decoder]], List[Tuple[int, bool, str]]]] = []
    for name, cls in _classes().items():
        if name == "Span":
            decoders[name] = span
            continue
        fields = [(i, kind.rstrip("?"), kind[-1] == "?") for i, kind in enumerate(SCHEMA[name], 1)]
        plain = tuple((i, PLAIN[base] + (type(None),) * nullable) for i, base, nullable in fields if base in PLAIN)
        parts: List[Tuple[int, bool, Decoder]] = []  # (field index, may be null, decoder)
        decoders[name] = record(name, cls, len(fields) + 1, plain, parts)
        unresolved.append((parts, [(i, nullable, base) for i, base, nullable in fields if base not in PLAIN]))
    for name, members in UNIONS.items():
        decoders[name] = union(members)
    for parts, kinds in unresolved:
        for i, nullable, kind in kinds:
            parts.append((i, nullable, sequence(decoders[kind[:-1]]) if kind[-1] == "*" else decoders[kind]))
    decoders["Diagnostic*"] = sequence(decoders["Diagnostic"])
    _DECODERS.update(decoders)
    return _DECODERS


def _decode(body: Any) -> Tuple[Any, List[Any]]:
    """(the program, its warnings) of an entry's body: [files, program, warnings]."""
    from ..lang.diagnostics import CATALOGUE, WARNING

    if type(body) is not list or len(body) != 3:
        raise _Corrupt("not a body")
    files, program, warnings = body
    if type(files) is not list or any(type(f) is not str for f in files):
        raise _Corrupt("the file table")
    decoders = _decoders()
    warnings = list(decoders["Diagnostic*"](warnings, files))
    if any(CATALOGUE.get(w.code, ("",))[0] != WARNING for w in warnings):
        raise _Corrupt("an error")  # an entry is kept only for a program without errors
    return decoders["Program"](program, files), warnings


def _encode(node: Any, files: Dict[str, int], classes: Dict[str, type]) -> Any:
    """`node` as the data `_decode` reads, adding each span's file to `files`."""
    kind = type(node)
    if kind is tuple:
        return [_encode(item, files, classes) for item in node]
    if kind in PLAIN["value"]:
        return node
    name = kind.__name__
    if classes.get(name) is not kind:
        raise _Corrupt(f"{kind.__module__}.{name} is not part of a checked program")
    if name == "Span":
        return [name, files.setdefault(node.file, len(files)), node.line, node.col, node.end_line, node.end_col]
    return [name] + [_encode(getattr(node, f), files, classes) for f in kind._fields]


def encode_entry(targets: Sequence[str], deps: List[List[Any]], program: Any, warnings: Sequence[Any]) -> bytes:
    """An entry's bytes: the header line (targets and stamps), then the body line (the IR)."""
    import json

    files: Dict[str, int] = {}
    classes = _classes()
    body = [_encode(program, files, classes), [_encode(d, files, classes) for d in warnings]]
    text = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False).encode
    return f"{text([MAGIC, FORMAT, list(targets), deps])}\n{text([list(files), *body])}\n".encode()


def store(cache_dir: str, path: str, targets: Sequence[str], loaded: Loaded, modules: List[str],
          background: bool = False) -> None:
    """Keep a checked program without errors. Best effort: a cache that cannot be written is no cache.

    With `background`, a forked grandchild encodes and writes it at the
    lowest priority, so a big run neither waits for it nor shares a core with it.
    """
    assert loaded.program is not None  # a program without errors: there is one
    deps = [[f, "flow", _stamp(f, "flow")] for f in loaded.program.files]
    deps += [[m, "py", _stamp(m, "py")] for m in sorted(set(modules))]

    def write() -> None:
        _write(cache_dir, path, targets, deps, loaded.program, loaded.diagnostics)

    if background:
        in_background(write)
    else:
        write()


def keep_all(keeps: Sequence[Keep]) -> None:
    """Call each function that `checked` returned, in one background process."""
    in_background(lambda: [keep(background=False) for keep in keeps])


def in_background(work: Callable[[], object]) -> None:
    """Do `work` in a forked grandchild at the lowest priority, so nobody waits for it or shares a core with it."""
    if not hasattr(os, "fork"):
        work()
        return
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)  # the child forks again and is gone at once
        return
    try:
        if os.fork() == 0:
            from .journal import drop_inherited

            drop_inherited()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # whoever reads our output (cron, a pipe) need not wait for this
                os.dup2(null, fd)
            os.nice(19)  # the run comes first: this only uses what it leaves idle
            work()
    finally:
        os._exit(0)


def _write(cache_dir: str, path: str, targets: Sequence[str], deps: List[List[Any]], program: Any,
           warnings: Sequence[Any]) -> None:
    import tempfile

    from .state import ensure_private_dir

    try:
        data = encode_entry(targets, deps, program, warnings)
        ensure_private_dir(os.path.dirname(os.path.dirname(cache_dir)))
        ensure_private_dir(os.path.dirname(cache_dir))
        ensure_private_dir(cache_dir)
        # a new file of a random name (O_EXCL, 0600): nothing planted under a name we would pick is followed
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=cache_dir)
    except (OSError, ValueError, AttributeError, RecursionError):  # a NaN, say, or a full disk: no entry
        return
    try:
        with open(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, entry_path(cache_dir, path))
        for name in os.listdir(cache_dir):  # the pickles of formats 1 and 2: never read, only in the way
            if name.endswith(".pickle"):
                os.unlink(os.path.join(cache_dir, name))
    except OSError:
        try:
            os.unlink(tmp)  # leave no half-written file behind
        except OSError:
            pass


def checked(path: str, cache_dir: Optional[str], targets: Sequence[str] = ()) -> Tuple[Loaded, Optional[Keep]]:
    """`check(path)` through the cache: (the Loaded, a function that caches it, or None).

    The caller calls the function once it is sure to go on (a usage error
    found later must leave no state behind).
    """
    from ..lang.check import check

    if cache_dir is not None:
        cached = load(cache_dir, path, targets)
        if cached is not None:
            return cached, None
    modules: List[str] = []
    loaded = check(path, targets, modules=modules)
    if cache_dir is None or loaded.program is None or any(d.severity == "error" for d in loaded.diagnostics):
        return loaded, None
    return loaded, lambda background=True: store(cache_dir, path, targets, loaded, modules, background)
