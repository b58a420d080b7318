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
    loader = module_globals.get("__loader__")
    if not hasattr(loader, "get_data"):
        return None
    import marshal

    try:
        return marshal.loads(loader.get_data(path))
    except (OSError, EOFError, ValueError, TypeError):
        return None
