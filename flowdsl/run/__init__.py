"""Running a plan: the run machine and its driver, attempts, backends (inline, thread, process, dask), workers."""

import sys as _sys
import types as _types


class _Stage(_types.ModuleType):
    """`flowdsl.run` is both this package and the Python API's `run()` (cli.md): importing the
    package puts it where the root's function was, so calling the package calls the function."""

    def __call__(self, *args, **kwargs):
        from ..cli.api import run  # the one import upward, allowed by tests/test_layout.py for this

        return run(*args, **kwargs)


_sys.modules[__name__].__class__ = _Stage

