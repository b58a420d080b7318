"""The zipapp (build_zipapp.py): its contents, reproducible bytes, and runs on bare interpreters.

The interpreters come from pyenv: Python 3.9 (the oldest we support), 3.11
and the newest that `pyenv versions` lists. A missing one fails the test:
CI runs on a machine that has them all. Each runs from a fresh venv without
pip, so the only packages it can import are the ones inside the pyz.
"""

import hashlib
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "orders" / "orders.flow"
sys.path.insert(0, str(ROOT))
from build_zipapp import DROPPED, SOURCE_ONLY  # noqa: E402
from build_zipapp import TREES as DEFAULT_TREES  # noqa: E402

TREES = ",".join(DEFAULT_TREES)

BUNDLED = ("lark", "croniter", "dateutil", "msgpack", "tabulate", "six", "tzdata")


# ---- interpreters ------------------------------------------------------------------


def pyenv_root() -> Path:
    if shutil.which("pyenv"):
        out = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.strip():
            return Path(out.stdout.strip())
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")


def pyenv_versions():
    """{(3, 9, 18): path of its python3.9} for every final CPython 3.x under pyenv."""
    found = {}
    for folder in (pyenv_root() / "versions").glob("3.*"):
        m = re.fullmatch(r"3\.(\d+)\.(\d+)", folder.name)
        exe = folder / "bin" / f"python3.{m.group(1)}" if m else None
        if exe and exe.exists():
            found[(3, int(m.group(1)), int(m.group(2)))] = exe
    return found


def interpreter(which: str) -> Path:
    """`which` is "3.9", "3.11" or "newest"; fails (never skips) when pyenv lacks it."""
    versions = pyenv_versions()
    if which == "newest":
        if not versions:
            pytest.fail(f"no CPython 3 under {pyenv_root()}/versions: the zipapp tests need pyenv's interpreters")
        return versions[max(versions)]
    minor = tuple(int(p) for p in which.split("."))
    matches = sorted(v for v in versions if v[:2] == minor)
    if not matches:
        pytest.fail(f"Python {which} is missing: expected {pyenv_root()}/versions/{which}.N/bin/python{which} "
                    f"(install it with `pyenv install {which}`); the zipapp must be tested on it")
    return versions[matches[-1]]


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory):
    """bare_python("3.9") -> the interpreter of a fresh venv without pip (made once per session)."""
    made = {}

    def make(which: str) -> Path:
        if which not in made:
            folder = tmp_path_factory.mktemp(f"venv-{which}")
            subprocess.run([str(interpreter(which)), "-m", "venv", "--without-pip", str(folder)], check=True)
            made[which] = folder / "bin" / "python"
        return made[which]

    return make


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["NO_COLOR"] = "1"
    return env


def run_pyz(python, pyz, *args, flags=(), cwd=None):
    return subprocess.run([str(python), *flags, str(pyz), *map(str, args)], capture_output=True, text=True,
                          env=clean_env(), cwd=cwd, timeout=120)


# ---- contents ----------------------------------------------------------------------


