"""Run by the build with the bundled copy of flow and its dependencies: the grammar's LALR tables,
as marshal data on stdout (lark's form and the fast parser's).

    python -S -B make_tables.py TREE
"""

import ast
import marshal
import pprint
import sys

sys.path.insert(0, sys.argv[1])
import lark  # noqa: E402  (the bundled copy, from the tree)

from flowdsl.lang.parser import dump_tables  # noqa: E402

assert lark.__file__.startswith(sys.argv[1]), lark.__file__  # the bundled lark, not the build machine's
tables = dump_tables()
body = pprint.pformat(tables, width=110, compact=True, sort_dicts=False)
assert ast.literal_eval(body) == tables, "the tables are not plain data"
tables = ast.literal_eval(body)
fast = tables.pop("fast")
# marshal format 2 has no back-references, so its bytes follow the data alone (not refcounts)
sys.stdout.buffer.write(marshal.dumps({"lark": marshal.dumps(tables, 2), "fast": marshal.dumps(fast, 2)}, 2))
