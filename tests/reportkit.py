"""Helpers for the tests of `flow report`: pipelines to report on, the page's embedded data, PNG pixels.

The demo pipeline has what a report must show: a task that fails twice and
then succeeds (three attempts, two waits), a foreach, a task that fails for
good with the branch after it skipped, a `when always` task, a secret, and
tasks that burn a known amount of CPU (in Python and in a shell command's child).
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, List, Tuple

from runkit import write_project

SECRET = "hunter2-secret-value"

DEMO_FLOW = """\
pipeline demo {
    params { items = [1, 2, 3]  token = secret("DEMO_TOKEN") }
}
task start   { sh "echo token is {params.token}" }
task flaky   { run tasks:flaky retry 3 delay 300ms after start }
task fan     { foreach i in params.items run tasks:burn with { i = i } after start }
task shburn  { exec ["python3", "burn.py"] }
task sleeper { sh "sleep 0.3" }
task bad     { run tasks:boom after flaky }
task after_bad { sh "echo never" after bad }
task cleanup { sh "echo cleaning; sleep 0.5" when always after bad }
task total   { sh "echo {fan}" after flaky }
"""

DEMO_TASKS = """\
import os
import time

def flaky():
    n = int(open("tries").read()) if os.path.exists("tries") else 0
    open("tries", "w").write(str(n + 1))
    print(f"flaky attempt {n + 1}")
    if n < 2:
        raise ConnectionError(f"no answer on try {n + 1}")
    return n

def burn(i):
    t = time.process_time()
    while time.process_time() - t < 0.25:
        pass
    return i * 2

def boom():
    print("about to fail")
    raise ValueError("broken for good")
"""


BURN = """\
import time
t = time.process_time()
while time.process_time() - t < 0.3:
    pass
"""


def demo_project(flow, folder: Path) -> Tuple[Path, str]:
    """Run the demo pipeline in `folder`; (its .flow file, the run id). The run fails (exit 1)."""
    flow_file = write_project(folder, DEMO_FLOW, {"tasks.py": DEMO_TASKS, "burn.py": BURN})
    proc = flow("run", flow_file, "--json", cwd=folder, env={"DEMO_TOKEN": SECRET})
    assert proc.returncode == 1, proc.stderr
    return flow_file, json.loads(proc.stdout)["run_id"]


def layered_flow(stages: int, width: int) -> str:
    """`stages` × `width` tasks, each after its namesake in the stage before; the very last one fails."""
    lines = ["pipeline big { concurrency 2 }"]
    for s in range(stages):
        for w in range(width):
            action = "tasks:boom" if (s, w) == (stages - 1, width - 1) else "tasks:noop"
            after = f" after s{s - 1}_{w}" if s else ""
            lines.append(f"task s{s}_{w} {{ run {action}{after} }}")
    lines.append(f"task tail {{ sh \"echo no\" after s{stages - 1}_{width - 1} }}")
    return "\n".join(lines) + "\n"


BIG_TASKS = "def noop():\n    return 1\n\ndef boom():\n    raise RuntimeError('last one fails')\n"


def page_data(path: Path) -> Dict[str, Any]:
    """The JSON the page carries."""
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="flow-data">(.*?)</script>', text, re.S)
    assert m, "the page holds no data"
    return json.loads(m.group(1))


def rows(data: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {r["key"]: r for r in data["rows"]}


def png_pixels(png: bytes) -> Tuple[int, int, List[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG such as Chromium's screenshots."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    out: List[bytes] = []
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out.append(bytes(line))
        prev = line
    return width, height, [bytes(r) if bpp == 3 else bytes(v for j, v in enumerate(r) if j % 4 != 3) for r in out]


def colours(png: bytes) -> Dict[Tuple[int, int, int], int]:
    """How many pixels of each colour the image holds."""
    _, _, lines = png_pixels(png)
    counts: Dict[Tuple[int, int, int], int] = {}
    for line in lines:
        for x in range(0, len(line), 3):
            key = (line[x], line[x + 1], line[x + 2])
            counts[key] = counts.get(key, 0) + 1
    return counts


def hex_rgb(value: str) -> Tuple[int, int, int]:
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)
