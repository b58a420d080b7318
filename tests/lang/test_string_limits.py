"""What validates must not blow up at run time: the limits a string's fields are checked against.

In-process (flowdsl.check over a file written here) and generated with
hypothesis, so that many values meet the front end quickly; the same checks
through the zipapp, with `flow run`, are in tests/cli/test_bad_bytes.py.

* A format's width and precision go up to strings.MAX_FORMAT_WIDTH (E010 past
  it, at the number), whatever the shape of the format; up to it, formatting
  works and gives a string of about that size.
* A format that is neither Python's mini-language nor a date format is E008.
* An index in a field has at most 18 digits, as outside a string (E101).
* A NUL in a string is E002 at the NUL, once per string.
"""

import datetime as dt
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.lang.strings import MAX_FORMAT_WIDTH
from flowdsl.lang.values import EvalError, as_text

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A format with one number in it: {} is where the number goes.
SHAPES = [">{}", "<{}", "^{}", "*^{}", "0{}d", "+0{},d", "{}", "{}s", ".{}f", ".{}e", ".{}%", "{}.2f", ">10.{}f",
          "0>{}", "=+{}", "#0{}x", "%{}Y", "%_{}d", "%-{}m", "%Y-%{}d", "%0{}H"]
HEAD = 'pipeline p {\n    params { n = 5  x = 1.5  s = "text" }\n}\n\n'


def check(text: str):
    """The diagnostics of a file holding `text` (in a folder of its own)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.flow"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        return flowdsl.check(str(path)).diagnostics


def field_file(ref: str, fmt: str):
    """(file text, line, column of the format's first character) for `sh "echo {ref:fmt}"`."""
    prefix = '    sh "echo {' + ref + ":"
    return HEAD + "task t {\n" + prefix + fmt + '}"\n}\n', 6, len(prefix) + 1


def _rows(diagnostics):
    """The errors (the head's params are mostly unused: W101 is left out)."""
    return [(d.span.line, d.span.col, d.code) for d in diagnostics if d.severity == "error"]


@SETTINGS
@given(shape=st.sampled_from(SHAPES), number=st.integers(MAX_FORMAT_WIDTH + 1, 10**40),
       zeros=st.integers(0, 3), ref=st.sampled_from(["params.n", "params.x", "run.logical_date"]))
@example(shape=">{}", number=999_999_999, zeros=0, ref="params.n")  # the 3.9 GB string of the issue
def test_a_width_past_the_limit_is_E010_at_the_number(shape, number, zeros, ref):
    # leading zeros belong to a precision; before a width, a 0 is the zero-padding flag (`05d`, `%_05d`)
    digits = "0" * zeros + str(number) if ".{}" in shape else str(number)
    fmt = shape.format(digits)
    text, line, col = field_file(ref, fmt)
    start = col + fmt.index(digits)
    assert _rows(check(text)) == [(line, start, "E010")]


@SETTINGS
@given(shape=st.sampled_from(SHAPES), number=st.integers(0, MAX_FORMAT_WIDTH))
def test_a_width_up_to_the_limit_is_accepted_and_works(shape, number):
    fmt = shape.format(number)
    text, _, _ = field_file("params.x", fmt)
    assert _rows(check(text)) == []
    # and at run time it makes a string of about that size, or a clean error (the wrong kind of value)
    values = [5, -1.5, 1e300, "text", True, dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.timezone.utc)]
    for value in values:
        try:
            out = as_text(value, fmt)
        except EvalError:
            continue
        assert len(out) <= 2 * MAX_FORMAT_WIDTH + 400, (value, fmt)


FORMAT_ALPHABET = "<>=^+- z#0123456789_,.bcdeEfFgGnosxX%YmdHMSjaAbp:'qQ!"


@SETTINGS
@given(fmt=st.text(alphabet=FORMAT_ALPHABET, min_size=1, max_size=14))
def test_any_format_is_refused_or_formats_to_a_bounded_string(fmt):
    """Whatever the format, the front end answers with diagnostics only; a format it accepts
    formats every kind of value to a bounded string or fails with EvalError."""
    text, line, _ = field_file("params.x", fmt)
    diagnostics = [d for d in check(text) if d.severity == "error"]
    for d in diagnostics:
        assert d.code in ("E008", "E010"), d
        assert d.span.line == line
    if diagnostics:
        return
    values = [5, -1.5, 1e300, "text", True, None, [1], dt.date(2026, 1, 2),
              dt.datetime(2026, 11, 22, 5, 0, tzinfo=dt.timezone.utc)]
    for value in values:
        try:
            out = as_text(value, fmt)
        except EvalError:
            continue
        assert len(out) <= (2 * MAX_FORMAT_WIDTH + 400) * max(1, fmt.count("%")), (value, fmt)


