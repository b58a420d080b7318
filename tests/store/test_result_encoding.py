"""How results are stored (flowdsl.store.codec): JSON where JSON gives the value back exactly, msgpack
for the rest, and a result passed whole as its bytes.

Generated values of every type section 5 of the language reference allows,
nested, cover the choice: each comes back equal *and of the same types*
(a tuple stays a tuple, an int key an int, True never becomes 1), and the
fingerprint text of a value passed whole as its bytes is the text of the
value itself, so that runs written before results were stored as JSON keep
their successes.
"""

import datetime
import decimal
import json
import math
import pathlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdsl.store import checkpoint, codec

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x2FFF), max_size=6),
    st.binary(max_size=8), st.datetimes(), st.dates(), st.times(), st.timedeltas(),
    st.decimals(allow_nan=False), st.uuids(), st.builds(pathlib.Path, st.text(min_size=1, max_size=8)),
)
KEYS = st.one_of(st.text(max_size=6), st.integers(-5, 5), st.booleans(), st.none())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4), st.dictionaries(KEYS, inner, max_size=3),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=4)), max_size=3).map(set)),
    max_leaves=12)


def same(a, b) -> bool:
    """Equal, and of the same types all the way down (NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(map(type, a)) == list(map(type, b)) and a.keys() == b.keys() and \
            all(same(a[k], b[k]) for k in a)
    return a == b


def _texts(value):
    """Every character of every str in a value (keys included)."""
    if isinstance(value, str):
        yield from value
    elif isinstance(value, (list, tuple, set)):
        for v in value:
            yield from _texts(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _texts(k)
            yield from _texts(v)


def fingerprint(kwargs) -> str:
    fp = checkpoint.Fingerprints.__new__(checkpoint.Fingerprints)
    fp.static, fp.definitions = {"t": "d0.s0"}, {}
    return fp.of("t", "run", "", (), {}, kwargs)


@settings(max_examples=600, deadline=None)
@given(VALUES)
def test_every_value_comes_back_of_the_same_types(value):
    try:
        data = codec.encode_result(value, "msgpack")
    except codec.ResultTypeError:  # a lone surrogate in a text: neither JSON nor msgpack carries it
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in _texts(value))
        return
    assert data[:1] in (b"J", b"M")
    if data[:1] == b"J":
        assert codec.json_exact(value)
    assert same(codec.decode_result(data, allow_pickle=False), value)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_a_value_passed_as_its_bytes_has_the_fingerprint_of_the_value(value):
    try:
        data = codec.encode_result(value, "msgpack")
    except codec.ResultTypeError:
        return
    decoded = codec.decode_result(data, allow_pickle=False)  # what the runner passed before: the value
    plain = fingerprint({"x": decoded, "both": [decoded, 1], "m": {"k": decoded}})
    stored = fingerprint({"x": codec.Stored(data), "both": codec.Built([codec.Stored(data), 1]),
                          "m": codec.Built({"k": codec.Stored(data)})})
    assert plain == stored
    old = b"M" + codec.pack(value)  # as results were stored before JSON
    assert fingerprint({"x": codec.Stored(old), "both": codec.Built([codec.Stored(old), 1]),
                        "m": codec.Built({"k": codec.Stored(old)})}) == plain


@pytest.mark.parametrize("value, tag", [
    ({"rows": [1, 2.5, "x", None, True]}, b"J"), ([], b"J"), ("é ☃", b"J"), (2**80, b"J"),
    ((1, 2), b"M"), ([1, (2,)], b"M"), ({1: "a"}, b"M"), ({True: 1}, b"M"), ({None: 1}, b"M"),
    ([float("nan")], b"M"), ([float("inf")], b"M"), ([decimal.Decimal("1.5")], b"M"),
    ([datetime.date(2026, 1, 1)], b"M"), ({"a": {3}}, b"M"), (uuid.UUID(int=1), b"M"), (b"raw", b"M"),
    ([[[[[]]]]], b"J"),
])
def test_json_only_where_it_gives_the_value_back(value, tag):
    data = codec.encode_result(value, "msgpack")
    assert data[:1] == tag
    assert same(codec.decode_result(data, allow_pickle=False), value)


def test_a_lone_surrogate_is_refused_as_before():
    with pytest.raises(codec.ResultTypeError):
        codec.encode_result(["\ud800"], "msgpack")


def test_subclasses_and_deep_values_go_to_msgpack():
    class Text(str):
        pass

    assert codec.encode_result([Text("a")], "msgpack")[:1] == b"M"
    deep = []
    for _ in range(300):
        deep = [deep]
    assert not codec.json_exact(deep)
    cyclic = []
    cyclic.append(cyclic)
    assert not codec.json_exact(cyclic)
    with pytest.raises(codec.ResultTypeError):
        codec.encode_result(cyclic, "msgpack")


def test_json_results_are_compact_utf8():
    data = codec.encode_result({"name": "Zoë", "n": [1, 2]}, "msgpack")
    assert data == b'J{"name":"Zo\xc3\xab","n":[1,2]}'
    assert json.loads(data[1:]) == {"name": "Zoë", "n": [1, 2]}


def test_materialize_decodes_only_what_was_passed_whole():
    data = codec.encode_result({"a": [1, 2]}, "msgpack")
    passed = codec.Built({"x": codec.Stored(data), "y": [codec.Stored(data)]})
    out = codec.materialize(passed, allow_pickle=False)
    assert out["x"] == {"a": [1, 2]}
    assert isinstance(out["y"][0], codec.Stored)  # inside a plain list: user data, never looked into
    with pytest.raises(ValueError, match="pickled result"):
        codec.materialize(codec.Stored(codec.encode_result(1, "pickle")), allow_pickle=False)
    with pytest.raises(ValueError, match="cannot be read"):
        codec.materialize(codec.Stored(b"J{not json"), allow_pickle=False)


def test_a_stored_result_crosses_to_dask_workers_in_msgpack():
    data = codec.encode_result([{"id": 1}], "msgpack")
    arguments = codec.encode_result([[], {"rows": codec.Stored(data), "both": codec.Built([codec.Stored(data), 2])}],
                                    "msgpack")
    assert arguments[:1] == b"M"
    args, kwargs = codec.decode_result(arguments, allow_pickle=False)
    assert kwargs == {"rows": [{"id": 1}], "both": [[{"id": 1}], 2]}


@pytest.mark.parametrize("damage", ["stored in stored", "tuple in tuple", "json arrays", "msgpack arrays"])
def test_a_result_nested_without_end_is_refused_not_a_crash(damage):
    """A journal's result is data someone may have written by hand: nesting thousands deep is a ValueError
    (the report says the result is unreadable; a task passed it fails), never a stack overflow of the C
    unpacker (a segfault) or a RecursionError."""
    import msgpack

    if damage == "stored in stored":
        data = b"M" + msgpack.packb(1)
        for _ in range(3000):
            data = b"M" + msgpack.packb(msgpack.ExtType(11, data))
    elif damage == "tuple in tuple":
        inner = msgpack.packb([])
        for _ in range(3000):
            inner = msgpack.packb(msgpack.ExtType(8, inner))
        data = b"M" + inner
    elif damage == "json arrays":
        data = b"J" + b"[" * 100_000 + b"]" * 100_000
    else:
        data = b"M" + b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(ValueError):
        codec.decode_result(data, allow_pickle=False)
    with pytest.raises(ValueError):
        codec.materialize(codec.Stored(data), allow_pickle=False)


def test_what_encodes_decodes_and_deeper_is_refused_when_encoding():
    value = ()
    for _ in range(codec._EXT_DEPTH - 1):
        value = (value,)
    assert codec.decode_result(codec.encode_result(value, "msgpack"), allow_pickle=False) == value
    with pytest.raises(codec.ResultTypeError, match="more than"):
        codec.encode_result((value,), "msgpack")


def test_the_reports_view_of_a_result_nested_without_end_is_refused_too():
    """The report reads results through the same decoder: a ValueError (shown as an unreadable result)."""
    with pytest.raises(ValueError):
        codec.result_json(b"J" + b"[" * 100_000 + b"]" * 100_000, allow_pickle=False)
    assert codec.result_json(codec.encode_result({"a": [1, (2, 3)]}, "msgpack"), False) == {"a": [1, [2, 3]]}
