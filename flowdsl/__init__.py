"""flow: pipelines written in the `.flow` language, checked, planned and run.

The whole chain, one stage per module:

    text --parser/builder--> IR --validator--> diagnostics --planner--> graph
                (loader follows includes)

`check(path)` runs the front half; the CLI (`flowdsl.cli`) is built on it.
Imports stay inside functions: `flow validate` must start fast.
"""

__version__ = "0.1.0"
__all__ = ["check", "__version__"]


def check(path, targets=(), loader=None, modules=None):
    """Load `path` (following includes) and validate it.

    Returns a `loader.Loaded` whose `diagnostics` hold every problem found,
    syntax errors included, sorted by position. `modules`, a list, gets the
    Python files the checks read.
    """
    from .lang.diagnostics import Diagnostic
    from .lang.loader import Loader
    from .lang.validator import validate

    loaded = (loader or Loader()).load(path)
    if loaded.program is not None:
        loaded.diagnostics.extend(validate(loaded.program, targets, modules))
    loaded.diagnostics.sort(key=Diagnostic.sort_key)
    return loaded
