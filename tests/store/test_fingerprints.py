"""Fingerprints stay what they were: the definition's text is the repr of the spanless IR as first written."""

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
        assert checkpoint._shape_text(definition) == repr(first_shape(definition))
