"""The IR's frozen records behave as frozen dataclasses would."""

import pickle

import pytest

from flowdsl.lang import ir
from flowdsl.lang.records import fields


def span(line=1):
    return ir.Span("a.flow", line, 1, line, 4)


def test_fields_come_in_declaration_order():
    assert fields(span()) == ("file", "line", "col", "end_line", "end_col")


def test_records_are_frozen():
    s = span()
    with pytest.raises(AttributeError, match="frozen"):
        s.line = 2
    with pytest.raises(AttributeError):
        del s.line
    with pytest.raises(AttributeError):
        s.other = 1  # __slots__: no new attributes either


def test_equality_and_hash_are_by_value_and_type():
    assert span() == span() and hash(span()) == hash(span())
    assert span(1) != span(2)
    assert ir.Literal(1, span()) != ir.Duration(1, "1s", span())
    assert len({span(), span(), span(2)}) == 2


def test_defaults_and_factories():
    p = ir.PipelineDecl("p", None)
    assert p.schedules == () and p.defaults == ir.Settings()
    assert ir.PipelineDecl("q", None).defaults is not p.defaults  # a fresh one each time


def test_pickle_round_trip():
    t = ir.Template(("x", ir.Field(ir.Ref("run", ("date",), span()), "%Y", span())), span())
    assert pickle.loads(pickle.dumps(t)) == t


def test_repr_names_every_field():
    assert repr(ir.Ref("a", (0,), span())) == "Ref(name='a', path=(0,), span=Span(file='a.flow', line=1, col=1, " \
                                              "end_line=1, end_col=4))"
