"""The file-driven tests of the front end (style point 8, after tomli's test_data.py).

* `data/valid/*.flow` validate with no diagnostic at all, through the zipapp,
  and load in-process to the IR stored beside them as `*.ir.json`.
* `data/invalid/*.flow` give exactly the diagnostics listed in `*.expected`:
  one `line:col CODE` per line, in output order; a diagnostic found in another
  file (an included one) is written `path:line:col CODE`, path relative to
  `data/invalid`. A first line `# flow-args: ...` passes those arguments to
  `flow validate` for that file (e.g. `--target`).

The CLI costs a process start per call, so each corpus is checked in one
`flow validate --format json` call and the JSON is split by file.

Regenerate the goldens with `FLOW_REGEN=1 python -m pytest tests/lang/test_corpus.py`,
then read every changed file before committing it.
"""

import json
import os
import shlex
from pathlib import Path

import pytest

import flowdsl
from flowdsl.lang.diagnostics import CATALOGUE
from flowdsl.lang.ir import to_data

DATA = Path(__file__).resolve().parents[1] / "data"
VALID = DATA / "valid"
INVALID = DATA / "invalid"

VALID_FILES = sorted(p.name for p in VALID.glob("*.flow"))
INVALID_FILES = sorted(p.name for p in INVALID.glob("*.flow"))

# Files that fail because of a bug in flowdsl, not in the file: xfail(strict)
# until the bug is fixed, then delete the entry. Their goldens were made from a
# variant of the same layout that the current code accepts (see each reason).
PENDING_VALID: dict = {}
PENDING_INVALID: dict = {}

needs_proc_mem = pytest.mark.skipif(not os.path.exists("/proc/self/mem"),
                                    reason="E011 is provoked with a link to /proc/self/mem (Linux)")


def _param(name, pending, extra=()):
    marks = list(extra)
    if name in pending:
        marks.append(pytest.mark.xfail(strict=True, reason=pending[name]))
    if name == "E011_unreadable.flow":
        marks.append(needs_proc_mem)
    return pytest.param(name, id=name, marks=marks)


def test_corpora_are_not_empty():
    assert len(VALID_FILES) >= 20, VALID_FILES
    assert len(INVALID_FILES) >= 45, INVALID_FILES
    for name in INVALID_FILES:
        assert (INVALID / name).with_suffix(".expected").is_file(), f"{name} has no .expected file"
    for name in VALID_FILES:
        assert (VALID / name).with_suffix(".ir.json").is_file() or os.environ.get("FLOW_REGEN"), \
            f"{name} has no .ir.json golden (run with FLOW_REGEN=1, then read it)"


# ---- valid files ---------------------------------------------------------------------------------


def load_in_process(name, monkeypatch):
    """Load and validate a valid file from its folder, so that spans name it relatively."""
    monkeypatch.chdir(VALID)
    return flowdsl.check(name)


@pytest.fixture(scope="module")
def valid_run(flow):
    """One `flow validate --format json` over every valid file."""
    proc = flow("validate", "--format", "json", *VALID_FILES, cwd=VALID)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout)


@pytest.mark.parametrize("name", [_param(n, PENDING_VALID) for n in VALID_FILES])
def test_valid_file_has_no_diagnostics(name, valid_run, monkeypatch):
    proc, report = valid_run
    assert name in report["files"]
    loaded = load_in_process(name, monkeypatch)
    files = set(loaded.program.files) if loaded.program else {name}
    mine = [d for d in report["diagnostics"] if d["file"] in files]
    assert mine == []
    assert [str(d) for d in loaded.diagnostics] == []


def test_valid_files_exit_zero(flow):
    """The whole valid corpus, bar the files of known bugs, is accepted with exit 0."""
    names = [n for n in VALID_FILES if n not in PENDING_VALID]
    proc = flow("validate", "--format", "json", *names, cwd=VALID)
    report = json.loads(proc.stdout)
    assert report["diagnostics"] == []
    assert (report["errors"], report["warnings"], proc.returncode) == (0, 0, 0)
    assert report["files"] == names


@pytest.mark.parametrize("name", [_param(n, PENDING_VALID) for n in VALID_FILES])
def test_valid_file_ir(name, monkeypatch):
    loaded = load_in_process(name, monkeypatch)
    assert [str(d) for d in loaded.diagnostics] == []
    data = to_data(loaded.program)
    golden = VALID / name.replace(".flow", ".ir.json")
    if os.environ.get("FLOW_REGEN"):
        golden.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert json.loads(json.dumps(data)) == json.loads(golden.read_text(encoding="utf-8"))


