"""The TextMate grammar for `.flow` (editors/vscode/syntaxes/flow.tmLanguage.json), checked with the engine VS Code
uses: vscode-textmate and vscode-oniguruma from npm, run with node (`.ci/run` installs them into
.ci/tools). Over the whole valid corpus and the examples, what the flow lexer and parser call a
keyword, string, interpolated field, duration, number, callable, comment or name must get the
matching TextMate scope, and no character goes without one."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from flowdsl.lang import ir
from flowdsl.lang.loader import read_text
from flowdsl.lang.parser import parse, parse_tree
from flowdsl.lang.records import fields, is_record

ROOT = Path(__file__).resolve().parent.parent
GRAMMAR = ROOT / "editors" / "vscode" / "syntaxes" / "flow.tmLanguage.json"
EXTENSION = ROOT / "editors" / "vscode" / "package.json"
TOOLS = ROOT / ".ci" / "tools" / "node_modules"
CORPUS = sorted((ROOT / "tests" / "data" / "valid").rglob("*.flow")) + sorted((ROOT / "examples").rglob("*.flow"))
VALUE_TOKENS = {"NAME", "STRING", "LONG_STRING", "NUMBER", "DURATION", "CALLABLE", "LSQB", "RSQB", "LBRACE", "RBRACE",
                "LPAR", "RPAR"}
KEYWORD_SCOPES = ("keyword.", "storage.type.", "support.constant.", "constant.language.", "support.function.builtin.")


@pytest.fixture(scope="module")
def scopes():
    """{file: [[(start, end, scopes), ...] per line]} from vscode-textmate."""
    node = shutil.which("node")
    if node is None or not (TOOLS / "vscode-textmate").is_dir() or not (TOOLS / "vscode-oniguruma").is_dir():
        pytest.fail("the TextMate engine is missing: `bash .ci/run` installs node's vscode-textmate and "
                    "vscode-oniguruma into .ci/tools (npm install --prefix .ci/tools ...)")
    proc = subprocess.run([node, str(ROOT / "tests" / "editor_tokenize.js"), str(GRAMMAR), "source.flow",
                           *map(str, CORPUS)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, NODE_PATH=str(TOOLS)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def scope_at(lines, line: int, col: int):
    """The scopes of the character at 1-based line and column."""
    for start, end, names in lines[line - 1]:
        if start <= col - 1 < end:
            return names
    raise AssertionError(f"no token at {line}:{col}")


def chars(tok):
    """(line, col) of every character of a token that is not white space."""
    line, col = tok.line, tok.column
    for ch in tok.value:
        if ch == "\n":
            line, col = line + 1, 1
            continue
        if not ch.isspace():
            yield line, col
        col += 1


def leaves(tree, parent=None):
    from lark import Token

    for i, child in enumerate(tree.children):
        if isinstance(child, Token):
            yield tree, i, child
        elif child is not None:
            yield from leaves(child, tree)


def fields_of(node):
    if isinstance(node, ir.Field):
        yield node
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from fields_of(item)
    elif is_record(node):
        for name in fields(node):
            yield from fields_of(getattr(node, name))


def test_the_grammar_is_textmate_json_and_the_extension_points_at_it():
    grammar = json.loads(GRAMMAR.read_text())
    assert grammar["scopeName"] == "source.flow" and grammar["fileTypes"] == ["flow"]
    manifest = json.loads(EXTENSION.read_text())
    language, = manifest["contributes"]["languages"]
    contributed, = manifest["contributes"]["grammars"]
    assert language["extensions"] == [".flow"] and contributed["scopeName"] == "source.flow"
    assert (EXTENSION.parent / contributed["path"]).resolve() == GRAMMAR
    config = json.loads((EXTENSION.parent / language["configuration"]).read_text())
    assert config["comments"]["lineComment"] == "#"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_gets_the_right_scopes(scopes, path):
    lines = scopes[str(path)]
    text, _ = read_text(str(path))
    source = text.split("\n")
    comments = []
    tree = parse_tree(text, comments.append)
    seen = {"keyword": 0, "string": 0, "field": 0, "comment": 0}

    def has(names, prefix):
        return any(n.startswith(prefix) for n in names)

    for parent, index, tok in leaves(tree):
        where = f"{path.name}:{tok.line}:{tok.column} {tok.type} {tok.value[:20]!r}"
        first = scope_at(lines, tok.line, tok.column)
        if tok.type not in VALUE_TOKENS:
            assert first[-1] != "source.flow" and first[-1].startswith(KEYWORD_SCOPES), (where, first)
            seen["keyword"] += 1
        elif tok.type in ("STRING", "LONG_STRING"):
            for line, col in chars(tok):
                assert has(scope_at(lines, line, col), "string.quoted."), where
            seen["string"] += 1
        elif tok.type == "DURATION":
            assert first[-1] == "constant.numeric.duration.flow", (where, first)
        elif tok.type == "NUMBER":
            assert first[-1] == "constant.numeric.flow", (where, first)
        elif tok.type == "CALLABLE":
            for line, col in chars(tok):
                assert has(scope_at(lines, line, col), "entity.name.") or \
                    has(scope_at(lines, line, col), "punctuation.separator.callable"), where
        elif tok.type == "NAME":
            # names spelled like keywords: task names, map keys, references are not keywords
            task_name = parent.data in ("task", "pipeline") and index == 1
            map_key = parent.data == "map" and index % 2 == 1
            if task_name or map_key or parent.data == "ref":
                assert not has(first, "keyword."), (where, first)
            if task_name:
                assert has(first, "entity.name."), (where, first)
            if map_key:
                assert "variable.other.key.flow" in first, (where, first)
    for tok in comments:
        for line, col in chars(tok):
            assert "comment.line.number-sign.flow" in scope_at(lines, line, col), (path.name, line, col)
        seen["comment"] += 1
    module, _ = parse(text, str(path))
    for field in fields_of(module):
        names = scope_at(lines, field.span.line, field.span.col)
        assert "meta.interpolation.flow" in names, (path.name, field.span, names)
        seen["field"] += 1
    # no character outside a string or comment goes without a scope of its own
    for n, (row, tokens) in enumerate(zip(source, lines), 1):
        for start, end, names in tokens:
            if row[start:end].strip():
                assert len(names) > 1, (path.name, n, row[start:end])
    assert seen["keyword"] > 0


def test_the_corpus_covers_what_the_grammar_colours(scopes):
    """Strings with fields, triple-quoted strings, durations and comments all occur somewhere."""
    everything = {name for lines in scopes.values() for line in lines for _, _, names in line for name in names}
    for wanted in ("meta.interpolation.flow", "string.quoted.triple.flow", "constant.numeric.duration.flow",
                   "comment.line.number-sign.flow", "constant.character.escape.brace.flow",
                   "constant.other.format-spec.flow", "entity.name.function.task.flow",
                   "keyword.other.statement.flow", "variable.other.key.flow"):
        assert wanted in everything, wanted
