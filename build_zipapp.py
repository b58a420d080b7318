#!/usr/bin/env python3
"""Build dist/flow.pyz: `flow` and pure-Python copies of its dependencies in one file.

    python3 build_zipapp.py [--output PATH] [--trees 3.9,3.11,3.13]

The archive runs as `python3 flow.pyz ARGS...` on any CPython 3.9 or newer
with nothing installed. Its layout:

    __main__.py                 puts __pyc__/<cache tag> first on sys.path, then flowdsl.cli.main
    flowdsl/**/*.py             the package, plus the generated flowdsl/lang/_tables.py, which
                                loads the LALR tables from flowdsl/lang/_tables.marshal (lark's
                                form) and flowdsl/lang/_fast.marshal (plain data, for lalr.py)
    flowdsl/lang/_tzdata.marshal  the tzdata package's zone files, for servers without a database
    flowdsl/grammar/flow.lark   the grammar as package data
    lark/ croniter/ dateutil/ msgpack/ tabulate/ six.py
                                the locked dependencies (requirements/pyz.txt), no compiled files,
                                less what DROPPED names
    licenses/<dist>/...         the dependencies' license files
    __pyc__/cpython-3NN/...     per interpreter of --trees found at build time: the same modules
                                (less SOURCE_ONLY) as sourceless .pyc files without docstrings,
                                plus copies of the grammars
    __pyc__/cache.json          what any other interpreter compiles into its bytecode cache
                                (flowdsl/lang/bytecache.py): the same modules and data

Why the __pyc__ trees: zipimport never writes bytecode, so a .py inside a zip is
compiled again on every start (tens of milliseconds for lark alone), and it
only looks for `mod.pyc` beside `mod.py`, where one interpreter version fits.
So an interpreter gets its own sourceless tree; the sources at the root stay
as the fallback for any other version, which compiles them once into the
user's bytecode cache (a tree on disk) after its first command. Each tree is
about 0.5 MB of the archive: three of them (TREES) keep it under 2.5 MB. The .pyc files are unchecked-hash
pycs: there is no source beside them to check, and no mtime to trust.

Faster still: the bundled lark is edited (LARK_EDITS, below) so that
`import lark` skips its grammar compiler, which only building a grammar needs,
and flowdsl.lang.parser loads the frozen tables with the garbage collector off.

Reproducible: the same sources and lock give the same bytes (sorted entries,
fixed dates and modes, a fixed deflate level; every subprocess runs with
PYTHONHASHSEED=0, because set constants and the LALR tables are ordered by
string hashes, and dump_tables() keeps lark's state numbering away from
memory addresses; each interpreter compiles in a fresh process, in sorted
order, because marshal's output depends on what the process has interned).
The same bytes need the same interpreters and zlib, so compare builds made on
one machine. Wheels are cached, hash-checked, in build/wheels/.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import io
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from typing import Dict, List, NamedTuple, Optional, Tuple

from flowdsl.lang.bytecache import MANIFEST as CACHE_MANIFEST  # what an interpreter without a tree reads

ROOT = os.path.dirname(os.path.abspath(__file__))
LOCK = os.path.join(ROOT, "requirements", "pyz.txt")
WHEEL_CACHE = os.path.join(ROOT, "build", "wheels")
DEFAULT_OUTPUT = os.path.join(ROOT, "dist", "flow.pyz")
PROGRAMS = os.path.join(ROOT, "zipbuild")  # what the build runs or copies: real files, under ruff and the tests


def program(name: str) -> str:
    return os.path.join(PROGRAMS, name)

# Choose the same files on any build machine: msgpack only ships compiled
# wheels, so name one (its C extension is dropped; the Python files are the
# same in all of them). Pure wheels match any of these tags.
WHEEL_TARGET = ["--only-binary", ":all:", "--platform", "manylinux2014_x86_64",
                "--implementation", "cp", "--python-version", "3.9", "--abi", "cp39"]

PYC_DIR = "__pyc__"
# The interpreters that get a bytecode tree inside the archive, when the build machine has them (each
# tree is about 0.5 MB of the archive): the oldest supported and two later ones. Any other interpreter
# compiles a tree of its own once, into its bytecode cache (flowdsl/lang/bytecache.py).
TREES = ("3.9", "3.11", "3.13")
# Left out of the bytecode trees: what flow never imports at run time (lark's grammar
# compiler, its Earley and CYK parsers and tools, dateutil's zone files loader), and
# flow's modules that only slow verbs import, stay as source at the root, still
# importable (__main__.py's RootSources finds them).
SOURCE_ONLY = ("lark/load_grammar.py", "lark/parsers/earley", "lark/parsers/xearley.py", "lark/parsers/cyk.py",
               "lark/tools/", "lark/reconstruct.py", "lark/tree_matcher.py", "lark/tree_templates.py",
               "lark/ast_utils.py", "lark/indenter.py", "lark/__pyinstaller/", "dateutil/zoneinfo/",
               # flow's own modules whose verbs take far longer than compiling them, or run
               # once per project: the dask executor (importing distributed alone takes a
               # second), the HTML report (about a second for a large run), `flow init`
               "flowdsl/run/dask.py", "flowdsl/run/daskhost.py", "flowdsl/run/daskremote.py",
               "flowdsl/run/daskupload.py", "flowdsl/cli/report.py",
               "flowdsl/cli/reportpage.py", "flowdsl/cli/reportdata.py", "flowdsl/cli/init.py")
# Left out of the archive: dateutil's own copy of the time zone database (0.9 MB with
# its copies in the trees), its date parser and recurrence rules (croniter imports
# only dateutil.relativedelta and dateutil.tz, and never asks dateutil for a zone),
# and its Windows zones (dateutil.tz tries to import them and goes on without: from
# source that failed try costs every tick 3 ms, and flow does not run on Windows).
DROPPED = ("dateutil/zoneinfo/dateutil-zoneinfo.tar.gz", "dateutil/parser/", "dateutil/rrule.py", "dateutil/easter.py",
           "dateutil/tz/win.py", "dateutil/tzwin.py")
# The tzdata package becomes one entry: {"version", "files": [TZif bytes], "zones": {key: index}} as
# marshal data, which flowdsl.lang.timeutil.zone() reads when the system has no
# zone database. As 600 files it would cost every start of flow.pyz 3 ms more:
# zipimport reads the whole directory of the archive, entry by entry.
TZDATA_ARC = "flowdsl/lang/_tzdata.marshal"
TABLES_ARC = "flowdsl/lang/_tables.py"  # generated at build time, never in the checkout
TABLES_DATA = "flowdsl/lang/_tables.marshal"  # read by it from the archive's root, so never copied into the trees
FAST_DATA = "flowdsl/lang/_fast.marshal"  # the same tables as plain data, for flowdsl/lang/lalr.py
COMPILED = (".so", ".pyd", ".dll", ".dylib")
LICENSE_NAMES = re.compile(r"^(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_LEVEL = 9
SHEBANG = b"#!/usr/bin/env python3\n"
MIN_VERSION = (3, 9)


def log(message: str) -> None:
    print(f"build_zipapp: {message}", file=sys.stderr, flush=True)


def child_env() -> Dict[str, str]:
    """The environment for every subprocess: no PYTHON* settings but a fixed hash seed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONHASHSEED"] = "0"
    return env


