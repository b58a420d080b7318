"""Fingerprints stay what they were, and the callable's source is the same on every Python.

The definition's text is the repr of the spanless IR as first written. The
callable's source (the `s` part) is the definition as the user wrote it:
comments, blank lines and layout do not change it, a change to the code
does, and Python 3.9 and 3.13 compute the same one.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowdsl import check
from flowdsl.lang import ir
from flowdsl.lang.records import fields, is_record
from flowdsl.store import checkpoint

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "tests" / "data" / "valid").rglob("*.flow")) + sorted((ROOT / "examples").rglob("*.flow"))


def first_shape(node):
    """The definition's shape as fingerprints were first made from it: nested lists, no spans."""
    if isinstance(node, ir.Span):
        return None
    if isinstance(node, (tuple, list)):
        return [first_shape(n) for n in node]
    if is_record(node):
        return [type(node).__name__] + [[f, first_shape(getattr(node, f))] for f in fields(node)
                                        if not f.endswith("span")]
    return node


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_the_definition_text_is_the_first_one(path):
    program = check(str(path)).program
    assert program is not None and program.tasks
    for task in program.tasks:
        definition = [task.action, task.args, task.foreach, None]
        assert ir.shape_text(definition) == repr(first_shape(definition))


# ---- the callable's source (`s`): what the user wrote, on every Python ----------------


def source_part(folder, module, attr):
    """The `s` part of a task that runs `module:attr` from `folder`, as a run computes it."""
    span = ir.Span("p.flow", 1, 1, 1, 2)
    action = ir.RunAction(ir.CallableRef(module, attr, span), span)
    return checkpoint.Fingerprints({}, [str(folder)]).source(action)


# Every kind of definition a task may run; the comments, blank lines, trailing
# whitespace and strings over several lines are there on purpose.
STEPS = '''\
import functools


def deco(*args):
    return lambda f: f


@deco("a")
@functools.lru_cache(maxsize=None)  # cached
def decorated(rows, scale=2):
    """Scale the rows.

    Trailing spaces here are the string's:···
    """
    total = 0
    for r in rows:
        total += r * scale  # each
    return {"total": total, "label": f"{total:>{scale}} {'#x'} {dict(a=1)['a']}"}


async def fetch(url):
    # an async def
    return f'{url!r} "{url}"'


class Step:
    limit = 3

    def run(self, x):
        def inner(y):
            return min(y, self.limit)

        return inner(x)


@(
    deco
)
def parenthesised(q):
    text = f"""first {q +··
   1}···
last"""
    return text + "a \\
b"


if True:
    def nested_in_if(a):
        return [
    a,
        ]


handler = lambda x: x  # a name assigned: fingerprinted by the module's bytes
'''.replace("·", " ")  # trailing spaces, written so that no editor takes them away
ATTRS = ["decorated", "fetch", "Step", "Step.run", "parenthesised", "nested_in_if", "handler"]

# The same computation in an interpreter that has only the standard library
# (`-S`: no site-packages, so no msgpack for flowdsl.store): pysource is
# what Fingerprints.source calls, and it needs nothing else.
PROBE = """
import hashlib, json, sys
from flowdsl.lang import pysource

folder, module, attrs = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
source = pysource.SourceIndex([folder]).module(module)
out = {}
for attr in attrs:
    node = pysource.lookup(source, attr)
    text = None if isinstance(node, str) else pysource.definition_text(source, node)
    data = source.data if text is None else text.encode("utf-8", "surrogatepass")
    out[attr] = ["text" if text is not None else "file", hashlib.sha256(data).hexdigest()[:10]]
print(json.dumps(out))
"""


def pyenv_python(minor: str) -> Path:
    """The newest pyenv CPython `minor` (e.g. "3.9"); fails (never skips), like the zipapp's tests."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    found = sorted((int(p.name.split(".")[2]), p) for p in (root / "versions").glob(f"{minor}.*")
                   if re.fullmatch(re.escape(minor) + r"\.\d+", p.name) and (p / "bin" / "python3").exists())
    if not found:
        pytest.fail(f"Python {minor} is missing under {root}/versions: the source part must be checked on it")
    return found[-1][1] / "bin" / "python3"


def probe(python, folder, module):
    """{attr: [how ("text" or "file"), the `s` part]} for ATTRS of `folder/module.py`, computed by `python`."""
    proc = subprocess.run([str(python), "-S", "-c", PROBE, str(folder), module, ",".join(ATTRS)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


MODULES = {
    "steps": STEPS.encode(),
    "crlf": STEPS.replace("\n", "\r\n").encode(),
    "latin": ("# -*- coding: latin-1 -*-\n" + STEPS.replace("'#x'", "'#é'")).encode("latin-1"),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_source_part_is_the_same_on_python_3_9_and_3_13(tmp_path, module):
    (tmp_path / f"{module}.py").write_bytes(MODULES[module])
    here = probe(sys.executable, tmp_path, module)
    # the probe computes what a run does
    assert {attr: s for attr, (_, s) in here.items()} == {attr: source_part(tmp_path, module, attr) for attr in ATTRS}
    assert {attr: how for attr, (how, _) in here.items()} == dict.fromkeys(ATTRS, "text") | {"handler": "file"}
    for minor in ("3.9", "3.13"):
        assert probe(pyenv_python(minor), tmp_path, module) == here, f"Python {minor}"


def edited(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# The lines of STEPS that begin inside a string: their spaces are the string's.
IN_STRINGS = {"    Trailing spaces here are the string's:   \n", '    """\n', "   1}   \n", 'last"""\n', 'b"\n'}


def indented(text: str) -> str:
    """The module's code under an `if True:`, each definition still found by its name, strings as they were."""
    lines = text.splitlines(True)
    assert IN_STRINGS <= set(lines)
    return "if True:\n" + "".join("    " + line if line.strip() and line not in IN_STRINGS else line for line in lines)


