"""Results as bytes: JSON or msgpack with extension types, or pickle when opted in.

A task's result crosses from the worker to the runner, into the journal and
into downstream tasks as bytes made here, tagged by their first byte. With
`results msgpack` (the default) only plain data is allowed (the types of the
language reference's section 5), and decoding never runs code:

    J  JSON text (UTF-8), for a value JSON gives back exactly (lists, maps
       with string keys, strings, numbers, booleans, null): the standard
       library's json is C on every Python, while the zipapp carries only
       msgpack's pure-Python unpacker (9 MB of rows: 0.11 s against 1.1 s)
    M  msgpack with the extension types below, for everything else plain
    P  pickle, with `results pickle` (anything)

A result a task passes whole to another travels as its bytes (`Stored`) and
is decoded where it is used, in the worker (`materialize`): the runner
decodes only what an expression looks inside.
"""

from __future__ import annotations

import _thread
import datetime as dt
import json
import sys
import zlib
from itertools import chain
from typing import Any, Optional, Tuple, Type

import msgpack

# Extension type codes: part of the journal format, never renumber.
_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _PATH, _TUPLE, _SET, _BIGINT = range(1, 11)
_STORED = 11  # a Stored result inside a Dask attempt's arguments (never in a journal)


class ResultTypeError(TypeError):
    """A result that `results msgpack` cannot carry."""


def _is(obj: Any, module: str, name: str) -> bool:
    """isinstance(obj, module.name), without importing the module: none of its objects exist before it is.

    decimal, pathlib and uuid (with platform and urllib) cost `flow tick` and
    every run a few ms to import, for types few results have.
    """
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, getattr(loaded, name))


def _default(obj: Any) -> Any:
    # Exact types first (strict_types=True sends subclasses and tuples here).
    kind = type(obj)
    if kind is Stored:
        return msgpack.ExtType(_STORED, obj.data)
    if kind is Built:
        return obj.value
    if isinstance(obj, (tuple, set, frozenset)):
        depth = getattr(_nesting, "depth", 0)
        if depth >= _EXT_DEPTH:
            raise ResultTypeError(f"the result nests tuples or sets more than {_EXT_DEPTH} deep")
        _nesting.depth = depth + 1
        try:
            return msgpack.ExtType(_TUPLE if isinstance(obj, tuple) else _SET, pack(list(obj)))
        finally:
            _nesting.depth = depth
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(_TIMEDELTA, pack([obj.days, obj.seconds, obj.microseconds]))
    if _is(obj, "decimal", "Decimal"):
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    if _is(obj, "uuid", "UUID"):
        return msgpack.ExtType(_UUID, obj.bytes)
    if _is(obj, "pathlib", "PurePath"):
        return msgpack.ExtType(_PATH, str(obj).encode())
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        if -(2**63) <= obj < 2**64:
            return int(obj)  # an IntEnum or other int subclass
        return msgpack.ExtType(_BIGINT, str(int(obj)).encode())
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    raise ResultTypeError(
        f"a result of type {kind.__module__}.{kind.__qualname__} cannot be checkpointed: "
        "return plain data (None, bool, int, float, str, bytes, list, tuple, dict, set, datetime, date, "
        "time, timedelta, Decimal, UUID, Path), write it to a file and return the path, "
        "or set `results pickle` in the pipeline")


_EXT_DEPTH = 100  # extension values inside extension values (tuples in tuples...): deeper is refused when
_nesting = _thread._local()  # encoding and damage when decoding (the C unpacker would overflow its stack through
# the hook, the pure-Python one Python's); counted per thread


def _ext_hook(code: int, data: bytes) -> Any:
    depth = getattr(_nesting, "depth", 0)
    if depth >= _EXT_DEPTH:
        raise ValueError(f"values nested more than {_EXT_DEPTH} deep in extension types")
    _nesting.depth = depth + 1
    try:
        return _ext_value(code, data)
    finally:
        _nesting.depth = depth


def _ext_value(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(unpack(data))
    if code == _SET:
        return set(unpack(data))
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, micros = unpack(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _DECIMAL:
        import decimal

        return decimal.Decimal(data.decode())
    if code == _UUID:
        import uuid

        return uuid.UUID(bytes=data)
    if code == _PATH:
        import pathlib

        return pathlib.Path(data.decode())
    if code == _BIGINT:
        return int(data.decode())
    if code == _STORED:
        return decode_result(data, allow_pickle=False)
    return msgpack.ExtType(code, data)


def pack(value: Any) -> bytes:
    """msgpack bytes; raises ResultTypeError for a value it cannot carry."""
    try:
        return msgpack.packb(  # type: ignore[no-any-return]  # msgpack is untyped
            value, default=_default, use_bin_type=True, strict_types=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, ResultTypeError):
            raise
        raise ResultTypeError(f"the result cannot be checkpointed: {e}") from None


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))
_JSON_KINDS = _JSON_SCALARS | {list, dict}
_JSON_DEPTH = 200  # deeper values go to msgpack (json's C encoder recurses)
_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"))
_PARSE = json.JSONDecoder().decode


