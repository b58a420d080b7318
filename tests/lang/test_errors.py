"""The friendly syntax errors: `flowdsl.lang.parser.EXAMPLES` is the table and the test.

Like lark's GRAMMAR_ERRORS and tests/test_grammar.py::test_errors, every example
must fail to parse with a message that holds its label, and (section 6 of the
reference) a hint that says what was expected.
"""

import pytest

from flowdsl.lang.diagnostics import FlowSyntaxError
from flowdsl.lang.parser import EXAMPLES, parse

CASES = [(label, example) for label, examples in EXAMPLES.items() for example in examples]

# Examples that cannot give their label, because of a bug (xfail until fixed).
BROKEN: dict = {}

# The label must not depend on what comes before the error: states are
# compared without the depth of the parser's stack.
PREFIX = 'task first { sh "echo first" }\n'


def _id(label, example):
    return example.replace(" ", "_")[:40]


def parse_error(text):
    with pytest.raises(FlowSyntaxError) as info:
        parse(text, "example.flow")
    return info.value.diagnostic


def test_table_is_not_empty():
    assert len(EXAMPLES) >= 10
    assert all(EXAMPLES.values()), "a label without examples"
    assert len(CASES) == len({example for _, example in CASES}), "an example listed twice"


@pytest.mark.parametrize("label, example", [
    pytest.param(label, example, id=_id(label, example),
                 marks=[pytest.mark.xfail(strict=True, reason=BROKEN[example])] if example in BROKEN else [])
    for label, example in CASES
])
def test_example_gives_its_label(label, example):
    d = parse_error(example)
    assert d.code == "E001"
    assert label in d.message
    assert d.hint and d.hint.startswith("expected "), d.hint
    assert d.span.file == "example.flow" and d.span.line >= 1 and d.span.col >= 1


@pytest.mark.parametrize("label, example", [pytest.param(label, example, id=_id(label, example))
                                            for label, example in CASES])
def test_example_label_after_another_block(label, example):
    d = parse_error(PREFIX + example)
    assert d.code == "E001"
    assert label in d.message
    assert d.span.line == 2 or example.count("\n")


def test_label_after_an_earlier_statement():
    d = parse_error('task a {\n    sh "echo a"\n    when sometimes\n}\n')
    assert "`when` takes `success`, `failure` or `always`" in d.message


def test_unlabelled_error_still_says_what_was_expected():
    d = parse_error('task a {\n    sh "echo a"\n    frobnicate 3\n}\n')
    assert (d.code, d.span.line, d.span.col) == ("E001", 3, 5)
    assert "frobnicate" in d.message
    assert d.hint.startswith("expected a task statement")