LAYOUT_ONLY = {
    "a comment line in a body": lambda t: edited(t, "    total = 0\n", "    # start at nothing\n    total = 0\n"),
    "a comment at a line's end": lambda t: edited(t, "        return inner(x)\n", "        return inner(x)  # done\n"),
    "a comment between decorator and def": lambda t: edited(t, "def decorated(", "# the main one\ndef decorated("),
    "a comment inside brackets": lambda t: edited(t, "    a,\n", "    a,  # the one\n"),
    "a changed comment": lambda t: edited(t, "# each", "# every row, scaled"),
    "a removed comment": lambda t: edited(t, "  # cached", ""),
    "a comment ending in a backslash": lambda t: edited(t, "    limit = 3\n", "    limit = 3  # C:\\\n"),
    "a comment with triple quotes": lambda t: edited(t, "        return [\n", '        return [  # """\n'),
    "blank lines in a body": lambda t: edited(t, "    total = 0\n", "\n    total = 0\n\n\n"),
    "no blank line in a class": lambda t: edited(t, "    limit = 3\n\n", "    limit = 3\n"),
    "a blank line after a decorator": lambda t: edited(t, '@deco("a")\n', '@deco("a")\n\n'),
    "trailing whitespace": lambda t: t.replace("):\n", "):  \t\n").replace("= 0\n", "= 0 \n"),
    "every definition indented": indented,
    "CRLF line ends": lambda t: t.replace("\n", "\r\n"),
    "another definition changed": lambda t: edited(t, "return lambda f: f", "return lambda f: f or None"),
}


@pytest.mark.parametrize("edit", sorted(LAYOUT_ONLY))
def test_comments_blank_lines_and_indentation_do_not_change_the_source_part(tmp_path, edit):
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    (before / "steps.py").write_bytes(STEPS.encode())
    (after / "steps.py").write_bytes(LAYOUT_ONLY[edit](STEPS).encode())  # CRLF as written
    assert (after / "steps.py").read_bytes() != (before / "steps.py").read_bytes()
    for attr in ATTRS[:-1]:  # handler: the module's bytes
        assert source_part(after, "steps", attr) == source_part(before, "steps", attr), attr


CODE_CHANGES = {
    "a different default": ("decorated", "scale=2", "scale=3"),
    "a different string": ("decorated", '"total": total', '"sum": total'),
    "an added statement": ("decorated", "    total = 0\n", "    total = 0\n    rows = list(rows)\n"),
    "a changed decorator argument": ("decorated", '@deco("a")', '@deco("b")'),
    "a removed decorator": ("decorated", "@functools.lru_cache(maxsize=None)  # cached\n", ""),
    "an added decorator": ("fetch", "async def fetch", "@deco()\nasync def fetch"),
    "def for async def": ("fetch", "async def fetch", "def fetch"),
    "a # inside a string": ("decorated", "{'#x'}", "{'#y'}"),
    "a return moved into the loop": ("decorated", '    return {"total"', '        return {"total"'),
    "trailing spaces inside a docstring": ("decorated", "string's:   \n", "string's: \n"),
    "a blank line inside a docstring": ("decorated", "    Trailing spaces", "\n    Trailing spaces"),
    "indentation inside a string": ("parenthesised", "\n   1}", "\n 1}"),
    "after a backslash inside a string": ("parenthesised", '\\\nb"', '\\\n  b"'),
    "a nested function's body": ("Step.run", "min(y, self.limit)", "max(y, self.limit)"),
    "a method's body, seen in its class": ("Step", "min(y, self.limit)", "max(y, self.limit)"),
    "a class attribute": ("Step", "limit = 3", "limit = 4"),
    "the parenthesised decorator": ("parenthesised", "    deco\n)", "    deco()\n)"),
    "a bracketed list's items": ("nested_in_if", "    a,\n", "    a, a,\n"),
}


@pytest.mark.parametrize("change", sorted(CODE_CHANGES))
def test_a_change_to_the_code_changes_the_source_part(tmp_path, change):
    attr, old, new = CODE_CHANGES[change]
    before, after = tmp_path / "before", tmp_path / "after"
    before.mkdir()
    after.mkdir()
    (before / "steps.py").write_bytes(STEPS.encode())
    (after / "steps.py").write_text(edited(STEPS, old, new))
    assert source_part(after, "steps", attr) != source_part(before, "steps", attr)


def test_a_module_that_does_not_parse_is_fingerprinted_by_its_bytes(tmp_path):
    data = b"def work(:\n    return 1\n"
    (tmp_path / "broken.py").write_bytes(data)
    assert source_part(tmp_path, "broken", "work") == hashlib.sha256(data).hexdigest()[:10]
