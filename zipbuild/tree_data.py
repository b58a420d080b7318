"""Run by the build under each interpreter with a bytecode tree: what that interpreter compiles
for itself, as marshal data on stdout: the lexers' regular expressions (flowdsl.lang.frozen_re)
and the records' __init__s (flowdsl.lang.records).

    python -S -B tree_data.py TREE
"""

import importlib
import marshal
import os
import sys
from importlib._bootstrap_external import MAGIC_NUMBER

tree = sys.argv[1]
sys.path.insert(0, tree)
from lark import Lark  # noqa: E402  (the bundled copy, from the tree)

from flowdsl.lang import frozen_re, records  # noqa: E402

out = {}
with open(os.path.join(tree, "flowdsl", "lang", "_tables.marshal"), "rb") as f:
    tables = marshal.loads(f.read())  # the fast parser's patterns are these lexers' patterns
out["regexes"] = frozen_re.record(Lark._load_from_dict(tables["data"], tables["memo"]))
for name in sorted(os.listdir(os.path.join(tree, "flowdsl", "lang"))):
    if name.endswith(".py") and not name.startswith("_"):
        importlib.import_module("flowdsl.lang." + name[:-3])
code = {text: compile(text, "<string>", "exec", dont_inherit=True) for text in records.SOURCES}
out["records"] = marshal.dumps({"magic": MAGIC_NUMBER, "code": marshal.dumps(code)}, 2)
sys.stdout.buffer.write(marshal.dumps(out, 2))
