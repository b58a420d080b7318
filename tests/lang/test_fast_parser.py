"""The parser's fast path (flowdsl.lang.lalr) against lark: the same answer for every input.

The zipapp parses a file with lalr.FastParser over tables that build_zipapp.py
exports from lark (parser.dump_tables), and goes to lark when the fast path
meets a syntax error. Here the tables are exported in-process the same way,
and both parsers get the valid corpus, the examples, test_fmt's generated
files and test_properties' mutated corpus. Where lark parses a text, the fast
path must give the same module and the same diagnostics (a keyword used as a
name included); where lark raises, the fast path must fall back or raise the
same builder error, never answer differently.
"""

import marshal
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langkit import CORPUS, TEXTS, expressions, layouts, mutate, mutation

from flowdsl.lang import lalr, parser
from flowdsl.lang.builder import Builder, split_blocks
from flowdsl.lang.diagnostics import FlowSyntaxError
from flowdsl.lang.ir import Module
from flowdsl.lang.loader import read_text


@pytest.fixture(scope="module")
def fast():
    tables = parser.dump_tables()["fast"]
    tables = marshal.loads(marshal.dumps(tables, 2))  # as the zipapp stores them
    builder = Builder()
    return lalr.FastParser(tables, builder, re), builder


def diag(d):
    return (d.code, d.message, d.span, d.hint)


def with_lark(text):
    try:
        module, found = parser._parse_with_lark(text, "x.flow")
    except FlowSyntaxError as e:
        return "error", diag(e.diagnostic)
    return "ok", (module, [diag(d) for d in found])


def with_fast(fast, text):
    fast_parser, builder = fast
    builder.begin("x.flow", text)
    try:
        blocks = fast_parser.parse(text)
    except lalr.Fallback:
        return "fallback", None
    except FlowSyntaxError as e:
        return "error", diag(e.diagnostic)
    pipeline, tasks, includes, more = split_blocks("x.flow", blocks)
    return "ok", (Module("x.flow", pipeline, tasks, includes), [diag(d) for d in builder.diagnostics + more])


def assert_same(fast, text):
    want = with_lark(text)
    got = with_fast(fast, text)
    if want[0] == "ok":
        assert got == want, text
    else:
        assert got[0] == "fallback" or got == want, text
    return got[0]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_the_corpus_parses_the_same(fast, path):
    text, problem = read_text(str(path))
    assert problem is None
    assert assert_same(fast, text) == "ok"


@pytest.mark.parametrize("text", [
    "",
    "   \n# only a comment\n",
    "task a { with { cache = 1  when = 2  output = 3 } }",  # keywords as map keys
    "task cache { run m:f }\ntask b { after cache }",  # a keyword as a task name
    "task a { run m:f }  # trailing comment without a newline",
    'task a { sh """\n  two\n  lines\n  """ }\ntask b { after a }',  # line counting across a long string
    "task a {\r\n run m:f\r\n}\r\n",
])
def test_edge_cases_parse_the_same(fast, text):
    assert assert_same(fast, text) == "ok"


@pytest.mark.parametrize("text", [
    "task a { run }", "task {", "task a { with { x = } }", "task a { sh \"unclosed }", "task a { run m:f } 3",
    "pipeline p { schedule daily }", "task a { with { a = " + "[" * 150 + "]" * 150 + " } }",
])
def test_syntax_errors_fall_back_or_fail_alike(fast, text):
    assert assert_same(fast, text) in ("fallback", "error")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_generated_files_parse_the_same(fast, case):
    assert assert_same(fast, case[0]) == "ok"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.integers(0, len(TEXTS) - 1), ops=st.lists(mutation, min_size=1, max_size=3))
def test_the_mutated_corpus_parses_the_same(fast, source, ops):
    data = TEXTS[source]
    for op in ops:
        data = mutate(data, op)
    try:
        text = data.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
    except UnicodeDecodeError:
        return
    assert_same(fast, text)


def test_export_refuses_what_it_cannot_follow():
    lark_parser, _ = parser._load(lexer_callbacks={"COMMENT": lambda t: t})
    with pytest.raises(ValueError, match="lexer callbacks"):
        lalr.export(lark_parser, Builder)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expressions)
def test_generated_conditions_parse_the_same(fast, case):
    text, _, params = case
    head = "pipeline p { params { " + "  ".join(f"{k} = 0" for k in params) + " } }\n" if params else ""
    assert assert_same(fast, head + 'task t {\n    sh "x"\n    if ' + text + "\n    when none_failed\n}\n") == "ok"
