"""msgpack for journal records, fast without msgpack's C extension.

The zipapp carries msgpack's pure-Python fallback, whose general packer cost
a 10,000-task run about a third of a second for its 20,000 records. This one
writes the same bytes as `msgpack.Packer(use_bin_type=True)` for the types a
journal holds (None, bool, int, float, str, bytes, lists, tuples and dicts
of them) with one dispatch on the exact type per value; anything else goes
to msgpack's own packer. Where msgpack's C extension is installed, it is
used instead (`packer()`). tests/store/test_packing.py holds the two to the
same bytes.
"""

from __future__ import annotations

import struct

import msgpack

TYPE_CHECKING = False  # typing's, without importing typing at run time
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

_B, _H, _I, _Q = struct.Struct(">B"), struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
_b, _h, _i, _q = struct.Struct(">b"), struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_D = struct.Struct(">d")
_FIX = [bytes([n]) for n in range(256)]  # one-byte values: fixints, and the fix forms' headers
_FIXSTR = _FIX[0xA0:0xC0]
_FIXINT = _FIX[:0x80]


def _head(n: int, fix: int, fix_max: int, c8: Optional[bytes], c16: bytes, c32: bytes) -> Optional[bytes]:
    """The header of a string, binary, array or map of length n (None past 32 bits: msgpack says why)."""
    if n <= fix_max:
        return _FIX[fix | n]
    if c8 is not None and n <= 0xFF:
        return c8 + _B.pack(n)
    if n <= 0xFFFF:
        return c16 + _H.pack(n)
    if n <= 0xFFFFFFFF:
        return c32 + _I.pack(n)
    return None


def packer() -> Callable[[Any], bytes]:
    """A `pack(obj) -> bytes` for journal records: msgpack's C packer if it is there, else this module's."""
    if msgpack.Packer is not getattr(getattr(msgpack, "fallback", None), "Packer", None):
        pack: Callable[[Any], bytes] = msgpack.Packer(use_bin_type=True).pack
        return pack
    return Packer().pack


class Packer:
    def __init__(self) -> None:
        self.other = msgpack.Packer(use_bin_type=True)  # for types this module does not write itself
        self.by_type: Dict[type, Callable[[Any, List[bytes]], None]] = {
            type(None): self._none, bool: self._bool, int: self._int, float: self._float,
            str: self._str, bytes: self._bytes, list: self._list, tuple: self._list, dict: self._dict}

    def pack(self, obj: Any) -> bytes:
        out: List[bytes] = []
        self._pack(obj, out)
        return b"".join(out)

    def _pack(self, obj: Any, out: List[bytes]) -> None:
        write = self.by_type.get(type(obj))
        if write is None:
            out.append(self.other.pack(obj))  # subclasses, bytearray, ExtType...: msgpack decides
        else:
            write(obj, out)

    def _none(self, obj: None, out: List[bytes]) -> None:
        out.append(b"\xc0")

    def _bool(self, obj: bool, out: List[bytes]) -> None:
        out.append(b"\xc3" if obj else b"\xc2")

    def _int(self, n: int, out: List[bytes]) -> None:
        if 0 <= n < 0x80:
            out.append(_FIXINT[n])
        elif -0x20 <= n < 0:
            out.append(_b.pack(n))
        elif 0x80 <= n <= 0xFF:
            out.append(b"\xcc" + _B.pack(n))
        elif -0x80 <= n < 0:
            out.append(b"\xd0" + _b.pack(n))
        elif 0xFF < n <= 0xFFFF:
            out.append(b"\xcd" + _H.pack(n))
        elif -0x8000 <= n < -0x80:
            out.append(b"\xd1" + _h.pack(n))
        elif 0xFFFF < n <= 0xFFFFFFFF:
            out.append(b"\xce" + _I.pack(n))
        elif -0x80000000 <= n < -0x8000:
            out.append(b"\xd2" + _i.pack(n))
        elif 0xFFFFFFFF < n <= 0xFFFFFFFFFFFFFFFF:
            out.append(b"\xcf" + _Q.pack(n))
        elif -0x8000000000000000 <= n < -0x80000000:
            out.append(b"\xd3" + _q.pack(n))
        else:
            out.append(self.other.pack(n))  # msgpack's own error for an integer it cannot hold

    def _float(self, x: float, out: List[bytes]) -> None:
        out.append(b"\xcb" + _D.pack(x))

    def _str(self, s: str, out: List[bytes]) -> None:
        data = s.encode("utf-8")
        head = _head(len(data), 0xA0, 0x1F, b"\xd9", b"\xda", b"\xdb")
        out.extend((head, data) if head else (self.other.pack(s),))

    def _bytes(self, data: bytes, out: List[bytes]) -> None:
        head = _head(len(data), 0, -1, b"\xc4", b"\xc5", b"\xc6")
        out.extend((head, data) if head else (self.other.pack(data),))

    def _list(self, items: Sequence[Any], out: List[bytes]) -> None:
        head = _head(len(items), 0x90, 0x0F, None, b"\xdc", b"\xdd")
        if head is None:
            out.append(self.other.pack(items))
            return
        out.append(head)
        pack = self._pack
        for item in items:
            pack(item, out)

    def _dict(self, d: Dict[Any, Any], out: List[bytes]) -> None:
        head = _head(len(d), 0x80, 0x0F, None, b"\xde", b"\xdf")
        if head is None:
            out.append(self.other.pack(d))
            return
        out.append(head)
        pack, append = self._pack, out.append
        for key, value in d.items():
            if type(key) is str and len(key) <= 0x1F and key.isascii():  # a record's field names
                append(_FIXSTR[len(key)])
                append(key.encode())
            else:
                pack(key, out)
            kind = type(value)
            if kind is str:
                data = value.encode("utf-8")
                if len(data) <= 0x1F:
                    append(_FIXSTR[len(data)])
                    append(data)
                    continue
            elif kind is int and 0 <= value < 0x80:
                append(_FIXINT[value])
                continue
            elif kind is float:
                append(b"\xcb" + _D.pack(value))
                continue
            pack(value, out)