def test_valid_folder_skips_included_files(flow):
    """`flow validate FOLDER` checks every .flow below it, except the files that another
    file of the folder includes: those are checked through their includer."""
    proc = flow("validate", "--format", "json", VALID, cwd=DATA)
    report = json.loads(proc.stdout)
    fragments = sorted(str(p.relative_to(DATA)) for p in (VALID / "include").rglob("*.flow"))
    assert fragments  # the folder test means nothing without them
    assert sorted(report["files"]) == sorted(str(VALID / n) for n in VALID_FILES)
    assert not any("include" + os.sep in f for f in report["files"])
    unexpected = [d for d in report["diagnostics"] if Path(d["file"]).name not in PENDING_VALID]
    assert unexpected == []
    if not any(Path(d["file"]).name in PENDING_VALID for d in report["diagnostics"]):
        assert proc.returncode == 0


def test_folder_include_cycle_is_still_checked(flow, tmp_path):
    """A folder whose files include one another in a cycle must not come out clean."""
    (tmp_path / "a.flow").write_text('include "b.flow"\ntask a { sh "x" }\n')
    (tmp_path / "b.flow").write_text('include "a.flow"\ntask b { sh "x" }\n')
    (tmp_path / "self.flow").write_text('include "self.flow"\ntask s { sh "x" }\n')
    proc = flow("validate", "--format", "json", tmp_path)
    report = json.loads(proc.stdout)
    assert report["files"]
    assert proc.returncode == 1
    assert {d["code"] for d in report["diagnostics"]} == {"E303"}


# ---- invalid files -------------------------------------------------------------------------------


def read_expected(name):
    """[(file, line, col, code)] from NAME.expected; file is None for NAME itself."""
    out = []
    for raw in (INVALID / name).with_suffix(".expected").read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        where, code = raw.split()
        *path, line, col = where.split(":")
        out.append((path[0] if path else None, int(line), int(col), code))
    return out


def flow_args(name):
    """Extra `flow validate` arguments from a first line `# flow-args: ...`."""
    first = (INVALID / name).read_bytes().split(b"\n", 1)[0]
    if first.startswith(b"# flow-args:"):
        return shlex.split(first[len(b"# flow-args:"):].decode())
    return []


@pytest.fixture(scope="module")
def invalid_run(flow):
    """{file name: [(file, line, col, code)]} for every invalid file, from as few CLI calls as
    the files' own arguments allow (one for all the files that have none)."""
    groups = {}
    for name in INVALID_FILES:
        groups.setdefault(tuple(flow_args(name)), []).append(name)
    owner = {}  # diagnostic file -> the corpus file it belongs to
    for name in INVALID_FILES:
        owner[name] = name
        for path, *_ in read_expected(name):
            if path is not None:
                owner[path] = name
    got = {name: [] for name in INVALID_FILES}
    stray = []
    for args, names in groups.items():
        proc = flow("validate", "--format", "json", *args, *names, cwd=INVALID)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
        report = json.loads(proc.stdout)
        assert report["files"] == names
        assert proc.returncode == (1 if report["errors"] else 0)
        for d in report["diagnostics"]:
            if d["file"] not in owner:
                stray.append(d)
                continue
            name = owner[d["file"]]
            got[name].append((None if d["file"] == name else d["file"], d["line"], d["column"], d["code"]))
    return got, stray


def test_invalid_diagnostics_are_all_attributed(invalid_run):
    got, stray = invalid_run
    assert stray == [], "diagnostics in a file that no .expected names"


@pytest.mark.parametrize("name", [_param(n, PENDING_INVALID) for n in INVALID_FILES])
def test_invalid_file(name, invalid_run):
    got, _ = invalid_run
    expected = read_expected(name)
    assert expected, f"{name}.expected lists nothing"

    def show(rows):
        return [(f"{f}:" if f else "") + f"{line}:{col} {code}" for f, line, col, code in rows]

    assert show(got[name]) == show(expected)


def test_every_code_has_an_invalid_file():
    """A code added to the catalogue without a corpus file fails here."""
    covered = {code for name in INVALID_FILES for *_, code in read_expected(name)}
    assert covered == set(CATALOGUE)


def test_invalid_corpus_in_process_agrees(monkeypatch):
    """flowdsl.check gives the same (line, col, code) lists as the CLI: a quick guard that
    the zipapp runs the same front end as the checkout."""
    monkeypatch.chdir(INVALID)
    for name in INVALID_FILES:
        if name in PENDING_INVALID or flow_args(name) or (name == "E011_unreadable.flow"
                                                         and not os.path.exists("/proc/self/mem")):
            continue
        loaded = flowdsl.check(name)
        rows = [(None if d.span.file == name else d.span.file, d.span.line, d.span.col, d.code)
                for d in loaded.diagnostics]
        assert rows == read_expected(name), name
