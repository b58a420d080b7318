"""`if EXPR` (language reference, section 7): parsing, precedence, evaluation, formatting.

The evaluation is held to an oracle written from the reference's words over
generated expressions: every operator, nesting, parentheses, values of every
kind, with the references (params) resolved. The same expressions go through
`flow fmt`, whose output must mean the same and evaluate alike.
"""

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from langkit import expressions

from flowdsl.lang import ir
from flowdsl.lang.fmt import format_text
from flowdsl.lang.parser import parse
from flowdsl.lang.values import EvalError, Scope, evaluate

SETTINGS = settings(max_examples=300, deadline=None)

# ---- the oracle: the reference's words as Python ------------------------------------------


def kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        return "list"
    return type(v).__name__


class Refused(Exception):
    """The reference says this is an error."""


def oracle(node):
    op = node[0]
    if op == "value":
        return node[1]
    if op == "not":
        return not truthy(oracle(node[1]))
    if op in ("and", "or"):
        values = (truthy(oracle(n)) for n in node[1:])
        return all(values) if op == "and" else any(values)
    left, right = oracle(node[1]), oracle(node[2])
    if op in ("in", "not in"):
        if isinstance(right, str) and not isinstance(left, str):
            raise Refused
        if not isinstance(right, (str, list, dict)):
            raise Refused
        try:
            found = left in right
        except TypeError:
            raise Refused from None
        return found if op == "in" else not found
    same = kind(left) == kind(right)
    if op == "==":
        return same and left == right
    if op == "!=":
        return not same or left != right
    if not same:
        raise Refused
    try:
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]
    except TypeError:
        raise Refused from None


def truthy(v):
    return bool(v)


# ---- generated expressions: (text, tree) ---------------------------------------------------


def condition_of(text, params):
    head = "pipeline p { params { " + "  ".join(f"{k} = 0" for k in params) + " } }\n" if params else ""
    module, diagnostics = parse(head + "task t {\n    sh \"x\"\n    if " + text + "\n}\n", "c.flow")
    assert diagnostics == []
    return module.tasks[0].condition


def evaluated(condition, params):
    return evaluate(condition.expr, Scope(params=params, run={}, environ={}))


@SETTINGS
@given(expressions)
def test_a_condition_means_what_the_reference_says(case):
    text, tree, params = case
    condition = condition_of(text, params)
    assert condition.text == text
    try:
        expected = oracle(tree)
    except Refused:
        with pytest.raises(EvalError):
            evaluated(condition, params)
        return
    got = evaluated(condition, params)
    assert isinstance(got, bool) if tree[0] != "value" else True
    assert bool(got) == bool(expected), text


@SETTINGS
@given(expressions)
def test_fmt_keeps_what_a_condition_means(case):
    text, _, params = case
    head = "pipeline p { params { " + "  ".join(f"{k} = 0" for k in params) + " } }\n" if params else ""
    source = head + "task t {\n    sh \"x\"\n    if   " + text.replace(" ", "  ") + "\n}\n"
    out = format_text(source, "c.flow")  # raises MeaningChanged if the layout means something else
    assert format_text(out, "c.flow") == out


@pytest.mark.parametrize("text, tree", [
    ("a or b and c", ("or", "a", ("and", "b", "c"))),
    ("a and b or c", ("or", ("and", "a", "b"), "c")),
    ("not a and b", ("and", ("not", "a"), "b")),
    ("not a == b", ("not", ("==", "a", "b"))),
    ("not (a or b)", ("not", ("or", "a", "b"))),
    ("a in b or c not in d", ("or", ("in", "a", "b"), ("not in", "c", "d"))),
    ("(a or b) and c", ("and", ("or", "a", "b"), "c")),
    ("not not a", ("not", ("not", "a"))),
])
def test_precedence_loosest_first_or_and_not_comparisons(text, tree):
    def shape(node):
        if isinstance(node, ir.Ref):
            return node.name
        if isinstance(node, ir.Not):
            return ("not", shape(node.operand))
        if isinstance(node, ir.BoolOp):
            return (node.op,) + tuple(shape(i) for i in node.items)
        return (node.op, shape(node.left), shape(node.right))

    module, diagnostics = parse("task t { sh \"x\" if " + text + " }", "c.flow")
    assert diagnostics == []
    assert shape(module.tasks[0].condition.expr) == tree


@pytest.mark.parametrize("left, right", [(1, 1.0), (2, 2.5), (0, 0.0)])
def test_int_and_float_compare_as_numbers(left, right):
    c = condition_of(f"{left} == {right}", {})
    assert evaluated(c, {}) is (left == right)
    c = condition_of(f"{left} < {right}", {})
    assert evaluated(c, {}) is (left < right)


@pytest.mark.parametrize("value, truth", [([], False), ("", False), (0, False), (None, False), ({}, False),
                                          ([0], True), ("0", True), (-1, True), (0.5, True), (False, False)])
def test_a_bare_value_is_tested_for_truth_as_in_python(value, truth):
    c = condition_of("params.x", {"x": 0})
    assert bool(evaluated(c, {"x": value})) is truth
    c = condition_of("not params.x", {"x": 0})
    assert evaluated(c, {"x": value}) is (not truth)


def test_dates_compare_with_dates_and_refuse_to_order_against_text():
    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    c = condition_of("params.a < params.b", {"a": 0, "b": 0})
    assert evaluated(c, {"a": when, "b": when + dt.timedelta(days=1)}) is True
    with pytest.raises(EvalError, match="cannot order"):
        evaluated(c, {"a": when, "b": "2026-01-03"})
    c = condition_of("params.a == params.b", {"a": 0, "b": 0})
    assert evaluated(c, {"a": when, "b": "2026-01-02T00:00:00+00:00"}) is False


def test_nan_and_missing_keys():
    c = condition_of("params.a == params.a", {"a": 0})
    assert evaluated(c, {"a": math.nan}) is False  # as Python: nan is not equal to itself
    c = condition_of("params.m.k == 1", {"m": 0})
    with pytest.raises(EvalError, match="has no key `k`"):
        evaluated(c, {"m": {"j": 1}})


@pytest.mark.parametrize("text, code, col", [
    ("a ==", "E001", None),
    ("(a or b", "E001", None),
    ("a = b", "E001", None),
    ("a < b < c", "E001", None),
    ("and a", "E001", None),
])
def test_malformed_conditions_are_syntax_errors_with_a_caret(flow, tmp_path, text, code, col):
    f = tmp_path / "c.flow"
    f.write_text("task a { sh \"x\" }\ntask b { sh \"x\" }\ntask c { sh \"x\" }\ntask t {\n    sh \"x\"\n    if " + text
                 + "\n}\n")
    proc = flow("validate", f)
    assert proc.returncode == 1
    assert f"error {code}" in proc.stdout
    assert "^" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_if_is_refused_in_defaults(flow, tmp_path):
    f = tmp_path / "d.flow"
    f.write_text("pipeline d { params { x = 1 } defaults { if params.x } }\ntask t { sh \"x\" }\n")
    proc = flow("validate", f)
    assert proc.returncode == 1 and "E210" in proc.stdout and "`if` cannot be given in `defaults`" in proc.stdout
