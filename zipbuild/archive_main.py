"""flow.pyz: the `flow` command in one file (the archive's __main__.py, as build_zipapp.py writes it).

The build fills in PYC_TREES (the bytecode trees it compiled, cache tag ->
the magic number they were compiled for) and BUILD (a digest of what the
archive holds). An interpreter without a tree uses the bytecode cache that
flowdsl.lang.bytecache filled after its first command, if it is safe to
(owned by this user, writable by no one else); with neither, it imports the
sources at the archive's root, and fills the cache when the command is done.
"""

import sys

if sys.version_info < (3, 9):  # noqa: UP036  (said on any Python, 2.7 included: nothing above or here needs more)
    sys.stderr.write("flow needs Python 3.9 or newer (this is %s)\n" % sys.version.split()[0])  # noqa: UP031
    sys.exit(2)

import os  # noqa: E402
from importlib._bootstrap_external import MAGIC_NUMBER  # noqa: E402  (loaded with the interpreter)

PYC_TREES = {}  # filled in by the build
BUILD = ""  # filled in by the build
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


def cache_folder():
    """This interpreter's bytecode cache of this build: (its path, whether it is there and safe to use);
    None when no cache is to be used or written (FLOW_BYTECODE_CACHE set empty, no home)."""
    base = os.environ.get("FLOW_BYTECODE_CACHE")
    if base is None:
        xdg = os.environ.get("XDG_CACHE_HOME")
        home = os.path.expanduser("~")
        base = os.path.join(xdg, "flow") if xdg and os.path.isabs(xdg) else \
            (os.path.join(home, ".cache", "flow") if os.path.isabs(home) else "")
    if not base:
        return None
    base = os.path.realpath(base)  # a link the user chose is followed; below it, none is
    path = os.path.join(base, "pyc", BUILD + "-" + sys.implementation.cache_tag)
    return path, os.path.isdir(path) and safe(base, path)


def safe(base, path):
    """Owned by this user and writable by no one else: the cache, and every folder from the cache's root
    down to it (a folder someone else may write to lets them swap what is inside)."""
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    folder = path
    while True:
        try:
            st = os.lstat(folder)
        except OSError:
            return False
        if (uid is not None and st.st_uid != uid) or st.st_mode & 0o022 or (st.st_mode & 0o170000) != 0o040000:
            return False
        if folder == base:
            return True
        folder = os.path.dirname(folder)


here = os.path.dirname(os.path.abspath(__file__))
tree = to_fill = None
if PYC_TREES.get(sys.implementation.cache_tag) == MAGIC_NUMBER.hex():
    tree = os.path.join(here, PYC_DIR, sys.implementation.cache_tag)
else:
    cache = cache_folder()
    if cache is not None and cache[1]:
        tree = cache[0]
    elif cache is not None and not os.path.exists(cache[0]) and not sys.flags.dont_write_bytecode:
        to_fill = cache[0]
if tree is not None:
    sys.path.insert(0, tree)
    sys.meta_path.append(RootSources(tree, here))

from flowdsl.cli import main  # noqa: E402

if to_fill is None:
    raise SystemExit(main())
try:
    status = main()
except SystemExit as e:
    status = e.code
for stream in (sys.stdout, sys.stderr):  # the command's output is whole before the cache is made
    try:
        stream.flush()
    except (OSError, ValueError):
        pass
from flowdsl.lang.bytecache import fill  # noqa: E402

fill(here, to_fill)
raise SystemExit(status)