def test_contents(pyz):
    with zipfile.ZipFile(pyz) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        main = zf.read("__main__.py").decode()
        tables = marshal.loads(zf.read("flowdsl/lang/_tables.marshal"))
        lark_init = zf.read("lark/__init__.py").decode()
    assert not [n for n in names if n.lower().endswith((".so", ".pyd", ".dll", ".dylib"))]
    assert not [n for n in names if ".dist-info/" in n or "__pycache__" in n]
    for needed in ("__main__.py", "flowdsl/cli/command.py", "flowdsl/grammar/flow.lark", "flowdsl/lang/_tables.py",
                   "msgpack/fallback.py", "six.py"):
        assert needed in names
    for package in BUNDLED:
        assert any(n.startswith(f"licenses/{package.replace('dateutil', 'python_dateutil')}-") for n in names), package
    assert names == sorted(names)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}

    # the tables were made by the lark that is bundled, so the parser uses them
    bundled = re.search(r"__version__(?:: str)? = ['\"]([^'\"]+)", lark_init).group(1)
    assert tables["lark"] == bundled

    # one bytecode tree per tag that __main__.py lists, each complete
    trees = json.loads(re.search(r"^PYC_TREES = (\{.*\})$", main, re.M).group(1))
    assert "cpython-39" in trees and f"cpython-3{sys.version_info[1]}" in trees
    sources = [n for n in names if n.endswith(".py") and n != "__main__.py" and not n.startswith("__pyc__/")]
    source_only = [s for s in sources if s.startswith(SOURCE_ONLY)]
    assert "lark/load_grammar.py" in source_only
    assert not [s for s in source_only if s.startswith(("msgpack/", "croniter/"))]
    assert sorted(s for s in source_only if s.startswith("flowdsl/")) == [  # only what slow verbs import
        "flowdsl/cli/init.py", "flowdsl/cli/report.py", "flowdsl/cli/reportdata.py", "flowdsl/cli/reportpage.py",
        "flowdsl/run/dask.py", "flowdsl/run/daskhost.py", "flowdsl/run/daskremote.py", "flowdsl/run/daskupload.py"]
    for tag in trees:
        tree = {n[len(f"__pyc__/{tag}/"):] for n in names if n.startswith(f"__pyc__/{tag}/")}
        assert not [n for n in tree if n.endswith(".py")]
        assert {"flowdsl/grammar/flow.lark", "flowdsl/lang/_tables.pyc", "lark/grammars/common.lark"} <= tree
        assert {s + "c" for s in sources if s not in source_only} == {n for n in tree if n.endswith(".pyc")}
        assert not [n for n in tree if n.endswith(("_tables.marshal", "_tzdata.marshal"))]  # one copy, at the root
        assert "flowdsl/lang/_regexes.marshal" in tree  # the lexer's patterns as this interpreter compiles them
        assert "flowdsl/lang/_records.marshal" in tree  # the IR records' __init__s, compiled by it

    # tzdata's zones as one entry (the only one of the tzdata package), and not dateutil's second copy of them
    assert not [n for n in names if n.startswith(("tzdata/", *DROPPED))]
    with zipfile.ZipFile(pyz) as zf:
        tzdata = marshal.loads(zf.read("flowdsl/lang/_tzdata.marshal"))
    assert len(tzdata["zones"]) > 500 and tzdata["files"][tzdata["zones"]["Australia/Lord_Howe"]].startswith(b"TZif")
    assert tzdata["files"][tzdata["zones"]["US/Eastern"]] == tzdata["files"][tzdata["zones"]["America/New_York"]]
    assert Path(pyz).stat().st_size <= 2_500_000, "the budget for the archive (README, benchmarks)"

    # what an interpreter without a tree compiles into its cache: the trees' modules, with their data
    with zipfile.ZipFile(pyz) as zf:
        manifest = json.loads(zf.read("__pyc__/cache.json"))
    for tag in trees:
        tree = {n[len(f"__pyc__/{tag}/"):] for n in names if n.startswith(f"__pyc__/{tag}/")}
        assert {m + "c" for m in manifest["modules"]} == {n for n in tree if n.endswith(".pyc")}
        assert set(manifest["data"]) - set(names) == set() and "flowdsl/lang/_tables.marshal" in manifest["data"]
        assert {n for n in tree if not n.endswith(".pyc")} == (
            {d for d in manifest["data"] if not d.endswith(("_tables.marshal", "_fast.marshal", "_tzdata.marshal"))}
            | set(manifest["interpreter_data"].values()))


def build_inputs() -> str:
    """A digest of what a build reads from the checkout."""
    h = hashlib.sha256()
    for path in sorted([*ROOT.glob("flowdsl/**/*.py"), *ROOT.glob("zipbuild/*.py"), ROOT / "grammar" / "flow.lark",
                        ROOT / "build_zipapp.py", ROOT / "requirements" / "pyz.txt"]):
        h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# An interpreter that answers build_zipapp's probe but cannot compile anything.
BROKEN_PYTHON = """#!/bin/sh
case "$*" in
  *MAGIC_NUMBER*) echo "cpython cpython-319 00000000 3 19 0 final" ;;
  *) echo "SyntaxError: this interpreter compiles nothing" >&2; exit 1 ;;
esac
"""


