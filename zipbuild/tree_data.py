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

lang = os.path.join(tree, "flowdsl", "lang")
with open(os.path.join(lang, "_tables.marshal"), "rb") as f:
    tables = f.read()
modules = ["flowdsl.lang." + n[:-3] for n in os.listdir(lang) if n.endswith(".py") and not n.startswith("_")]
sys.stdout.buffer.write(marshal.dumps(interpreter_data(tables, modules), 2))