def run(cmd: List[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=child_env(), check=True, **kw)


def pip(*args: str) -> None:
    """Run pip quietly; show what it said only when it fails."""
    out = subprocess.run([sys.executable, "-m", "pip", *args], env=child_env(), capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stdout + out.stderr)
        raise SystemExit(f"build_zipapp: pip {args[0]} failed (exit {out.returncode})")


# ---- the locked dependencies ----------------------------------------------------------


class Pin(NamedTuple):
    name: str
    version: str
    hashes: Tuple[str, ...]


def read_lock(path: str = LOCK) -> List[Pin]:
    """The `name==version --hash=sha256:...` lines of a pip requirements file."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", line)
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        if not m or not hashes:
            raise SystemExit(f"build_zipapp: {path}: every line needs name==version and --hash=sha256: {line}")
        pins.append(Pin(m.group(1), m.group(2), hashes))
    return pins


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_wheels(pins: List[Pin]) -> Dict[Pin, str]:
    """The wheels of build/wheels whose hash a pin lists."""
    by_hash = {}
    for path in glob.glob(os.path.join(WHEEL_CACHE, "*.whl")):
        by_hash[sha256(path)] = path
    found = {}
    for pin in pins:
        for h in pin.hashes:
            if h in by_hash:
                found[pin] = by_hash[h]
    return found


def fetch_wheels(pins: List[Pin]) -> None:
    """Download what build/wheels lacks (pip checks the hashes), then move it in."""
    missing = [p for p in pins if p not in cached_wheels(pins)]
    if not missing:
        return
    log("downloading " + ", ".join(f"{p.name}=={p.version}" for p in missing))
    os.makedirs(WHEEL_CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WHEEL_CACHE) as tmp:
        pip("download", "--no-deps", "--require-hashes", *WHEEL_TARGET, "--dest", tmp, "-r", LOCK)
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(WHEEL_CACHE, name))  # atomic: builds may race
    still = [p.name for p in pins if p not in cached_wheels(pins)]
    if still:
        raise SystemExit(f"build_zipapp: no wheel matching the lock's hashes for: {', '.join(still)}")


def install_wheels(pins: List[Pin], target: str) -> None:
    """pip-install the cached wheels into `target`: no index, no config, hashes required."""
    fetch_wheels(pins)
    pip("install", "--isolated", "--no-deps", "--require-hashes", "--no-index", "--find-links", WHEEL_CACHE,
        *WHEEL_TARGET, "--no-compile", "--disable-pip-version-check", "--target", target, "-r", LOCK)


# ---- what goes into the archive -------------------------------------------------------


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def package_files() -> Dict[str, bytes]:
    """flowdsl's sources and its grammar (as package data)."""
    files = {}
    base = os.path.join(ROOT, "flowdsl")
    for folder, dirs, names in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in names:
            path = os.path.join(folder, name)
            arc = os.path.relpath(path, ROOT).replace(os.sep, "/")
            if name.endswith(".py") and arc != TABLES_ARC:
                files[arc] = read(path)
    files["flowdsl/grammar/flow.lark"] = read(os.path.join(ROOT, "grammar", "flow.lark"))
    return files


def dependency_files(site: str) -> Tuple[Dict[str, bytes], List[str]]:
    """The installed dependencies minus metadata and compiled files, plus their licenses.

    Returns (files, names of the compiled files dropped).
    """
    files, dropped = {}, []
    for top in sorted(os.listdir(site)):
        path = os.path.join(site, top)
        if top.endswith(".dist-info"):
            dist = top[: -len(".dist-info")]
            licenses = [os.path.join(folder, n) for folder, _, names in os.walk(path) for n in names
                        if LICENSE_NAMES.match(n) or os.path.basename(folder) == "licenses"]
            if not licenses:
                log(f"warning: {dist} has no license file")
            for lic in licenses:
                files[f"licenses/{dist}/{os.path.basename(lic)}"] = read(lic)
            continue
        if top in ("bin", "__pycache__") or top.startswith("."):
            continue  # console scripts; pip's leftovers
        if os.path.isfile(path):
            if top.endswith(".py"):
                files[top] = read(path)
            continue
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests", "test"))  # croniter ships its tests
            for name in names:
                full = os.path.join(folder, name)
                arc = os.path.relpath(full, site).replace(os.sep, "/")
                if name.endswith(COMPILED) or ".cpython-" in name:
                    dropped.append(arc)
                elif name.endswith((".pyc", ".pyi", ".pyx", ".pxd", ".c", ".h", ".cpp")):
                    continue  # sources of the extensions, stubs
                else:
                    files[arc] = read(full)
    return files, dropped


# `import lark` also imports what lark needs to BUILD a grammar: load_grammar (and
# hashlib, pkgutil), pickle, tempfile and getpass for its cache, the Earley and
# CYK parsers, and logging for its (silent) logger. flow.pyz only loads prebuilt
# LALR tables, so these edits to the bundled copy import them on first use
# instead (about 12 ms of a cold start). Behaviour is unchanged, except that
# `lark.logger` is a stand-in that makes the real logger on first use. Each edit
# must match exactly once or the build stops: a new lark needs them reviewed.
LAZY_MODULE = """
class _LazyModule:
    \"\"\"A module imported on first attribute access (edit made by flow's build_zipapp.py).\"\"\"

    def __init__(self, name):
        self.__dict__["_name"] = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)

"""
LARK_EDITS = {
    "lark/lark.py": [
        ("import getpass\nimport sys, os, pickle\nimport tempfile\n",
         "import sys, os\n" + LAZY_MODULE
         + "getpass, pickle, tempfile = _LazyModule('getpass'), _LazyModule('pickle'), _LazyModule('tempfile')\n"),
        ("from .load_grammar import load_grammar, FromPackageLoader, Grammar, verify_used_files, PackageResource,"
         " sha256_digest\n", ""),
        ("        self.options = LarkOptions(options)\n",
         "        from .load_grammar import load_grammar, Grammar, verify_used_files, sha256_digest\n"
         "        self.options = LarkOptions(options)\n"),
        ("            self.grammar = Grammar.deserialize(data['grammar'], memo)\n",
         "            from .load_grammar import Grammar\n"
         "            self.grammar = Grammar.deserialize(data['grammar'], memo)\n"),
        ("        package_loader = FromPackageLoader(package, search_paths)\n",
         "        from .load_grammar import FromPackageLoader\n"
         "        package_loader = FromPackageLoader(package, search_paths)\n"),
    ],
    "lark/utils.py": [
        ("import logging\n", ""),
        (re.compile(r"^logger: logging\.Logger = .*?^logger\.setLevel\(logging\.CRITICAL\)\n", re.S | re.M),
         "class _LazyLogger:\n"
         '    """The silent "lark" logger, made on first use (edit made by flow\'s build_zipapp.py)."""\n\n'
         "    _real = None\n\n"
         "    def __getattr__(self, attr):\n"
         "        if _LazyLogger._real is None:\n"
         "            import logging\n"
         '            real = logging.getLogger("lark")\n'
         "            real.addHandler(logging.StreamHandler())\n"
         "            real.setLevel(logging.CRITICAL)\n"
         "            _LazyLogger._real = real\n"
         "        return getattr(_LazyLogger._real, attr)\n\n\n"
         "logger = _LazyLogger()\n"),
    ],
    # dataclasses (and with it inspect, dis, tokenize...) for one class: TextSlice, written out
    # as the frozen dataclass it was (fields, __post_init__, equality, hash, repr, no assignment).
    "lark/utils.py#dataclass": [
        ("from dataclasses import dataclass\n", ""),
        ("@dataclass(frozen=True)\nclass TextSlice(Generic[AnyStr]):", "class TextSlice(Generic[AnyStr]):"),
        ("    text: AnyStr\n    start: int\n    end: int\n\n    def __post_init__(self):\n",
         "    text: AnyStr\n    start: int\n    end: int\n"
         "    __match_args__ = ('text', 'start', 'end')\n\n"
         "    def __init__(self, text, start, end):  # was @dataclass(frozen=True): flow's build_zipapp.py\n"
         "        object.__setattr__(self, 'text', text)\n"
         "        object.__setattr__(self, 'start', start)\n"
         "        object.__setattr__(self, 'end', end)\n"
         "        self.__post_init__()\n\n"
         "    def __setattr__(self, name, value):\n"
         "        raise AttributeError(f'cannot assign to field {name!r}')\n\n"
         "    def __delattr__(self, name):\n"
         "        raise AttributeError(f'cannot delete field {name!r}')\n\n"
         "    def __eq__(self, other):\n"
         "        if other.__class__ is self.__class__:\n"
         "            return (self.text, self.start, self.end) == (other.text, other.start, other.end)\n"
         "        return NotImplemented\n\n"
         "    def __hash__(self):\n"
         "        return hash((self.text, self.start, self.end))\n\n"
         "    def __repr__(self):\n"
         "        return (f'{self.__class__.__qualname__}(text={self.text!r}, '\n"
         "                f'start={self.start!r}, end={self.end!r})')\n\n"
         "    def __post_init__(self):\n"),
    ],
    # The contextual lexer compiles two regular expressions per parser state on first use:
    # the state's terminals, and (the "unless" callback) the keywords a name-like terminal
    # may turn out to be. For plain strings the second is a fullmatch over literals: a dict
    # lookup gives the same answer (the first listed wins) without compiling anything.
    "lark/lexer.py": [
        ("            callback[retok.name] = UnlessCallback(Scanner(unless, g_regex_flags, re_, "
         "use_bytes=use_bytes))\n",
         "            callback[retok.name] = _unless_callback(unless, g_regex_flags, re_, use_bytes)\n"),
        ("class CallChain:\n",
         "class _UnlessByValue:\n"
         "    \"\"\"UnlessCallback for plain strings, as a dict (edit made by flow's build_zipapp.py).\"\"\"\n\n"
         "    def __init__(self, types):\n"
         "        self.types = types\n\n"
         "    def __call__(self, t):\n"
         "        res = self.types.get(t.value)\n"
         "        if res is not None:\n"
         "            t.type = res\n"
         "        return t\n\n\n"
         "def _unless_callback(unless, g_regex_flags, re_, use_bytes):\n"
         "    if g_regex_flags or use_bytes or any(s.pattern.flags for s in unless):\n"
         "        return UnlessCallback(Scanner(unless, g_regex_flags, re_, use_bytes=use_bytes))\n"
         "    types = {}\n"
         "    for s in unless:\n"
         "        types.setdefault(s.pattern.value, s.name)\n"
         "    return _UnlessByValue(types)\n\n\n"
         "class CallChain:\n"),
    ],
    # inspect (with dis, tokenize, linecache...) for getmro and getmembers of a class.
    "lark/visitors.py": [
        ("from inspect import getmembers, getmro\n",
         "def getmro(cls):  # inspect's, without importing inspect (edit made by flow's build_zipapp.py)\n"
         "    return cls.__mro__\n\n\n"
         "def getmembers(cls):  # inspect's for a class: (name, value) of dir(cls), sorted by name\n"
         "    members = []\n"
         "    for name in dir(cls):\n"
         "        try:\n"
         "            members.append((name, getattr(cls, name)))\n"
         "        except AttributeError:\n"
         "            for base in cls.__mro__:\n"
         "                if name in base.__dict__:\n"
         "                    members.append((name, base.__dict__[name]))\n"
         "                    break\n"
         "    members.sort(key=lambda m: m[0])\n"
         "    return members\n\n\n"),
    ],
    "lark/parser_frontends.py": [
        ("from .parsers import earley, xearley, cyk\n",
         LAZY_MODULE + "earley, xearley, cyk = (_LazyModule('lark.parsers.' + m)"
                       " for m in ('earley', 'xearley', 'cyk'))\n"),
        (" -> earley.Parser:", " -> 'earley.Parser':"),
    ],
}

# croniter (imported by `flow tick` and `flow schedule`, never by `flow validate`)
# calls platform.architecture() at import to detect a 32-bit Python, and that runs
# the `file` command in a subprocess: a fork and an exec on every tick. Its two
# other checks (pointer size, sys.maxsize) decide the same on CPython, so the
# bundled copy skips the command; traceback and random are imported on first use.
CRONITER_EDITS = {
    "croniter/croniter.py": [
        ("import platform\nimport random\n", ""),
        ("import traceback as _traceback\n",
         LAZY_MODULE + "_traceback, random = _LazyModule('traceback'), _LazyModule('random')\n"),
        ("        architecture = platform.architecture()[0]\n",
         "        architecture = None  # edit made by flow's build_zipapp.py: no `file` subprocess\n"),
    ],
}


def edit_dependencies(files: Dict[str, bytes]) -> None:
    for key, edits in {**LARK_EDITS, **CRONITER_EDITS}.items():
        arc = key.split("#")[0]  # "file#topic": more edits of one file, listed by topic
        text = files[arc].decode("utf-8")
        for old, new in edits:
            if isinstance(old, re.Pattern):
                found = len(old.findall(text))
                shown = old.pattern
            else:
                found, shown = text.count(old), old.strip()
            if found != 1:
                raise SystemExit(f"build_zipapp: {arc}: an edit of LARK_EDITS or CRONITER_EDITS no longer matches: "
                                 f"{shown!r}")
            text = old.sub(lambda m, new=new: new, text) if isinstance(old, re.Pattern) else text.replace(old, new)
        files[arc] = text.encode("utf-8")


def tzdata_blob(files: Dict[str, bytes]) -> bytes:
    """The zone files of the tzdata package as one marshal blob; takes the package's files out of `files`."""
    prefix = "tzdata/zoneinfo/"
    init = files.get("tzdata/__init__.py", b"").decode("utf-8")
    version = re.search(r"IANA_VERSION\s*=\s*['\"]([^'\"]+)", init)
    zones = {a[len(prefix):]: data for a, data in sorted(files.items())
             if a.startswith(prefix) and data.startswith(b"TZif")}  # zic's output; not its tables or sources
    if not version or "Europe/Berlin" not in zones:
        raise SystemExit("build_zipapp: the tzdata package does not look as expected: review tzdata_blob()")
    for arc in [a for a in files if a.startswith("tzdata/")]:
        del files[arc]
    # Links (US/Eastern, Europe/Belfast...) are copies of their zone's file: each file once (20 KB less).
    unique: Dict[bytes, int] = {}
    for data in zones.values():
        unique.setdefault(data, len(unique))
    # format 2: no back-references, so the bytes follow the data alone
    return marshal.dumps({"version": version.group(1), "files": list(unique),
                          "zones": {key: unique[data] for key, data in zones.items()}}, 2)


def write_tree(files: Dict[str, bytes], folder: str) -> None:
    for arc, data in files.items():
        path = os.path.join(folder, *arc.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


def tables_files(tree: str) -> Dict[str, bytes]:
    """flowdsl/lang/_tables.py and the data it reads: the grammar's LALR tables, made by the bundled lark
    (as lark serializes them, and as plain data for the fast parser)."""
    out = run([sys.executable, "-S", "-B", program("make_tables.py"), tree], stdout=subprocess.PIPE).stdout
    parts = marshal.loads(out)
    module = read(program("tables_module.py"))
    for name in (TABLES_DATA, FAST_DATA):
        if module.count(f'"{name}"'.encode()) != 1:
            raise SystemExit(f"build_zipapp: zipbuild/tables_module.py does not name {name} once")
    return {TABLES_ARC: module, TABLES_DATA: parts["lark"], FAST_DATA: parts["fast"]}


# ---- bytecode, one tree per interpreter -----------------------------------------------


class Python(NamedTuple):
    path: str
    tag: str  # sys.implementation.cache_tag, e.g. cpython-311
    magic: str  # importlib.util.MAGIC_NUMBER as hex
    version: Tuple[int, int, int]
    final: bool


PROBE = ("import sys, importlib.util as u; i = sys.implementation; v = sys.version_info; "
         "print(i.name, i.cache_tag, u.MAGIC_NUMBER.hex(), v[0], v[1], v[2], v.releaselevel)")


def pyenv_root() -> Optional[str]:
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30, env=child_env())
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def find_pythons() -> List[Python]:
    """One CPython 3.9+ per cache tag: this one, pyenv's versions, python3.N on PATH."""
    names = [f"python3.{minor}" for minor in range(MIN_VERSION[1], 20)]
    candidates = [sys.executable]
    root = pyenv_root()
    if root:
        for version in sorted(glob.glob(os.path.join(root, "versions", "*"))):
            candidates += [os.path.join(version, "bin", n) for n in names]
    candidates += [shutil.which(n) or "" for n in names]
    seen, found = set(), {}
    for path in candidates:
        if not path or not os.path.isfile(path) or os.path.realpath(path) in seen:
            continue
        seen.add(os.path.realpath(path))
        try:
            out = subprocess.run([path, "-S", "-c", PROBE], capture_output=True, text=True, timeout=60,
                                 env=child_env())
            impl, tag, magic, major, minor, micro, level = out.stdout.split()
        except (OSError, subprocess.SubprocessError, ValueError):
            continue  # e.g. a pyenv shim for a version that is not active
        version = (int(major), int(minor), int(micro))
        if impl != "cpython" or version[:2] < MIN_VERSION or tag == "None":
            continue
        py = Python(path, tag, magic, version, level == "final")
        best = found.get(tag)
        if best is None or (py.final, py.version) > (best.final, best.version):
            found[tag] = py
    return sorted(found.values(), key=lambda p: p.version)


# Made by each interpreter for its own bytecode tree (what it compiles is its own).
TREE_DATA = {"regexes": "flowdsl/lang/_regexes.marshal",  # flowdsl/lang/frozen_re.py
             "records": "flowdsl/lang/_records.marshal"}  # flowdsl/lang/records.py


def tree_data(py: Python, tree: str) -> Dict[str, bytes]:
    """The lexer's regular expressions and the records' __init__s compiled by `py` ({} with a warning on failure)."""
    try:
        out = run([py.path, "-S", "-B", program("tree_data.py"), tree], capture_output=True, timeout=600)
        return {f"{PYC_DIR}/{py.tag}/{TREE_DATA[k]}": v for k, v in marshal.loads(out.stdout).items()}
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError, EOFError) as e:
        reason = (getattr(e, "stderr", None) or b"").decode(errors="replace").strip().splitlines()[-1:] or [str(e)]
        log(f"warning: no compiled tables for {py.tag}: {reason[0]}")
        return {}


