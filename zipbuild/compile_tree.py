"""Run by the build under each interpreter found: compile the modules named on stdin (JSON
[[source, target, shown name]...]) into unchecked-hash .pyc files, docstrings left out.

    python -S -B [-X no_debug_ranges] compile_tree.py < jobs.json

Docstrings go (flow never reads one at run time) and, from 3.11, the column
tables of tracebacks (`-X no_debug_ranges`): a traceback still names the line,
not the columns of the failing expression. Together they take a third off the
bytecode trees.
"""

import ast
import importlib._bootstrap_external as ext
import importlib.util
import json
import os
import sys

DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)

jobs = json.load(sys.stdin)
for source, target, shown in jobs:
    with open(source, "rb") as f:
        data = f.read()
    tree = ast.parse(data, shown)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, DOCUMENTED) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            if len(body) > 1:
                del body[0]
            else:
                body[0] = ast.copy_location(ast.Pass(), body[0])
    code = compile(tree, shown, "exec", dont_inherit=True, optimize=0)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(ext._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False))