def test_two_builds_give_the_same_bytes(tmp_path):
    """Slow: two full builds (about 10 s on 2 cores).

    The second build also finds a broken python3.19 on PATH: it must warn,
    skip that interpreter and still give the same bytes.
    """
    broken = tmp_path / "bin" / "python3.19"
    broken.parent.mkdir()
    broken.write_text(BROKEN_PYTHON)
    broken.chmod(0o755)
    for attempt in range(3):  # a source edited between the builds (a shared checkout) is not our bug
        before, digests, contents, logs = build_inputs(), [], [], []
        for n, path in ((1, os.environ["PATH"]), (2, f"{broken.parent}{os.pathsep}{os.environ['PATH']}")):
            out = tmp_path / f"try{attempt}" / f"b{n}" / "flow.pyz"
            done = subprocess.run([sys.executable, str(ROOT / "build_zipapp.py"), "--output", str(out),
                                   "--trees", f"{TREES},3.19"], cwd=ROOT,
                                  capture_output=True, text=True, env={**os.environ, "PATH": path})
            assert done.returncode == 0, done.stdout + done.stderr
            logs.append(done.stdout + done.stderr)
            digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
            with zipfile.ZipFile(out) as zf:
                contents.append({i.filename: i.CRC for i in zf.infolist()})
        if build_inputs() == before:
            break
    assert "skipping cpython-319" in logs[1] and "skipping" not in logs[0]
    differ = sorted(n for n in set(contents[0]) | set(contents[1]) if contents[0].get(n) != contents[1].get(n))
    assert differ == [] and digests[0] == digests[1]


# ---- running it --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["3.9", "newest"])
def test_runs_on_a_bare_interpreter(which, pyz, bare_python, tmp_path):
    python = bare_python(which)
    broken = tmp_path / "broken.flow"
    broken.write_text("task a {\n    run foo\n}\n")
    for flags in ((), ("-I",)):  # -I: no user site-packages, no PYTHON* variables
        ok = run_pyz(python, pyz, "validate", EXAMPLE, flags=flags, cwd=tmp_path)
        assert (ok.returncode, ok.stderr) == (0, "")
        assert "no problems" in ok.stdout

        bad = run_pyz(python, pyz, "validate", broken, flags=flags, cwd=tmp_path)
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert re.search(r"broken\.flow:2:\d+:.* E\d{3} ", bad.stdout + bad.stderr), bad.stdout + bad.stderr