def compile_tree(py: Python, tree: str, modules: List[str], out: str) -> Dict[str, bytes]:
    """{arcname: pyc bytes} for every module, compiled by `py` in one fresh process."""
    jobs = [[os.path.join(tree, *m.split("/")), os.path.join(out, *m.split("/")) + "c", m] for m in sorted(modules)]
    ranges = ["-X", "no_debug_ranges"] if py.version[:2] >= (3, 11) else []
    run([py.path, "-S", "-B", *ranges, program("compile_tree.py"), tree], input=json.dumps(jobs).encode(),
        capture_output=True, timeout=600)
    return {f"{PYC_DIR}/{py.tag}/{m}c": read(os.path.join(out, *m.split("/")) + "c") for m in modules}


def main_module(pythons: List[Python], build: str) -> bytes:
    """zipbuild/archive_main.py, with the bytecode trees this build made and its digest."""
    text = read(program("archive_main.py")).decode("utf-8")
    trees = "{" + ", ".join(f'"{p.tag}": "{p.magic}"' for p in pythons) + "}"
    for old, new in (("PYC_TREES = {}  # filled in by the build", f"PYC_TREES = {trees}"),
                     ('BUILD = ""  # filled in by the build', f'BUILD = "{build}"'),
                     ('PYC_DIR = "__pyc__"', f'PYC_DIR = "{PYC_DIR}"')):
        if text.count(old) != 1:
            raise SystemExit(f"build_zipapp: zipbuild/archive_main.py has not one `{old}`")
        text = text.replace(old, new)
    return text.encode("utf-8")


