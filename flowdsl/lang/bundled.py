"""Data the build put into flow.pyz beside the modules, read through the module's zip loader.

`marshalled(module_globals, path)` is what the archive holds at `path` (a
module's own folder in its bytecode tree, or the archive's root), as
marshal data; None outside the zipapp or when the data is missing or
unreadable (the caller then does without: compiles, or finds no zone).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List


def marshalled(module_globals: Dict[str, Any], path: str) -> Any:
    loader: Any = module_globals.get("__loader__")
    if not hasattr(loader, "get_data"):
        return None
    import marshal

    try:
        return marshal.loads(loader.get_data(path))
    except (OSError, EOFError, ValueError, TypeError):
        return None


def root(module_globals: Dict[str, Any]) -> Any:
    """Where the build's data files are for a module of flowdsl.lang (they sit under `flowdsl/lang/` there):
    the archive it was imported from, or the bytecode cache made from that archive, which holds copies
    (flowdsl.lang.bytecache). None anywhere else."""
    archive = getattr(module_globals.get("__loader__"), "archive", None)
    if archive is not None:
        return archive
    file = module_globals.get("__file__") or ""
    if file.endswith(".pyc"):  # sourceless: from a bytecode cache, three folders down (flowdsl/lang/x.pyc)
        import os

        return os.path.dirname(os.path.dirname(os.path.dirname(file)))
    return None


def interpreter_data(tables: bytes, modules: List[str]) -> Dict[str, bytes]:
    """What this interpreter compiles for itself, as marshal data, by the names the build gives the files:
    the lexers' regular expressions (flowdsl.lang.frozen_re, from the grammar's `tables` as lark serializes
    them) and the `__init__`s of the records that `modules` (names of flowdsl.lang's modules) define
    (flowdsl.lang.records). For a bytecode tree of the archive, or its bytecode cache. Imports lark."""
    import importlib
    import marshal
    from importlib._bootstrap_external import MAGIC_NUMBER

    from lark import Lark

    from . import frozen_re, records

    data = marshal.loads(tables)
    out = {"regexes": frozen_re.record(
        Lark._load_from_dict(data["data"], data["memo"]))}  # type: ignore[no-untyped-call]  # private, unannotated
    for name in sorted(modules):
        importlib.import_module(name)
    code = {text: compile(text, "<string>", "exec", dont_inherit=True) for text in records.SOURCES}
    out["records"] = marshal.dumps({"magic": MAGIC_NUMBER, "code": marshal.dumps(code)}, 2)
    return out