@pytest.mark.parametrize("which", ["3.9", "newest"])
def test_ticks_on_a_bare_interpreter(which, pyz, bare_python, tmp_path):
    python = bare_python(which)
    f = tmp_path / "nightly.flow"
    f.write_text('pipeline nightly {\n    schedule cron "30 2 * * *" tz "Europe/Berlin"\n    catchup all\n}\n'
                 'task a { sh "echo {run.logical_date} {run.trigger} >> ran" }\n')
    out = run_pyz(python, pyz, "tick", tmp_path, "--now", "2026-03-29T01:00:30Z", "--wait", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    fired = json.loads(out.stdout)["fired"]
    assert [(x["logical_date"], x["status"]) for x in fired] == [("2026-03-29T03:00:00+02:00", "success")]
    assert (tmp_path / "ran").read_text().split() == ["2026-03-29T03:00:00+02:00", "schedule"]
    out = run_pyz(python, pyz, "schedule", f, "--now", "2026-10-24T12:00:00Z", "--next", "2", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)[0]["next"] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize("which", ["3.9", "newest"])
def test_time_zones_without_a_system_database(which, pyz, bare_python, tmp_path):
    """As on Alpine, distroless or slim containers: zoneinfo finds no system database, the bundled tzdata answers."""
    python = bare_python(which)
    hidden = {**clean_env(), "PYTHONTZPATH": str(tmp_path / "nonexistent")}
    probe = subprocess.run([str(python), "-c", "import zoneinfo; zoneinfo.ZoneInfo('Europe/Berlin')"],
                           capture_output=True, text=True, env=hidden)
    assert probe.returncode != 0 and "ZoneInfoNotFoundError" in probe.stderr, "the system database is not hidden"

    f = tmp_path / "zones.flow"
    f.write_text('pipeline zones {\n    schedule cron "30 2 * * *" tz "Europe/Berlin"\n'
                 '    schedule cron "45 1 * * *" tz "Australia/Lord_Howe"\n    catchup all\n}\n'
                 'task a { sh "true" }\n')
    bad = tmp_path / "bad" / "typo.flow"
    bad.parent.mkdir()
    bad.write_text('pipeline typo {\n    schedule cron "0 5 * * *" tz "Europe/Berln"\n}\ntask a { sh "true" }\n')

    def answers(env):
        def flow(*args):
            return subprocess.run([str(python), str(pyz), *map(str, args)], capture_output=True, text=True, env=env,
                                  cwd=tmp_path, timeout=120)
        valid = flow("validate", f)
        typo = flow("validate", bad)
        schedule = flow("schedule", f, "--now", "2026-03-28T12:00:00Z", "--next", "3", "--json")
        tick = flow("tick", f, "--now", "2026-10-25T00:30:30Z", "--dry-run", "--json")
        assert (valid.returncode, typo.returncode, schedule.returncode, tick.returncode) == (0, 1, 0, 0), \
            valid.stderr + typo.stderr + schedule.stderr + tick.stderr
        return valid.stdout, typo.stdout, json.loads(schedule.stdout), json.loads(tick.stdout)

    without, system = answers(hidden), answers(clean_env())
    assert without == system
    assert "E104 unknown time zone `Europe/Berln`" in without[1]
    nexts = [n for entry in without[2] for n in entry["next"]]
    assert "2026-03-29T03:00:00+02:00" in nexts  # Berlin's gap, read from the bundled database
    assert [x["logical_date"] for x in without[3]["fired"]] == ["2026-10-25T02:30:00+02:00"]  # the first of two 02:30s


# Parses with the archive's parser in-process: the lexer's patterns come from the tree's table, none is
# compiled, and the IR is the one the same parser builds with the patterns compiled as usual; the IR
# records' __init__s come compiled too.
FROZEN_PROBE = textwrap.dedent("""
    import json, sys
    pyz, flow_file = sys.argv[1:3]
    sys.path[:0] = [pyz + "/__pyc__/" + sys.implementation.cache_tag, pyz]
    try:
        import re._compiler as compiler
    except ImportError:
        import sre_compile as compiler
    from flowdsl.lang import parser
    lark_parser, _ = parser._parser()
    frozen = lark_parser.parser.lexer.root_lexer.re
    real, compiled = compiler.compile, []
    compiler.compile = lambda *a, **k: compiled.append(a[0]) or real(*a, **k)
    text = open(flow_file, encoding="utf-8").read()
    module, diagnostics = parser.parse(text, flow_file)
    compiled_before = len(compiled)
    from flowdsl.lang import frozen_re
    for lexer in frozen_re._lexers(lark_parser):  # the same parser, its patterns compiled as usual
        lexer.re = __import__("re")
        lexer._scanner = None
    again, _ = parser.parse(text, flow_file)
    from flowdsl.lang import records
    print(json.dumps({"kind": type(frozen).__name__, "frozen": frozen.frozen, "compiled_before": compiled_before == 0,
                      "same_ir": module == again, "diagnostics": len(diagnostics),
                      "records": len(records.SOURCES) >= 2 and all(records._precompiled(t) for t in records.SOURCES)}))
""")


@pytest.mark.parametrize("which", ["3.9", "3.11", "newest"])
def test_the_lexer_uses_patterns_compiled_at_build_time(which, pyz, bare_python, tmp_path):
    python = bare_python(which)
    out = subprocess.run([str(python), "-I", "-c", FROZEN_PROBE, str(pyz), str(EXAMPLE)], capture_output=True,
                         text=True, env=clean_env(), cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["kind"] == "FrozenRe" and report["frozen"] >= 10
    assert report["compiled_before"], "a pattern of the lexer was compiled at run time"
    assert report["same_ir"] and report["diagnostics"] == 0
    assert report["records"], "the records' __init__s were compiled at run time"


@pytest.mark.parametrize("which", ["3.9", "newest"])
def test_a_valid_file_is_checked_without_lark(which, pyz, bare_python, tmp_path):
    """The fast path parses a clean file; a syntax error still gets lark's exceptions and flow's message."""
    python = bare_python(which)
    good = run_pyz(python, pyz, "validate", EXAMPLE, flags=["-X", "importtime"], cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in good.stderr.splitlines() if line.startswith("import time")]
    assert "flowdsl.lang.lalr" in imported and "flowdsl.lang.builder" in imported
    assert not [m for m in imported if m == "lark" or m.startswith("lark.")], "validate imported lark"
    bad = tmp_path / "bad.flow"
    bad.write_text("task a {\n    run\n}\n")
    out = run_pyz(python, pyz, "validate", bad, flags=["-X", "importtime"], cwd=tmp_path)
    assert out.returncode == 1
    assert "bad.flow:3:1: error E001 unexpected `}`: `run` takes `module:function`" in out.stdout + out.stderr
    assert "lark.lark" in out.stderr  # the error path parsed it again with lark


# Runs the archive's own __main__.py in-process, then reports where modules came from.
PROBE = textwrap.dedent("""
    import json, runpy, sys
    pyz, flow_file, tag = sys.argv[1:4]
    sys.implementation.cache_tag = tag  # one the archive has no bytecode for: the sources are used
    sys.argv = [pyz, "validate", flow_file]
    try:
        runpy.run_path(pyz, run_name="__main__")
    except SystemExit as e:
        code = e.code
    sys.path.append(pyz)  # run_path took it off again; a bytecode tree that __main__.py added stays first
    build_modules = sorted(m for m in ("lark.load_grammar", "lark.parsers.earley", "lark.parsers.cyk")
                           if m in sys.modules)
    import msgpack, msgpack.fallback
    packed = msgpack.packb({"a": [1, 2.5, None, "x"]})
    # the bundled lark, whose grammar-building imports build_zipapp.py deferred, still builds grammars
    import lark
    lark.logger.setLevel(lark.logger.level)
    built = [lark.Lark('start: "a" NAME\\n%import common.CNAME -> NAME', parser=p).parse("ab").data
             for p in ("lalr", "earley")]
    print(json.dumps({
        "exit": code,
        "files": {m: getattr(sys.modules.get(m), "__file__", None)
                  for m in ("flowdsl.cli", "flowdsl.lang.parser", "flowdsl.lang._tables", "lark", "lark.lark",
                            "msgpack")},
        "croniter": "croniter" in sys.modules,
        "build_modules": build_modules,
        "lark_builds": built == ["start", "start"],
        "msgpack_fallback": msgpack.Unpacker is msgpack.fallback.Unpacker and msgpack.Packer is msgpack.fallback.Packer,
        "msgpack_roundtrip": msgpack.unpackb(packed) == {"a": [1, 2.5, None, "x"]},
    }))
""")


@pytest.mark.parametrize("which", ["3.11", "3.9", "newest"])
def test_bytecode_trees_are_used(which, pyz, bare_python, tmp_path):
    python = bare_python(which)
    tag = subprocess.run([str(python), "-c", "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    no_cron = tmp_path / "plain.flow"
    no_cron.write_text('task a {\n    exec ["true"]\n}\n')

    def probe(flow_file, tag=tag):
        out = subprocess.run([str(python), "-I", "-B", "-c", PROBE, str(pyz), str(flow_file), tag],
                             capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.splitlines()[-1])

    report = probe(EXAMPLE)
    assert report["exit"] == 0
    tree = os.path.join(str(pyz), "__pyc__", tag) + os.sep
    for module, file in report["files"].items():
        assert file and file.startswith(tree) and file.endswith(".pyc"), (module, file)
    assert not report["croniter"]  # cron syntax is checked by flowdsl.lang.cronexpr: validate never needs croniter
    assert report["build_modules"] == []  # the frozen tables need none of lark's grammar compiler
    assert report["lark_builds"]
    assert report["msgpack_fallback"] and report["msgpack_roundtrip"]

    plain = probe(no_cron)
    assert plain["exit"] == 0
    assert not plain["croniter"], "validate must not import croniter"

    if which == "3.11":  # an interpreter the build did not know: the sources at the root, same results
        other = probe(EXAMPLE, tag="cpython-0")
        assert other["exit"] == 0 and other["lark_builds"] and other["msgpack_fallback"]
        for module, file in other["files"].items():
            assert file == os.path.join(str(pyz), *module.split(".")) + (
                os.sep + "__init__.py" if module in ("flowdsl.cli", "lark", "msgpack") else ".py"), (module, file)


def test_an_older_python_is_told_which_it_needs(pyz):
    """Every interpreter older than 3.9 that pyenv has (2.7 too) gets one line and exit 2, no traceback."""
    olds = [folder / "bin" / "python" for folder in (pyenv_root() / "versions").glob("[23].*")
            if re.fullmatch(r"(2\.\d+|3\.[0-8])\.\d+", folder.name) and (folder / "bin" / "python").exists()]
    if not olds:
        pytest.fail(f"no Python older than 3.9 under {pyenv_root()}/versions to try")
    for exe in olds:
        proc = subprocess.run([str(exe), str(pyz), "validate", "x.flow"], capture_output=True, text=True)
        version = exe.parent.parent.name
        assert proc.returncode == 2, (version, proc.stderr)
        assert proc.stderr == f"flow needs Python 3.9 or newer (this is {version})\n", (version, proc.stderr)


# ---- the bytecode cache, for an interpreter without a tree -------------------------------


def treeless(pyz) -> str:
    """A pyenv interpreter (3.N) the archive has no bytecode tree for; fails when pyenv has none."""
    with zipfile.ZipFile(pyz) as zf:
        main = zf.read("__main__.py").decode()
    trees = json.loads(re.search(r"^PYC_TREES = (\{.*\})$", main, re.M).group(1))
    for version in sorted(pyenv_versions()):
        if version >= (3, 9) and f"cpython-3{version[1]}" not in trees:
            return f"3.{version[1]}"
    pytest.fail(f"every Python under {pyenv_root()}/versions has a tree in the archive: install one it has not "
                f"(it has {sorted(trees)}) to test the bytecode cache")


def cache_env(cache, **more):
    return {**clean_env(), "FLOW_BYTECODE_CACHE": str(cache), **more}


def run_cached(python, pyz, *args, env, cwd, umask=0o022):
    return subprocess.run([str(python), str(pyz), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120, preexec_fn=lambda: os.umask(umask))


# What a filled cache gives the modules that read the build's data (run with the cache's folder first on
# sys.path, as __main__.py puts it).
CACHE_PROBE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from flowdsl.lang import _tables, frozen_re, records, timeutil, values
    from flowdsl.lang.ir import Task
    import flowdsl.cli, lark
    print(json.dumps({
        "files": [m.__file__ for m in (flowdsl.cli, _tables, frozen_re, lark)],
        "tables": _tables.load("lark") is not None and _tables.load("fast") is not None,
        "regexes": frozen_re.load() is not None,
        "records": bool(records._precompiled_code),
        "zones": len(timeutil._bundled_data()),
        "lean": values.mask.__annotations__ == {} and values.mask.__doc__ is None,  # as a tree holds them
        "fields": list(Task.__annotations__)[:2],  # a record's, which its fields are made from
    }))
""")


def test_an_interpreter_without_a_tree_fills_its_cache_once(pyz, bare_python, tmp_path):
    """Its first command runs from the sources and then compiles them into the cache, whole (under a
    temporary name first); every later one imports from there, with the data beside the modules."""
    python = bare_python(treeless(pyz))
    cache = tmp_path / "cache"
    first = run_cached(python, pyz, "validate", EXAMPLE, env=cache_env(cache), cwd=tmp_path)
    assert (first.returncode, first.stderr) == (0, ""), first.stdout + first.stderr
    assert "no problems" in first.stdout
    (folder,) = (cache / "pyc").iterdir()
    tag = subprocess.run([str(python), "-c", "import sys; print(sys.implementation.cache_tag)"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert folder.name.endswith("-" + tag) and folder.stat().st_mode & 0o777 == 0o700
    with zipfile.ZipFile(pyz) as zf:
        manifest = json.loads(zf.read("__pyc__/cache.json"))
    assert {str(p.relative_to(folder)) for p in folder.rglob("*.pyc")} == {m + "c" for m in manifest["modules"]}
    assert not [p for p in (cache / "pyc").iterdir() if p.name.startswith(".")]  # no temporary folder left
    made = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}

    probe = subprocess.run([str(python), "-I", "-c", CACHE_PROBE, str(folder)], capture_output=True, text=True,
                           env=clean_env(), cwd=tmp_path, timeout=120)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert all(f.startswith(str(folder) + os.sep) and f.endswith(".pyc") for f in report["files"]), report
    assert report["tables"] and report["regexes"] and report["records"] and report["zones"] > 500, report
    assert report["lean"] and report["fields"] == ["name", "name_span"], report

    again = run_cached(python, pyz, "validate", EXAMPLE, env=cache_env(cache), cwd=tmp_path)
    assert (again.returncode, again.stderr) == (0, ""), again.stdout + again.stderr
    project = tmp_path / "orders"
    shutil.copytree(EXAMPLE.parent, project, ignore=shutil.ignore_patterns(".flow"))
    ran = run_cached(python, pyz, "run", project / EXAMPLE.name, "--json", env=cache_env(cache), cwd=project)
    assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "success", ran.stdout + ran.stderr
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == made  # used, never written again


@pytest.mark.parametrize("how", ["empty setting", "-B", "PYTHONDONTWRITEBYTECODE", "unwritable", "left over"])
def test_no_cache_is_written_when_it_must_not_or_cannot_be(how, pyz, bare_python, tmp_path):
    """Each command still works, from the sources, says nothing about it, and leaves no half cache."""
    python = bare_python(treeless(pyz))
    cache, flags = tmp_path / "cache", []
    env = cache_env(cache)
    if how == "empty setting":
        env["FLOW_BYTECODE_CACHE"] = ""
        env["HOME"] = str(tmp_path)  # would be the default's place
    elif how == "-B":
        flags = ["-B"]
    elif how == "PYTHONDONTWRITEBYTECODE":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    elif how == "unwritable":
        (tmp_path / "file").write_text("")
        env["FLOW_BYTECODE_CACHE"] = str(tmp_path / "file" / "cache")  # under a file: no folder can be made
    elif how == "left over":  # a fill that died an hour ago left its temporary folder
        stale = cache / "pyc" / ".fill-dead"
        stale.mkdir(parents=True)
        os.utime(stale, (1, 1))
    out = subprocess.run([str(python), *flags, str(pyz), "validate", str(EXAMPLE)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, timeout=120)
    assert (out.returncode, out.stderr) == (0, ""), out.stdout + out.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.pyc"))
    if how == "left over":
        assert written and not (cache / "pyc" / ".fill-dead").exists()  # filled, and the dead fill's folder gone
    else:
        assert written == [] and not (tmp_path / ".cache").exists()


PLANT = textwrap.dedent("""
    import importlib._bootstrap_external as ext, sys
    target, marker = sys.argv[1:3]
    code = compile(f"open({marker!r}, 'w').write('planted')\\nraise SystemExit(7)\\n", "planted.py", "exec")
    with open(target, "wb") as f:
        f.write(ext._code_to_hash_pyc(code, b"\\0" * 8, checked=False))
""")


def plant(python, folder: Path, marker: Path) -> None:
    """Make the cache's flowdsl.cli a module that writes `marker` and exits 7, as an attacker would (compiled by
    the interpreter that will load it)."""
    subprocess.run([str(python), "-c", PLANT, str(folder / "flowdsl" / "cli" / "__init__.pyc"), str(marker)],
                   check=True)


@pytest.mark.parametrize("how", ["the cache", "its parent", "the root", "a link", "the owner"])
def test_a_cache_someone_else_could_have_written_is_never_used(how, pyz, bare_python, tmp_path):
    """A cache is code: one that another user owns, or could have changed through a folder anyone may write
    to, or that is a link, is not imported (flow runs from the sources). The same planted cache, safe,
    would run: the plant works."""
    python = bare_python(treeless(pyz))
    cache = tmp_path / "cache"
    filled = run_cached(python, pyz, "validate", EXAMPLE, env=cache_env(cache), cwd=tmp_path, umask=0o002)
    assert filled.returncode == 0  # under a umask that leaves new folders group-writable: the cache's are not
    assert {p.stat().st_mode & 0o777 for p in (cache, cache / "pyc")} == {0o700}
    (folder,) = (cache / "pyc").iterdir()
    marker = tmp_path / "planted"
    plant(python, folder, marker)
    control = run_cached(python, pyz, "validate", EXAMPLE, env=cache_env(cache), cwd=tmp_path)
    assert control.returncode == 7 and marker.exists(), control.stdout + control.stderr
    marker.unlink()

    if how == "the cache":
        folder.chmod(0o777)
    elif how == "its parent":
        (cache / "pyc").chmod(0o777)
    elif how == "the root":
        cache.chmod(0o775)
    elif how == "a link":
        real = tmp_path / "elsewhere"
        folder.rename(real)
        folder.symlink_to(real)
    elif how == "the owner":
        try:
            os.chown(folder, 65534, 65534)
        except PermissionError:
            pytest.fail("changing a folder's owner needs root: run this test as root (CI does)")
    out = run_cached(python, pyz, "validate", EXAMPLE, env=cache_env(cache), cwd=tmp_path)
    assert (out.returncode, out.stderr) == (0, ""), out.stdout + out.stderr
    assert "no problems" in out.stdout and not marker.exists()
