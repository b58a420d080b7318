"""Loading a checked program from the cache (store/ircache.py) against checking it afresh.

    python3 benchmarks/ircache_load.py [--tasks 10000] [--repeat 5] [--pyz dist/flow.pyz] [--only a,b]

Generates a pipeline of N tasks (genflow.py), checks it, and writes its cache
entry twice: as ircache.py writes it now (format 3, JSON) and as releases
before format 3 did (a pickle, read by their restricted unpickler). Each
measurement runs in a fresh interpreter that imports the IR first and times
the call and then the making of 20,000 small dicts, as a run goes on to do,
so that a collection a load put off is counted. The rounds interleave the
variants; printed are the medians (and best), against `check` and `pickle`:

    check            parsing and checking from scratch (what the cache saves)
    pickle           the old entry through the old unpickler, as it shipped (the collector on)
    pickle-nogc      the same with the collector off meanwhile
    json             ircache.load() from the checkout: read, check the stamps, decode
    json-pyz         the same from the zipapp (--pyz), where the loaded program is frozen out of
                     the collector's reach (the process is the `flow` command)
    body-json        the body alone: json.loads and the decoder (the collector off meanwhile)
    body-msgpack     the same body as msgpack, unpacked by msgpack's C extension, then the decoder
    body-msgpack-py  the same with MSGPACK_PUREPYTHON=1: msgpack's fallback, all the zipapp has
    body-marshal     the same body as marshal (for reference: marshal.loads is not safe on a planted file)
"""

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import genflow  # noqa: E402

OLD_LOADER = '''
import io, pickle
class IROnly(pickle.Unpickler):  # ircache.py's unpickler before format 3
    def find_class(self, module, name):
        if module in ("flowdsl.lang.ir", "flowdsl.lang.diagnostics"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(module)
def old_load(entry, targets):
    with open(entry, "rb") as f:
        e = IROnly(io.BytesIO(f.read())).load()
    assert e["targets"] == targets
    for dep, kind, stamp in e["deps"]:
        assert ircache._stamp(dep, kind) == (list(stamp) if kind == "py" else stamp)
    return Loaded(e["program"], list(e["warnings"]))
'''

SETUP = '''
import gc, sys, time
sys.path.insert(0, {path!r})
from flowdsl.lang import ir, diagnostics
from flowdsl.lang.loader import Loaded
from flowdsl.store import ircache
''' + OLD_LOADER

BODY = ("{setup}\ndata = open(ENTRY{ext}, 'rb').read()\ngc.disable()\nt = time.perf_counter()\n"
        "b = {loads}\nr = ircache._decode(b)\ndel b\ngc.enable()")
WORK = {
    "check": "from flowdsl.lang.check import check\nt = time.perf_counter()\nr = check(FLOW)",
    "pickle": "t = time.perf_counter()\nr = old_load(OLD, [])",
    "pickle-nogc": "gc.disable()\nt = time.perf_counter()\nr = old_load(OLD, [])\ngc.enable()",
    "json": "t = time.perf_counter()\nr = ircache.load(CACHE, FLOW, [])",
    "json-pyz": "t = time.perf_counter()\nr = ircache.load(CACHE, FLOW, [])",
    "body-json": BODY.format(setup="import json", ext="", loads="json.loads(data[data.index(b'\\n') + 1:].decode())"),
    "body-msgpack": BODY.format(setup="import msgpack", ext="+ '.msgpack'", loads="msgpack.unpackb(data)"),
    "body-msgpack-py": BODY.format(setup="import msgpack\nassert msgpack.Unpacker.__module__ == 'msgpack.fallback'",
                                   ext="+ '.msgpack'", loads="msgpack.unpackb(data)"),
    "body-marshal": BODY.format(setup="import marshal", ext="+ '.marshal'", loads="marshal.loads(data)"),
}
# what a run does next: make objects. A collection that a load put off (its collector off) is paid here.
AFTER = "\nafter = [{'n': i} for i in range(20000)]"


def measure(variant: str, consts: dict, pyz: str) -> float:
    path = pyz if variant == "json-pyz" else ROOT
    code = SETUP.format(path=path) + "".join(f"{k} = {v!r}\n" for k, v in consts.items())
    code += WORK[variant] + AFTER + "\nelapsed = time.perf_counter() - t\nassert r is not None\nprint(elapsed)\n"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("MSGPACK_PUREPYTHON", None)
    if variant == "body-msgpack-py":
        env["MSGPACK_PUREPYTHON"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{variant} failed:\n{proc.stderr}")
    return float(proc.stdout.split()[-1])


def prepare(folder: str, tasks: int) -> dict:
    """Write the pipeline and its entries (new, old, and the body as msgpack and marshal); their paths."""
    import marshal

    import msgpack

    from flowdsl.store import ircache

    flow = genflow.write_pipeline(folder, tasks)
    cache = ircache.folder(os.path.join(folder, ".flow"))
    loaded, keep = ircache.checked(flow, cache)
    keep(background=False)
    entry = ircache.entry_path(cache, flow)
    if ircache.load(cache, flow, []) is None:
        sys.exit("the new entry does not load")
    with open(entry, "rb") as f:
        data = f.read()
    header, body = (json.loads(line) for line in data.splitlines())
    with open(entry + ".msgpack", "wb") as f:
        f.write(msgpack.packb(body, use_bin_type=True))
    with open(entry + ".marshal", "wb") as f:
        f.write(marshal.dumps(body))
    old = os.path.join(folder, "old.pickle")
    deps = [(d, k, tuple(s) if k == "py" else s) for d, k, s in header[3]]
    with open(old, "wb") as f:
        pickle.dump({"targets": [], "deps": deps, "program": loaded.program, "warnings": loaded.diagnostics},
                    f, protocol=pickle.HIGHEST_PROTOCOL)
    sizes = {"flow file": flow, "json entry": entry, "old pickle": old,
             "msgpack body": entry + ".msgpack", "marshal body": entry + ".marshal"}
    print(f"{tasks} tasks; sizes: " + ", ".join(f"{k} {os.path.getsize(v) / 1e6:.1f} MB" for k, v in sizes.items()))
    return {"FLOW": flow, "CACHE": cache, "ENTRY": entry, "OLD": old}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "flow.pyz"))
    ap.add_argument("--only", default="", help="comma-separated variants (default: all)")
    args = ap.parse_args()
    variants = [v for v in WORK if not args.only or v in args.only.split(",")]
    if "json-pyz" in variants and not os.path.exists(args.pyz):
        print(f"({args.pyz} not built: json-pyz left out)")
        variants.remove("json-pyz")
    folder = tempfile.mkdtemp(prefix="flow-ircache-")
    try:
        consts = prepare(folder, args.tasks)
        times: dict = {v: [] for v in variants}
        for _ in range(args.repeat):  # interleaved: each round measures every variant once
            for v in variants:
                times[v].append(measure(v, consts, args.pyz))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    for v in variants:
        line = f"{v:16s} {med[v] * 1000:7.1f} ms  (min {min(times[v]) * 1000:7.1f})"
        if "check" in med and v != "check":
            line += f"  {med[v] / med['check']:5.2f} of check"
        if "pickle" in med and v not in ("check", "pickle"):
            line += f"  {med[v] / med['pickle']:5.2f}x pickle"
        print(line)


if __name__ == "__main__":
    main()
