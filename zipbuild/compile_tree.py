"""Run by the build under each interpreter found: compile the modules named on stdin (JSON
[[source, target, shown name]...]) into unchecked-hash .pyc files, as flowdsl.lang.bytecache.compiled
makes them for the bytecode cache too (docstrings and functions' annotations left out).

    python -S -B [-X no_debug_ranges] compile_tree.py ROOT < jobs.json

ROOT is the staged archive, whose flowdsl this imports. From 3.11, the column tables of
tracebacks go too (`-X no_debug_ranges`): a traceback still names the line, not the columns of
the failing expression. Together these take a third off the bytecode trees.
"""

import json
import os
import sys

sys.path.insert(0, sys.argv[1])
from flowdsl.lang.bytecache import compiled  # noqa: E402

jobs = json.load(sys.stdin)
for source, target, shown in jobs:
    with open(source, "rb") as f:
        data = f.read()
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(compiled(data, shown))
