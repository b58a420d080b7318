"""The journal's packer (flowdsl.store.packing): msgpack's own bytes, for every value a journal may hold."""

import math

import msgpack
import msgpack.fallback
from hypothesis import given, settings
from hypothesis import strategies as st

from flowdsl.store import packing

SCALARS = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False), st.just(math.inf), st.text(), st.binary(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, -1, -32, -33, -128, -129, -32768,
                     -32769, -(2**31), -(2**31) - 1, -(2**63)]),
    st.sampled_from(["x" * 31, "x" * 32, "é" * 16, "x" * 255, "x" * 256, "x" * 65536]),
    st.sampled_from([b"y" * 255, b"y" * 256, b"y" * 65536]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=20), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.one_of(st.text(max_size=40), st.integers(-5, 5)), inner, max_size=20)), max_leaves=40)


@settings(max_examples=500, deadline=None)
@given(VALUES)
def test_the_same_bytes_as_msgpack(value):
    expected = msgpack.fallback.Packer(use_bin_type=True).pack(value)
    assert packing.Packer().pack(value) == expected
    assert msgpack.Packer(use_bin_type=True).pack(value) == expected  # the C packer, where it is installed


def test_records_and_what_it_does_not_write_itself():
    class Text(str):
        pass

    record = {"e": "end", "task": "t[3]", "n": 2, "t": 1764820000.25, "status": "failed", "result": b"M\xc0",
              "error": {"type": "OSError", "message": "x" * 300, "traceback": ""}, "cpu": None,
              "sub": Text("a str subclass"), "ext": msgpack.ExtType(5, b"\x01"), "big": 2**64 - 1,
              "list": list(range(20)), "many": {str(i): i for i in range(20)}}
    data = packing.Packer().pack(record)
    assert data == msgpack.fallback.Packer(use_bin_type=True).pack(record)
    assert msgpack.unpackb(data, raw=False)["big"] == 2**64 - 1


def test_too_large_an_integer_is_msgpack_s_own_error():
    try:
        msgpack.fallback.Packer(use_bin_type=True).pack(2**64)
    except Exception as e:  # noqa: BLE001 (whatever msgpack raises, ours must raise the same)
        expected = type(e)
    try:
        packing.Packer().pack({"n": 2**64})
    except Exception as e:  # noqa: BLE001
        assert type(e) is expected
    else:
        raise AssertionError("packed an integer msgpack cannot hold")
