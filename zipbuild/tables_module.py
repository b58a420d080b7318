"""The LALR tables of grammar/flow.lark, for flowdsl.lang.parser.

Copied into flow.pyz by build_zipapp.py, beside the tables it made with
flowdsl.lang.parser.dump_tables() (zipbuild/make_tables.py).
The tables themselves are marshal data at the archive's root, one copy for
the bytecode trees of every interpreter (marshal's format 2 reads the same on
all of them): `load("lark")` as lark serializes them, `load("fast")` as
plain lists and dicts for flowdsl.lang.lalr. Outside an archive
there is nothing to load (ImportError), and the parser builds its tables from
the grammar.
"""

import os

from flowdsl.lang.bundled import marshalled, root

_root = root(globals())  # the archive, or its bytecode cache (which holds copies at the same places)
if _root is None:
    raise ImportError("the frozen tables are read from flow.pyz only")
_FILES = {"lark": "flowdsl/lang/_tables.marshal", "fast": "flowdsl/lang/_fast.marshal"}  # build_zipapp's names
_LOADED = {}


def load(part):
    """The tables named `part` (read once), or None if they cannot be read."""
    if part not in _LOADED:
        _LOADED[part] = marshalled(globals(), os.path.join(_root, *_FILES[part].split("/")))
    return _LOADED[part]
