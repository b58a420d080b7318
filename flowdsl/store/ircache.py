"""Checked programs, cached by the contents of the files they were built from.

Parsing and checking a 10,000-task file takes half a second; loading the
checked program back takes a fifth of that. `flow run` (a resume above all)
and `flow tick` (every pipeline, every minute) load through this cache; `flow
validate` never does, so CI always checks from scratch.

An entry is kept only for a program without errors, in
`<state>/cache/ir/<hash of the file's path>.pickle`, and is used only while
every file it came from is unchanged: each `.flow` file by the hash of its
bytes, each Python module the checks read by its size and mtime (as Python's
own bytecode cache does). It is unpickled by an unpickler that builds flow's
IR classes and nothing else, so a tampered entry cannot run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import sys
from typing import Any, List, Optional, Sequence, Tuple

from .. import __version__

FORMAT = 2  # 2: the IR's classes moved to flowdsl.lang (entries of format 1 name flowdsl.ir)


def folder(state_root: str) -> str:
    """Where a state folder keeps its checked programs."""
    return os.path.join(state_root, "cache", "ir")


def entry_path(cache_dir: str, path: str) -> str:
    # the path as given is part of the key: the program keeps it (in every span)
    key = f"{os.path.abspath(path)}\0{path}\0{__version__}\0{FORMAT}\0{sys.version_info[:2]}"
    return os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest()[:24] + ".pickle")


def _stamp(path: str, kind: str) -> Any:
    try:
        if kind == "flow":
            with open(path, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        st = os.stat(path)
        return (st.st_size, st.st_mtime_ns)
    except OSError:
        return None


class _IROnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module in ("flowdsl.lang.ir", "flowdsl.lang.diagnostics"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checked program")


def load(cache_dir: str, path: str, targets: Sequence[str]):
    """The cached `loader.Loaded` (program and warnings) if it is still true, else None."""
    try:
        with open(entry_path(cache_dir, path), "rb") as f:
            entry = _IROnly(io.BytesIO(f.read())).load()
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError, TypeError, IndexError):
        return None
    if not isinstance(entry, dict) or entry.get("targets") != list(targets):
        return None
    for dep, kind, stamp in entry["deps"]:
        if _stamp(dep, kind) != stamp:
            return None
    from ..lang.loader import Loaded

    return Loaded(entry["program"], list(entry["warnings"]))


def store(cache_dir: str, path: str, targets: Sequence[str], loaded, modules: List[str],
          background: bool = False) -> None:
    """Keep a checked program without errors. Best effort: a cache that cannot be written is no cache.

    With `background`, a forked grandchild pickles and writes it at the
    lowest priority, so a big run neither waits for it nor shares a core with it.
    """
    program = loaded.program
    deps: List[Tuple[str, str, Any]] = [(f, "flow", _stamp(f, "flow")) for f in program.files]
    deps += [(m, "py", _stamp(m, "py")) for m in sorted(set(modules))]
    entry = {"targets": list(targets), "deps": deps, "program": program, "warnings": loaded.diagnostics}
    if background:
        in_background(lambda: _write(cache_dir, path, entry))
    else:
        _write(cache_dir, path, entry)


def keep_all(keeps: Sequence) -> None:
    """Call each function that `checked` returned, in one background process."""
    in_background(lambda: [keep(background=False) for keep in keeps])


def in_background(work) -> None:
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


def _write(cache_dir: str, path: str, entry: dict) -> None:
    from .state import ensure_private_dir

    try:
        ensure_private_dir(os.path.dirname(os.path.dirname(cache_dir)))
        ensure_private_dir(os.path.dirname(cache_dir))
        ensure_private_dir(cache_dir)
        target = entry_path(cache_dir, path)
        tmp = f"{target}.tmp{os.getpid()}"
        data = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except (OSError, pickle.PicklingError, RecursionError):
        pass


def checked(path: str, cache_dir: Optional[str], targets: Sequence[str] = ()):
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