# ---- the zip --------------------------------------------------------------------------


def zip_bytes(files: Dict[str, bytes]) -> bytes:
    """A deterministic zip: sorted names, one date, one mode, one compression level."""
    buf = io.BytesIO()
    buf.write(SHEBANG)
    with zipfile.ZipFile(buf, "w") as zf:
        for arc in sorted(files):
            info = zipfile.ZipInfo(arc, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so that the mode below is honoured
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[arc], compresslevel=ZIP_LEVEL)
    return buf.getvalue()


def build(output: str, trees: Optional[List[str]] = None) -> Dict[str, object]:
    started = time.monotonic()
    os.makedirs(os.path.join(ROOT, "build"), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pyz-", dir=os.path.join(ROOT, "build")) as stage:
        site, tree = os.path.join(stage, "site"), os.path.join(stage, "root")
        install_wheels(read_lock(), site)
        files = package_files()
        deps, dropped = dependency_files(site)
        clash = sorted(set(files) & set(deps))
        if clash:
            raise SystemExit(f"build_zipapp: dependencies overwrite our files: {clash}")
        edit_dependencies(deps)
        files.update(deps)
        write_tree(files, tree)
        tables = tables_files(tree)
        files.update(tables)
        write_tree(tables, tree)

        files[TZDATA_ARC] = tzdata_blob(files)
        gone = [a for a in files if a.startswith(DROPPED)]
        if len({d for d in DROPPED for a in gone if a.startswith(d)}) != len(DROPPED):
            raise SystemExit("build_zipapp: an entry of DROPPED matches no file: a new dependency needs it reviewed")
        for arc in gone:
            del files[arc]
        packaged = [a for a in files if not a.startswith("licenses/")]
        modules = [a for a in packaged if a.endswith(".py") and not a.startswith(SOURCE_ONLY)]
        # Read __file__-relative by modules of the trees: flow's grammar, lark's `%import common`.
        data = {a: files[a] for a in packaged
                if a.startswith(("flowdsl/grammar/", "lark/grammars/common.lark", "lark/grammars/unicode.lark"))}
        pythons, skipped = [], []
        for py in find_pythons():
            if trees is not None and f"{py.version[0]}.{py.version[1]}" not in trees:
                continue
            try:
                pycs = compile_tree(py, tree, modules, os.path.join(stage, "pyc", py.tag))
            except subprocess.CalledProcessError as e:
                reason = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or [str(e)]
                log(f"warning: skipping {py.tag} ({py.path}): {reason[0]}")
                skipped.append(py.tag)
                continue
            except subprocess.TimeoutExpired:
                log(f"warning: skipping {py.tag} ({py.path}): compiling timed out")
                skipped.append(py.tag)
                continue
            files.update(pycs)
            files.update({f"{PYC_DIR}/{py.tag}/{a}": b for a, b in data.items()})
            files.update(tree_data(py, tree))
            pythons.append(py)
        # What an interpreter without a tree compiles into its bytecode cache (flowdsl/lang/bytecache.py)
        files[CACHE_MANIFEST] = json.dumps({
            "modules": sorted(modules), "data": sorted(data) + [TABLES_DATA, FAST_DATA, TZDATA_ARC],
            "tables": TABLES_DATA, "interpreter_data": TREE_DATA}, indent=1, sort_keys=True).encode()
        digest = hashlib.sha256()
        for arc in sorted(files):
            digest.update(f"{arc}\0{len(files[arc])}\0".encode())
            digest.update(files[arc])
        files["__main__.py"] = main_module(pythons, digest.hexdigest()[:16])

    bad = [a for a in files if a.lower().endswith(COMPILED)]
    assert not bad, bad
    blob = zip_bytes(files)
    out_dir = os.path.dirname(os.path.abspath(output))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".flow-", suffix=".pyz")
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    os.chmod(tmp, 0o755)
    os.replace(tmp, output)
    return {"output": output, "bytes": len(blob), "files": len(files), "sha256": hashlib.sha256(blob).hexdigest(),
            "tags": [p.tag for p in pythons], "skipped": skipped, "dropped": dropped,
            "seconds": time.monotonic() - started}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Build the flow zipapp.")
    ap.add_argument("--output", "-o", default=DEFAULT_OUTPUT, help="where to write it (default: dist/flow.pyz)")
    ap.add_argument("--trees", default=",".join(TREES),
                    help=f"the Pythons (3.N, comma-separated) whose bytecode goes into the archive when this "
                         f"machine has them; 'all' for every one found, '' for none (default: {','.join(TREES)})")
    args = ap.parse_args(argv)
    trees = None if args.trees == "all" else [t for t in args.trees.split(",") if t]
    s = build(args.output, trees)
    print(f"{os.path.relpath(s['output'])}: {s['bytes'] / 1e6:.2f} MB, {s['files']} files, "
          f"sha256 {s['sha256'][:16]}, built in {s['seconds']:.1f}s")
    print(f"  bytecode for: {', '.join(s['tags']) or 'none (sources only)'}"
          + (f"; skipped: {', '.join(s['skipped'])}" if s["skipped"] else ""))
    if s["dropped"]:
        print(f"  compiled files left out: {', '.join(s['dropped'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
