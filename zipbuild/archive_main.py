"""flow.pyz: the `flow` command in one file (the archive's __main__.py, as build_zipapp.py writes it).

The build fills in PYC_TREES: the bytecode trees it compiled, cache tag ->
the magic number they were compiled for. Any other interpreter imports the
sources at the archive's root.
"""

import sys

if sys.version_info < (3, 9):  # noqa: UP036  (said on any Python, 2.7 included: nothing above or here needs more)
    sys.stderr.write("flow needs Python 3.9 or newer (this is %s)\n" % sys.version.split()[0])  # noqa: UP031
    sys.exit(2)

import os  # noqa: E402
from importlib._bootstrap_external import MAGIC_NUMBER  # noqa: E402  (loaded with the interpreter)

PYC_TREES = {}  # filled in by the build
PYC_DIR = "__pyc__"


class RootSources:
    """Finds, at the archive's root, the modules a bytecode tree leaves out (lark's grammar compiler...).

    A package imported from a tree searches only the tree for its submodules;
    this last finder on sys.meta_path looks in the same package at the root.
    """

    def __init__(self, tree, root):
        self.tree, self.root = tree, root

    def find_spec(self, name, path=None, target=None):
        if not path:
            return None
        from importlib.machinery import PathFinder

        found = [self.root + p[len(self.tree):] for p in path if p.startswith(self.tree + os.sep)]
        return PathFinder.find_spec(name, found) if found else None


if PYC_TREES.get(sys.implementation.cache_tag) == MAGIC_NUMBER.hex():
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.join(here, PYC_DIR, sys.implementation.cache_tag)
    sys.path.insert(0, tree)
    sys.meta_path.append(RootSources(tree, here))

from flowdsl.cli import main  # noqa: E402

raise SystemExit(main())
