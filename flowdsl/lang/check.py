"""The front half in one call: load a file (following includes) and validate it."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import List, Optional, Sequence

    from .loader import Loaded, Loader


def check(path: str, targets: Sequence[str] = (), loader: Optional[Loader] = None,
          modules: Optional[List[str]] = None) -> Loaded:
    """Load `path` (following includes) and validate it.

    Returns a `loader.Loaded` whose `diagnostics` hold every problem found,
    syntax errors included, sorted by position. `modules`, a list, gets the
    Python files the checks read.
    """
    from .diagnostics import Diagnostic
    from .loader import Loader
    from .validator import validate

    loaded = (loader or Loader()).load(path)
    if loaded.program is not None:
        loaded.diagnostics.extend(validate(loaded.program, targets, modules))
    loaded.diagnostics.sort(key=Diagnostic.sort_key)
    return loaded
