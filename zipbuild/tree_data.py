"""Run by the build under each interpreter with a bytecode tree: what that interpreter compiles
for itself, as marshal data on stdout: the lexers' regular expressions (flowdsl.lang.frozen_re)
and the records' __init__s (flowdsl.lang.records), made by flowdsl.lang.bytecache.interpreter_data,
which the bytecode cache of flow.pyz also uses.

    python -S -B tree_data.py TREE
"""

import marshal
import os
import sys

tree = sys.argv[1]
sys.path.insert(0, tree)
from flowdsl.lang.bytecache import interpreter_data  # noqa: E402  (from the tree)

with open(os.path.join(tree, "flowdsl", "lang", "_tables.marshal"), "rb") as f:
    tables = f.read()
sys.stdout.buffer.write(marshal.dumps(interpreter_data(tables), 2))
