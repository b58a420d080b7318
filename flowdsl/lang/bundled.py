"""Data the build put into flow.pyz beside the modules, read through the module's zip loader.

`marshalled(module_globals, path)` is what the archive holds at `path` (a
module's own folder in its bytecode tree, or the archive's root), as
marshal data; None outside the zipapp or when the data is missing or
unreadable (the caller then does without: compiles, or finds no zone).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict


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
