"""Results as bytes (flowdsl.store.codec): the extension types, and what importing the codec costs."""

import datetime
import decimal
import pathlib
import subprocess
import sys
import textwrap
import uuid

import pytest

from flowdsl.store import codec


@pytest.mark.parametrize("value", [
    decimal.Decimal("1.50"), uuid.UUID(int=7), pathlib.Path("/x/y"), (1, 2), {3}, 2**70,
    datetime.datetime(2026, 3, 29, 2, 30, tzinfo=datetime.timezone.utc), datetime.timedelta(days=1, seconds=2),
    {"nested": [decimal.Decimal("-0"), pathlib.PurePosixPath("a/b"), uuid.UUID(int=0)]},
])
def test_extension_types_come_back_equal(value):
    assert codec.decode_result(codec.encode_result(value, "msgpack"), allow_pickle=False) == value


def test_the_codec_imports_decimal_pathlib_and_uuid_only_to_decode_them(pyz):
    probe = textwrap.dedent("""
        import sys
        from flowdsl.store import codec
        lazy = ("decimal", "pathlib", "uuid")
        before = [m for m in lazy if m in sys.modules]
        data = codec.encode_result({"n": 1, "t": (1, 2)}, "msgpack")
        assert codec.decode_result(data, False) == {"n": 1, "t": (1, 2)}
        plain = [m for m in lazy if m in sys.modules]
        import uuid
        data = codec.encode_result(uuid.UUID(int=5), "msgpack")
        del sys.modules["uuid"]
        back = codec.decode_result(data, False)
        print(before, plain, type(back).__name__, back.int)
    """)
    # from the zipapp, without site (whose .pth finders may import pathlib themselves)
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(pyz)!r})\n" + probe],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "[]", "UUID", "5"]
