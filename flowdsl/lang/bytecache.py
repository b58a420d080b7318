"""The bytecode cache of flow.pyz, for an interpreter that has no bytecode tree inside it.

zipimport never writes bytecode, so without a tree every start would
compile flow and its dependencies again (about 100 ms). The archive
carries trees for a few interpreters only (the build's `--trees`); any
other compiles them once, after its first command has finished, into

    $FLOW_BYTECODE_CACHE, else $XDG_CACHE_HOME/flow, else ~/.cache/flow
        pyc/<build id>-<cache tag>/    the tree a bytecode tree would be

which the archive's `__main__` puts first on sys.path from then on. The
folder is made under a temporary name and renamed when complete, so a
crash or a full disk leaves no half cache (only a temporary folder, which
the next fill removes once it is an hour old). A cache is never removed by
flow (a run may still be importing from it): each build leaves one per
interpreter, about 2 MB; remove the folder to clear them. It is used only when the
user running flow owns it and no one else may write to it, nor to the
folders it is in, up to the cache's root: a cache is code. Setting
FLOW_BYTECODE_CACHE to an empty value (or Python's -B, or
PYTHONDONTWRITEBYTECODE) writes none.

This module runs in the process that filled nothing yet, with flow imported
from the archive's sources; archive_main (zipbuild/) holds the other half.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
import time
import zipfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

MANIFEST = "__pyc__/cache.json"  # the build's list: {"modules": [arcname.py], "data": [arcname]}
STALE = 3600.0  # seconds after which a temporary folder left by a fill that died is removed


def fill(archive: str, target: str) -> bool:
    """Compile the archive's modules for this interpreter into `target` (not there yet). False if it
    could not (a full disk, a folder it may not write): flow then runs from the sources, as before."""
    parent = os.path.dirname(target)
    try:
        for folder in (os.path.dirname(parent), parent):  # the cache's root and pyc/: private, whatever the umask
            if not os.path.isdir(folder):
                os.makedirs(folder, mode=0o700)
        _clean(parent)
        work = tempfile.mkdtemp(prefix=".fill-", dir=parent)
    except OSError:
        return False
    try:
        _write(archive, work)
        os.rename(work, target)  # whole, or not at all (another process may have won: then its copy stays)
        return True
    except Exception:  # noqa: BLE001 (the command is done: whatever stops the cache leaves none, and no traceback)
        return False
    finally:
        shutil.rmtree(work, ignore_errors=True)


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def compiled(source: bytes, shown: str) -> bytes:
    """The .pyc of a module's `source` (an unchecked-hash pyc: no source beside it to check) as a bytecode
    tree holds it, for the build's trees and for the cache alike: without docstrings, which flow never
    reads, and without the annotations of functions' arguments and results, which nothing reads at run
    time and which a module without `from __future__ import annotations` evaluates as it defines each
    function (those of classes stay: records are made from them)."""
    import importlib._bootstrap_external as ext
    import importlib.util

    tree = ast.parse(source, shown)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    arg.annotation = None
        body = getattr(node, "body", None)
        if isinstance(node, _DOCUMENTED) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            if len(body) > 1:
                del body[0]
            else:
                body[0] = ast.copy_location(ast.Pass(), body[0])
    code = compile(tree, shown, "exec", dont_inherit=True, optimize=0)
    pyc: bytes = ext._code_to_hash_pyc(  # type: ignore[attr-defined]  # private: not in typeshed
        code, importlib.util.source_hash(source), checked=False)
    return pyc


def _write(archive: str, work: str) -> None:
    with zipfile.ZipFile(archive) as z:
        manifest = json.loads(z.read(MANIFEST))
        for arc in manifest["modules"]:
            _put(work, arc + "c", compiled(z.read(arc), arc))
        for arc in manifest["data"]:
            _put(work, arc, z.read(arc))
        tables = z.read(manifest["tables"])
    for name, blob in interpreter_data(tables).items():
        _put(work, manifest["interpreter_data"][name], blob)


def interpreter_data(tables: bytes) -> Dict[str, bytes]:
    """What this interpreter compiles for itself, as marshal data, by the names the build gives the files:
    the lexers' regular expressions (flowdsl.lang.frozen_re, from the grammar's `tables` as lark serializes
    them) and the `__init__`s of the records flowdsl.lang's modules define (flowdsl.lang.records: each is
    imported). For a bytecode tree of the archive, or its bytecode cache. Imports lark."""
    import importlib
    import marshal
    import pkgutil
    from importlib._bootstrap_external import MAGIC_NUMBER

    from lark import Lark

    from . import frozen_re, records

    data = marshal.loads(tables)
    out = {"regexes": frozen_re.record(
        Lark._load_from_dict(data["data"], data["memo"]))}  # type: ignore[no-untyped-call]  # private, unannotated
    for module in sorted(pkgutil.iter_modules(importlib.import_module(__package__).__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__package__}.{module.name}")
    code = {text: compile(text, "<string>", "exec", dont_inherit=True) for text in records.SOURCES}
    out["records"] = marshal.dumps({"magic": MAGIC_NUMBER, "code": marshal.dumps(code)}, 2)
    return out


def _put(work: str, arc: str, data: bytes) -> None:
    """One file, on disk before the folder gets its name: after a power cut, a cache is whole or absent."""
    path = os.path.join(work, *arc.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _clean(parent: str) -> None:
    """Remove the temporary folders of fills that died."""
    now = time.time()
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        try:
            age = now - os.stat(path).st_mtime
        except OSError:
            continue
        if name.startswith(".fill-") and age > STALE:
            shutil.rmtree(path, ignore_errors=True)