def json_exact(value: Any) -> bool:
    """True if JSON gives `value` back equal and of the same types: only lists, maps with `str` keys and the
    scalars JSON has, of exactly those types (no tuples, no subclasses), at most _JSON_DEPTH deep.

    Level by level, with the type checks in C (`map(type, ...)`): a list of
    200,000 rows costs a few passes over it, not a Python call per value.
    """
    level = [value]
    for _ in range(_JSON_DEPTH):
        kinds = set(map(type, level))
        if not kinds <= _JSON_KINDS:
            return False
        if not kinds & {list, dict}:
            return True
        if len(kinds) == 1:  # rows: all maps (or all lists), taken as they are
            lists, dicts = (level, []) if list in kinds else ([], level)
        else:
            lists = [x for x in level if type(x) is list] if list in kinds else []
            dicts = [x for x in level if type(x) is dict] if dict in kinds else []
        if dicts and set(map(type, chain.from_iterable(dicts))) - {str}:
            return False
        level = list(chain(chain.from_iterable(lists), chain.from_iterable(map(dict.values, dicts))))
    return not level


def encode_result(value: Any, mode: str) -> bytes:
    """A result as bytes for the journal; `mode` is the pipeline's `results`."""
    if mode == "pickle":
        import pickle

        return b"P" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    if json_exact(value):
        try:  # NaN and infinities (JSON has none), ints too long for str(), lone surrogates: msgpack says
            return b"J" + _JSON.encode(value).encode("utf-8")
        except (ValueError, RecursionError):
            pass
    return b"M" + pack(value)


def decode_result(data: bytes, allow_pickle: bool) -> Any:
    """The result back; pickled data is refused unless the pipeline chose pickle."""
    return _decoded(data, allow_pickle)


def _decoded(data: bytes, allow_pickle: bool) -> Any:
    tag, body = data[:1], data[1:]
    try:
        if tag == b"J":
            return _PARSE(body.decode("utf-8"))
        if tag == b"M":
            return unpack(body)
    except RecursionError:
        raise ValueError("the result is nested too deeply to read") from None
    if tag == b"P":
        if not allow_pickle:
            raise ValueError("this checkpoint holds a pickled result, but the pipeline does not say `results pickle`")
        import pickle

        return pickle.loads(body)
    raise ValueError(f"unknown result encoding {tag!r}")


def checksum(data: Optional[bytes]) -> Optional[int]:
    """What a journal keeps beside a result, to tell its bytes are those written (crc32: C, 1 GB/s); None for
    no result."""
    return None if data is None else zlib.crc32(data)


def intact(data: Optional[bytes], crc: Optional[int]) -> bool:
    """A result's bytes are those written, as far as the checksum kept beside them says (None: none kept)."""
    return crc is None or data is None or zlib.crc32(data) == crc


def result_json(data: bytes, allow_pickle: bool) -> Any:
    """A stored result as the report shows it: JSON text as it parses, anything else decoded and viewed."""
    value = _decoded(data, allow_pickle)  # one decoding, as decode_result's (a view is not a second one)
    return value if data[:1] == b"J" else to_json(value)


class Stored:
    """A result passed whole to a task: its bytes as stored, decoded by `materialize` where the task runs.

    `with { rows = extract }` hands the task `extract`'s result without the
    runner decoding it; an expression that looks inside (`extract.total`,
    `"${extract}"`, a condition) gets the value instead.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> Tuple[Type[Stored], Tuple[bytes]]:
        return Stored, (self.data,)

    def __repr__(self) -> str:
        return f"<stored result, {len(self.data)} bytes>"


class Built:
    """A list or map written in `with` that holds Stored results (`with { both = [a, b] }`)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> Tuple[Type[Built], Tuple[Any]]:
        return Built, (self.value,)


def materialize(value: Any, allow_pickle: bool) -> Any:
    """`value` with every Stored result in it decoded (only Built containers are looked into)."""
    kind = type(value)
    if kind is Stored:
        try:
            return decode_result(value.data, allow_pickle)
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise ValueError(f"a stored result cannot be read: {e}") from None
    if kind is Built:
        inner = value.value
        if type(inner) is dict:
            return {k: materialize(v, allow_pickle) for k, v in inner.items()}
        return [materialize(v, allow_pickle) for v in inner]
    return value


def deferred(value: Any) -> bool:
    return type(value) in (Stored, Built)


def to_json(value: Any) -> Any:
    """A JSON-ready view of a result for reports: repr (cut to 200) where JSON has no form."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if _is(value, "uuid", "UUID") or _is(value, "pathlib", "PurePath") or _is(value, "decimal", "Decimal"):
        return str(value)
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
