"""The formatter (lang/fmt.py): idempotent, meaning-preserving, comments kept, over the valid
corpus and over hypothesis-generated files; and the canonical layout pinned on a few inputs.

Meaning-preserving: the IR of fmt(x) equals the IR of x with spans aside (`fmt.meaning`), and
the parse tree's words come in the same order (statement order kept). Run in-process, like
test_properties; tests/cli/test_fmt_cli.py drives the verb through the zipapp.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langkit import CORPUS, TEXTS, VALID, layouts, mutate, mutation

from flowdsl.lang.diagnostics import FlowSyntaxError
from flowdsl.lang.fmt import format_text, meaning
from flowdsl.lang.loader import read_text
from flowdsl.lang.parser import parse, parse_tree


def words(text: str):
    """The parse tree's tokens in order (punctuation such as `,` and `=` is not in the tree)."""
    from lark import Token

    out = []

    def walk(node):
        if isinstance(node, Token):
            out.append((node.type, node.value))
        elif node is not None:
            for child in node.children:
                walk(child)

    walk(parse_tree(text))
    return out


def assert_formats_well(text: str, comments=None):
    out = format_text(text, "x.flow")
    assert format_text(out, "x.flow") == out, "not idempotent"
    assert meaning(parse(out, "x.flow")[0]) == meaning(parse(text, "x.flow")[0]), "meaning changed"
    assert words(out) == words(text), "words reordered"
    if comments is not None:  # every comment kept, in order, each whole on a line of its own or at a line's end
        assert comments_of(out) == [c.rstrip() for c in comments]
    for line in out.split("\n"):
        assert line == line.rstrip() or '"""' in out, repr(line)
    assert "\n\n\n" not in out
    assert out == "" or (out.endswith("\n") and not out.endswith("\n\n"))
    return out


def test_corpus_is_there():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_corpus_formats_idempotently_keeping_meaning_and_comments(path):
    text, problem = read_text(str(path))
    assert problem is None
    out = assert_formats_well(text)
    assert comments_of(out) == comments_of(text)


def comments_of(text):
    found = []
    parse_tree(text, found.append)
    return [c.value.rstrip() for c in found]


# ---- the canonical layout, pinned ------------------------------------------------

MESSY = '''\
# leading comment
pipeline   p{
  params {  a=1   # why a
  bb   = [1,
  2]
  }
    defaults{retry 2 delay 1s
    timeout 5m}


    on failure run alerts:notify
}
task t {sh "echo {params.a}" with {x = params.a, y = env("Y",2)} retry 3 # three
  delay 1s on OSError, a.B
  after   u,v
}
task u { exec ["true"] }
task v { run m:f
}
'''

CANONICAL = '''\
# leading comment
pipeline p {
    params {
        a  = 1  # why a
        bb = [
            1,
            2,
        ]
    }
    defaults {
        retry 2 delay 1s
        timeout 5m
    }

    on failure run alerts:notify
}

task t {
    sh "echo {params.a}"
    with { x = params.a  y = env("Y", 2) }
    # three
    retry 3 delay 1s on OSError, a.B
    after u, v
}

task u {
    exec ["true"]
}

task v {
    run m:f
}
'''


def test_canonical_layout():
    assert assert_formats_well(MESSY) == CANONICAL


def test_formatted_text_is_left_alone():
    assert format_text(CANONICAL) == CANONICAL


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    ("# only a comment", "# only a comment\n"),
    ('include "a.flow"\n\n\n\ninclude "b.flow"\ntask x { sh "x" }',
     'include "a.flow"\n\ninclude "b.flow"\n\ntask x {\n    sh "x"\n}\n'),
    ('include "a.flow"\ninclude "b.flow"', 'include "a.flow"\ninclude "b.flow"\n'),
    ("pipeline p { defaults { } }", "pipeline p {\n    defaults {}\n}\n"),
    ('task x { sh "x" with {} exec [ ] }', 'task x {\n    sh "x"\n    with {}\n    exec []\n}\n'),
    ('task x { sh "x" with { "content-type" = "a" } }', 'task x {\n    sh "x"\n    with { "content-type" = "a" }\n}\n'),
    ("task x { run m:f with { a = b . c [ 0 ] [\"k\"] } }",
     'task x {\n    run m:f\n    with { a = b.c[0]["k"] }\n}\n'),
    ('task x { sh """\n  a\n    b\n  """ }', 'task x {\n    sh """\n  a\n    b\n  """\n}\n'),
    ('task x { sh "x" }  # after the block\n# at the end',
     'task x {\n    sh "x"\n}  # after the block\n# at the end\n'),
    ('task x { # opening\n sh "x"\n # closing\n}', 'task x {  # opening\n    sh "x"\n    # closing\n}\n'),
    ("task output { sh \"x\" with { cache = output } after when }",
     'task output {\n    sh "x"\n    with { cache = output }\n    after when\n}\n'),
])
def test_layout_cases(text, expected):
    assert assert_formats_well(text) == expected


def test_blank_lines_inside_a_block_are_kept_once():
    out = format_text('task x {\n\n\n  sh "x"\n\n\n\n  after y\n\n}\n')
    assert out == 'task x {\n    sh "x"\n\n    after y\n}\n'


def test_map_keys_aligned_per_group():
    out = format_text('task x { sh "x"\n with {\n a = 1\n long_key = 2\n\n b = 3\n # c\n cc = 4\n} }')
    assert "    a        = 1\n        long_key = 2\n\n        b = 3\n        # c\n        cc = 4\n" in out


def test_a_syntax_error_is_the_parsers_diagnostic():
    with pytest.raises(FlowSyntaxError) as e:
        format_text('task x { sh "x"', "bad.flow")
    assert e.value.diagnostic.code == "E004"
    assert e.value.diagnostic.span.file == "bad.flow"


def test_nesting_too_deep_is_refused_not_crashed():
    with pytest.raises(FlowSyntaxError) as e:
        format_text("task x { sh \"x\" with { a = " + "[" * 150 + "]" * 150 + " } }")
    assert e.value.diagnostic.code == "E009"


# ---- hypothesis: generated files in random layouts ---------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts())
def test_generated_files_format_idempotently_keeping_meaning_and_comments(case):
    text, comments = case
    assert_formats_well(text, comments)


# ---- hypothesis: the valid corpus mutated (test_properties' mutations), where it still parses ----


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=st.integers(0, len(TEXTS) - 1), ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_corpus_that_parses_formats_well(source, ops):
    data = TEXTS[source]
    for op in ops:
        data = mutate(data, op)
    try:
        text = data.decode("utf-8").lstrip("\ufeff").replace("\r\n", "\n")
        parse(text, "x.flow")
    except (UnicodeDecodeError, FlowSyntaxError):
        return
    assert_formats_well(text, comments_of(text))


def test_validate_never_builds_the_layout_parser(tmp_path):
    """The comments cost `flow validate` nothing: its parser has no callback, and fmt's is never made."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = ("import sys, flowdsl; loaded = flowdsl.check(sys.argv[1]); "
            "from flowdsl.lang import parser; assert not loaded.diagnostics, loaded.diagnostics; "
            "assert parser._LAYOUT_PARSER is None and 'flowdsl.lang.fmt' not in sys.modules; "
            "assert not parser._PARSER.options.lexer_callbacks; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code, str(VALID / "spec_example.flow")], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.stdout.strip() == "ok", proc.stderr
