"""Results as bytes: msgpack with extension types, or pickle when opted in.

A task's result crosses from the worker to the runner, into the journal and
into downstream tasks as bytes made here. With `results msgpack` (the
default) only plain data is allowed (the types of the language reference's
section 5), and decoding never runs code; `results pickle` takes anything.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import msgpack

# Extension type codes: part of the journal format, never renumber.
_DATETIME, _DATE, _TIME, _TIMEDELTA, _DECIMAL, _UUID, _PATH, _TUPLE, _SET, _BIGINT = range(1, 11)


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
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, pack(list(obj)))
    if isinstance(obj, (set, frozenset)):
        return msgpack.ExtType(_SET, pack(list(obj)))
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
    kind = type(obj)
    raise ResultTypeError(
        f"a result of type {kind.__module__}.{kind.__qualname__} cannot be checkpointed: "
        "return plain data (None, bool, int, float, str, bytes, list, tuple, dict, set, datetime, date, "
        "time, timedelta, Decimal, UUID, Path), write it to a file and return the path, "
        "or set `results pickle` in the pipeline")


def _ext_hook(code: int, data: bytes) -> Any:
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
    return msgpack.ExtType(code, data)


def pack(value: Any) -> bytes:
    """msgpack bytes; raises ResultTypeError for a value it cannot carry."""
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, ResultTypeError):
            raise
        raise ResultTypeError(f"the result cannot be checkpointed: {e}") from None


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, use_list=True)


def encode_result(value: Any, mode: str) -> bytes:
    """A result as bytes for the journal; `mode` is the pipeline's `results`."""
    if mode == "pickle":
        import pickle

        return b"P" + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return b"M" + pack(value)


def decode_result(data: bytes, allow_pickle: bool) -> Any:
    """The result back; pickled data is refused unless the pipeline chose pickle."""
    tag, body = data[:1], data[1:]
    if tag == b"M":
        return unpack(body)
    if tag == b"P":
        if not allow_pickle:
            raise ValueError("this checkpoint holds a pickled result, but the pipeline does not say `results pickle`")
        import pickle

        return pickle.loads(body)
    raise ValueError(f"unknown result encoding {tag!r}")


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