def test_format_c_of_a_huge_number_is_an_eval_error():
    text, _, _ = field_file("params.n", "c")
    assert _rows(check(text)) == []  # valid: `c` of 65 is "A"
    with pytest.raises(EvalError):
        as_text(2**63 - 1, "c")


@pytest.mark.parametrize("fmt", ["abc", "YYYY-MM", ">8q", "{", "10x10", "!r"])
def test_a_format_that_is_neither_kind_is_E008(fmt):
    text, line, col = field_file("params.n", fmt)
    assert _rows(check(text)) == [(line, col, "E008")]


@pytest.mark.parametrize("fmt", [">8", "05d", ",", "_", ".2%", "%", "x", "%Y-%m-%d", "%%", "%H:%M", " >5", "z.1f"])
def test_ordinary_formats_are_accepted(fmt):
    text, _, _ = field_file("params.n", fmt)
    assert _rows(check(text)) == []


@SETTINGS
@given(digits=st.text(alphabet=string.digits, min_size=19, max_size=60), spaces=st.sampled_from(["", " ", "  "]))
@example(digits="99999999999999999999", spaces="")  # the issue's: silently 0 before
def test_an_index_in_a_string_too_large_for_64_bits_is_E101(digits, spaces):
    prefix = '    sh "echo {t[' + spaces
    text = HEAD + 'task t { sh "echo 1" }\ntask u {\n' + prefix + digits + spaces + ']}"\n}\n'
    inside = _rows(check(text))
    assert inside == [(7, len(prefix) + 1, "E101")]
    # the same error as outside a string
    outside = HEAD + 'task t { sh "echo 1" }\ntask u {\n    sh "x"\n    with { v = t[' + digits + "] }\n}\n"
    assert [code for *_, code in _rows(check(outside))] == ["E101"]


@SETTINGS
@given(number=st.integers(0, 10**18 - 1))
def test_an_index_up_to_18_digits_is_kept(number):
    text = HEAD + 'task t { sh "echo 1" }\ntask u {\n    sh "echo {t[' + str(number) + ']}"\n}\n'
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.flow"
        path.write_text(text)
        loaded = flowdsl.check(str(path))
    assert _rows(loaded.diagnostics) == []
    task = next(t for t in loaded.program.tasks if t.name == "u")
    (field,) = [p for p in task.action.command.parts if not isinstance(p, str)]
    assert field.ref.path == (number,)


@SETTINGS
@given(before=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='\0"\\{}\n\r'),
                      max_size=20),
       after=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\{}\n\r'),
                     max_size=20),
       where=st.sampled_from(["sh", "triple", "key", "exec", "include", "description"]))
def test_a_nul_in_any_string_is_E002_at_the_nul(before, after, where):
    body = before + "\0" + after
    if where == "sh":
        text, line, col = 'task a {\n    sh "' + body + '"\n}\n', 2, 9
    elif where == "triple":
        text, line, col = 'task a {\n    sh """\n        ' + body + '\n        """\n}\n', 3, 9
    elif where == "key":
        text, line, col = 'task a {\n    sh "x"\n    with { "' + body + '" = 1 }\n}\n', 3, 13
    elif where == "exec":
        text, line, col = 'task a {\n    exec ["echo", "' + body + '"]\n}\n', 2, 20
    elif where == "include":
        text, line, col = 'include "' + body + '"\ntask a { sh "x" }\n', 1, 10
    else:
        text, line, col = 'task a {\n    sh "x"\n    description "' + body + '"\n}\n', 3, 18
    rows = _rows(check(text))
    assert (line, col + len(before), "E002") in rows
    assert [r for r in rows if r[2] == "E002"] == [(line, col + len(before), "E002")]
    assert all(code in ("E002", "E008", "E302", "E011", "E012") for *_, code in rows), rows
