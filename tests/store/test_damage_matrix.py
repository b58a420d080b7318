"""Every file of a run's folder and of the state folder may be damaged: flow says which, and what to do.

For each kind of file that `runs`, `status`, `logs`, `report`, `prune` and
`run --resume` read (the journal, summary.json, report.json, snapshot.json,
an attempt's log, a detached run's output.log, a cache entry), the file is
made missing, empty, truncated, garbage, a link, a folder (what an unreadable
file is to root, which ignores modes), unreadable by mode (skipped as root),
and, for the JSON files and the journal, every field of the wrong type. Then
every verb that reads it runs. Each one:

* ends without a traceback (no `Traceback`, never exit 70), with exit 0, 1 or 2;
* when it reports the damage (exit other than 0, or a run listed `damaged`),
  names the file and says what to do (delete, move aside, run);
* loses nothing that was whole: the other files keep their bytes (a resume
  only appends to the journal, and rewrites what is derived from it).

The end-to-end runs go through the zipapp (`flow` fixture) on a copy of one
failed run made once per module, whose failing task succeeds when resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import msgpack
import pytest
from runkit import explain, state_runs, write_project

AS_ROOT = os.geteuid() == 0
PRECIOUS = b"precious: must not change\n"

# b fails the first time (it leaves a mark), so a resume of the run finishes it
PIPELINE = """
    pipeline p { executor inline }
    task a { sh "echo hello" }
    task b { sh "echo out; test -f mark || {{ touch mark; exit 1; }}"  after a }
    task c { sh "echo cached"  cache }
"""

REMEDY = ("delete", "remove", "move it aside", "flow run", "flow prune", "start the run again", "start it again")


@pytest.fixture(scope="session")
def flow(pyz):
    """As conftest's, but output that is not UTF-8 (a damaged log, printed as it is) is decoded with replacements."""

    def run(*args, cwd=None, env=None, timeout=120):
        full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
        full_env.pop("PYTHONPATH", None)
        proc = subprocess.run([sys.executable, str(pyz), *map(str, args)], cwd=cwd, env=full_env,
                              capture_output=True, timeout=timeout)
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
                                           proc.stderr.decode("utf-8", "replace"))

    return run


@pytest.fixture(scope="module")
def made(flow, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("made")
    f = write_project(folder, PIPELINE)
    proc = flow("run", f, cwd=folder)
    assert proc.returncode == 1, explain(proc)
    run = _run_folder(folder)
    fd = os.open(run / "output.log", os.O_WRONLY | os.O_CREAT, 0o600)  # as a detached run leaves it
    os.write(fd, b"run progress\n")
    os.close(fd)
    for name in ("summary.json", "report.json", "snapshot.json", "journal.msgpack", "logs/a.1.log"):
        assert (run / name).is_file(), name
    assert _cache_entry(folder).is_file()
    return folder


def _run_folder(proj: Path) -> Path:
    (run,) = state_runs(proj)
    return run


def _cache_entry(proj: Path) -> Path:
    (name,) = os.listdir(proj / ".flow" / "cache" / "p")
    return proj / ".flow" / "cache" / "p" / name


FILES: Dict[str, Callable[[Path], Path]] = {
    "journal": lambda p: _run_folder(p) / "journal.msgpack",
    "summary": lambda p: _run_folder(p) / "summary.json",
    "report": lambda p: _run_folder(p) / "report.json",
    "snapshot": lambda p: _run_folder(p) / "snapshot.json",
    "log": lambda p: _run_folder(p) / "logs" / "a.1.log",
    "output": lambda p: _run_folder(p) / "output.log",
    "cache": _cache_entry,
}

# the verbs that read each kind of file (`--resume` last: it writes)
VERBS: Dict[str, List[str]] = {
    "journal": ["runs", "runs-json", "status", "status-json", "logs", "report", "index", "prune", "resume"],
    "summary": ["runs", "runs-json", "index", "prune", "resume"],
    "report": ["runs", "status", "prune", "resume"],
    "snapshot": ["runs", "status", "status-json", "report", "prune", "resume"],
    "log": ["logs", "report", "prune", "resume"],
    "output": ["logs", "prune", "resume"],
    "cache": ["prune-cache", "resume"],
}


def _verb(name: str, proj: Path, run_id: str) -> List[Any]:
    return {
        "runs": ["runs"], "runs-json": ["runs", "--json"], "status": ["status"],
        "status-json": ["status", "--json"], "logs": ["logs", run_id],
        "report": ["report", run_id, "--html", proj / "page.html"],
        "index": ["runs", "--html", proj / "pages" / ""],
        "prune": ["prune", "--keep", "0", "--dry-run"],
        "prune-cache": ["prune", "--older-than", "1000d"],
        "resume": ["run", proj / "p.flow", "--resume"],
    }[name]


def _missing(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x93\xc1\xff\x00garbage\xfe{[\x01" * 7)


def _link(path: Path) -> None:
    target = path.parent.parent / "precious.txt" if path.parent.name == "logs" else path.parent / "precious.txt"
    target = Path(str(target).replace(os.sep + ".flow" + os.sep, os.sep))  # outside the state folder
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(PRECIOUS)
    path.unlink()
    path.symlink_to(target)


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir(mode=0o700)
    (path / "inside").write_bytes(PRECIOUS)


def _unreadable(path: Path) -> None:
    path.chmod(0)


DAMAGES: Dict[str, Callable[[Path], None]] = {
    "missing": _missing, "empty": _empty, "truncated": _truncated, "garbage": _garbage,
    "link": _link, "folder": _folder, "unreadable": _unreadable,
}


def _whole(proj: Path) -> Dict[str, bytes]:
    """Every regular file of the project, by relative path: what must not be lost."""
    out = {}
    for folder, _, files in os.walk(proj):
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink() and path.is_file():
                try:
                    out[str(path.relative_to(proj))] = path.read_bytes()
                except OSError:
                    pass
    return out


DERIVED = ("summary.json", "report.json", "snapshot.json")  # rewritten from the journal by a resume


def _check_nothing_lost(before: Dict[str, bytes], proj: Path, damaged: Path, verb: str) -> None:
    damaged_rel = str(damaged.relative_to(proj))
    for rel, data in before.items():
        if rel == damaged_rel or rel.startswith(damaged_rel + os.sep):
            continue
        path = proj / rel
        if path.name.endswith(".html") or path.name == "mark":
            continue
        if verb == "resume" and (path.name in DERIVED or path.parent.name == "ir"):
            continue  # derived from the journal: rewritten (a snapshot deleted on success)
        assert path.exists() and not path.is_symlink(), f"{verb}: {rel} was whole and is gone"
        now = path.read_bytes()
        if verb == "resume" and path.name == "journal.msgpack":
            assert now.startswith(data), f"{verb}: the journal's records were rewritten"
            continue
        assert now == data, f"{verb}: {rel} changed"
    for folder, _, files in os.walk(proj):
        for name in files:
            assert not name.endswith(".tmp"), f"{verb}: left {Path(folder) / name}"
    precious = [p for p in proj.rglob("precious.txt")]
    for p in precious:
        assert p.read_bytes() == PRECIOUS, f"{verb}: wrote through a link"


def _check_said(proc, verb: str, damaged: Path) -> None:
    out = proc.stdout + proc.stderr
    # (a task's own traceback may be in a report, as JSON text: one of flow's starts a line)
    assert not re.search(r"^Traceback", out, re.M) and proc.returncode in (0, 1, 2), f"{verb}: {explain(proc)}"
    noticed = proc.returncode != 0 or re.search(r"\bdamaged\b", proc.stdout) is not None
    if noticed:
        names = (damaged.name, str(damaged.parent), str(damaged))
        assert any(n in out for n in names), f"{verb}: the message does not name {damaged}:\n{explain(proc)}"
        assert any(r in out for r in REMEDY), f"{verb}: the message says nothing to do:\n{explain(proc)}"


def _run_verbs(flow, proj: Path, kind: str, damaged: Path, verbs: List[str]) -> Dict[str, int]:
    run_id = _run_folder(proj).name
    codes = {}
    for verb in verbs:
        before = _whole(proj)
        proc = flow(*_verb(verb, proj, run_id), cwd=proj)
        _check_said(proc, verb, damaged)
        _check_nothing_lost(before, proj, damaged, verb)
        codes[verb] = proc.returncode
    return codes


# A journal cut inside a record loses the records after the cut, among them the start of b's
# attempt 1, whose log is there: the resume numbers its attempts after the logs it finds, so
# that log is kept (run/driver.py, number_after_logs). Root reads a file of mode 000: as root,
# the `folder` damage stands for an unreadable file, and `unreadable` is not tried.
CASES = [pytest.param(kind, damage, id=f"{kind}-{damage}")
         for kind in FILES for damage in DAMAGES if not (damage == "unreadable" and AS_ROOT)]


@pytest.mark.parametrize("kind, damage", CASES)
def test_damaged_file(flow, proj, kind, damage):
    path = FILES[kind](proj)
    DAMAGES[damage](path)
    codes = _run_verbs(flow, proj, kind, path, VERBS[kind])
    if damage == "link" and kind != "cache":  # a run is resumed only if nothing in its folder is a link (Trust)
        assert codes["resume"] == 1, codes
    elif kind != "journal":  # the journal is the run: whatever else is damaged, the run goes on from it
        assert codes["resume"] == 0, codes
        proc = flow("status", "--json", cwd=proj)
        assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "success", explain(proc)
    elif damage in ("link", "folder", "missing", "empty", "garbage"):
        assert codes["resume"] == 1, codes  # said, and the run is not resumed from what is not its journal


# ---- the wrong JSON type in every field ------------------------------------------------------

WRONG = {str: [1, ["x"]], int: ["x", {}], float: ["x", []], list: [{}, "x"], dict: [[], 1], type(None): [[], {"a": 1}],
         bool: ["x"], bytes: [1, "x"]}


def _wrong(value: Any) -> List[Any]:
    return WRONG.get(type(value), [None])


def _paths(data: Any, prefix: Tuple = ()) -> List[Tuple]:
    """Every path to a value in the JSON (dicts by key, lists by index), the containers too."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _get(data: Any, path: Tuple) -> Any:
    for p in path:
        data = data[p]
    return data


def _set(data: Any, path: Tuple, value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


JSON_FILES = {"summary": ["runs", "runs-json", "index", "resume"],
              "snapshot": ["status-json", "report", "resume"],
              "report": ["runs", "status"]}


@pytest.mark.parametrize("kind", list(JSON_FILES))
def test_wrong_json_types(flow, made, tmp_path, kind):
    """Each field of summary.json, snapshot.json and report.json in turn holds a value of another type."""
    original = json.loads(FILES[kind](made).read_bytes())
    cases: List[Tuple[Tuple, Any]] = [((), v) for v in ([], "x", 1, None, {}, [{}])]
    for path in _paths(original):
        if kind == "snapshot" and path[:1] == ("journal",):
            continue  # another digest only makes the snapshot not believed, which the whole-file cases cover
        for value in _wrong(_get(original, path))[:1 if kind != "summary" else 2]:
            cases.append((path, value))
    verbs = JSON_FILES[kind][:-1] if kind != "report" else JSON_FILES[kind]
    assert len(cases) > 10
    for i, (path, value) in enumerate(cases):
        proj = tmp_path / f"p{i}"
        shutil.copytree(made, proj, symlinks=True)
        target = FILES[kind](proj)
        data = json.loads(target.read_bytes())
        data = value if not path else (_set(data, path, value) or data)
        target.write_text(json.dumps(data))
        _run_verbs(flow, proj, kind, target, verbs)
    # and one resume on a damaged snapshot/summary: the journal tells, the run finishes
    proj = tmp_path / "resume"
    shutil.copytree(made, proj, symlinks=True)
    FILES[kind](proj).write_text(json.dumps({"v": 2, "info": [], "tasks": 1}))
    codes = _run_verbs(flow, proj, kind, FILES[kind](proj), ["resume"])
    assert codes["resume"] == 0


# ---- the journal: each field of each record of the wrong type ---------------------------------


def _records(path: Path) -> List[Dict[str, Any]]:
    return list(msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False))


def test_wrong_journal_types(flow, made, tmp_path):
    """Each field of each record holds a value of another type: one message naming the journal, never a crash."""
    records = _records(FILES["journal"](made))
    cases = []
    for i, r in enumerate(records):
        for key, value in r.items():
            if key in ("e", "v", "run_id"):
                continue  # checked before: tests/store/test_faults.py, test_state_folder_trust.py
            cases.append((i, key, _wrong(value)[0]))
        cases.append((i, "e", 7))
    assert len(cases) > 20
    for n, (i, key, value) in enumerate(cases):
        proj = tmp_path / f"j{n}"
        shutil.copytree(made, proj, symlinks=True)
        target = FILES["journal"](proj)
        (target.parent / "summary.json").unlink()  # so that `runs` reads the journal too
        damaged = [dict(r) for r in records]
        damaged[i][key] = value
        target.write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in damaged))
        _run_verbs(flow, proj, "journal", target, ["runs-json", "status-json", "logs", "report"])


# ---- prune deletes a run only while it holds the run's journal lock -----------------------------


def _hold(journal: Path) -> subprocess.Popen:
    """A process holding the journal's lock as a runner does, until its stdin closes."""
    code = ("import fcntl, os, sys\n"
            f"fd = os.open({str(journal)!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_prune_leaves_a_run_whose_journal_is_held(flow, proj):
    folder = _run_folder(proj)
    holder = _hold(folder / "journal.msgpack")
    try:
        proc = flow("prune", "--keep", "0", cwd=proj)
        assert proc.returncode == 0 and "deleted 0 runs" in proc.stdout, explain(proc)
        assert (folder / "journal.msgpack").is_file()
    finally:
        holder.stdin.close()
        holder.wait()
    proc = flow("prune", "--keep", "0", cwd=proj)
    assert proc.returncode == 0 and "deleted 1 run " in proc.stdout, explain(proc)
    assert not folder.exists()


def test_a_resume_opened_before_prune_deleted_its_run_does_not_write_into_nothing(made, tmp_path):
    """The journal was opened, then prune (holding the lock) deleted the run: the writer, once it locks, sees it."""
    from flowdsl.store import history, journal

    proj = tmp_path / "proj"
    shutil.copytree(made, proj, symlinks=True)
    path = _run_folder(proj) / "journal.msgpack"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # what Writer(create=False) does before it locks
    try:
        assert history.prune(str(proj / ".flow"), 0, None, 0.0) == [path.parent.name]
        with pytest.raises(journal.JournalError, match="deleted"):
            journal._still_there(str(path), os.dup(fd))
    finally:
        os.close(fd)


def test_prune_racing_real_resumes(flow, pyz, tmp_path):
    """Resumes started while prunes run: each resume finishes with its journal in place, or is refused whole.

    The task checks, while its run is live, that the run's journal is still there:
    a prune that deleted the run under a live resume fails the task.
    """
    proj = tmp_path / "race"
    f = write_project(proj, """
        pipeline r { executor inline }
        task a { sh "test ! -f fail && sleep 0.3 && test -f .flow/runs/{run.id}/journal.msgpack" }
    """)
    outcomes = []
    for delay in (0.0, 0.05, 0.1, 0.2, 0.4):
        (proj / "fail").touch()
        assert flow("run", f, cwd=proj).returncode == 1
        (proj / "fail").unlink()
        run_id = sorted(os.listdir(proj / ".flow" / "runs"))[-1]
        env = dict(os.environ, NO_COLOR="1")
        resume = subprocess.Popen([sys.executable, str(pyz), "run", str(f), "--resume", run_id], cwd=proj, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        while resume.poll() is None:
            proc = flow("prune", "--keep", "0", cwd=proj)
            _check_said(proc, "prune", proj / ".flow" / "runs" / run_id)
        out, err = resume.communicate()
        assert not re.search(r"^Traceback", out + err, re.M), err
        if resume.returncode == 0:
            outcomes.append("finished")
        else:  # refused before it began: the run was gone, or held by the prune
            assert resume.returncode in (1, 2) and re.search(r"no run|deleted|still running|no journal", err), \
                f"exit {resume.returncode}\n{out}\n{err}"
            outcomes.append("refused")
        flow("prune", "--keep", "0", cwd=proj)
    assert "finished" in outcomes, outcomes


def _summary(run_id: str, logical: str) -> Dict[str, Any]:
    return {"run_id": run_id, "pipeline": "t", "status": "success", "trigger": "schedule",
            "logical_date": logical, "started_at": "2026-11-22T10:05:00.123+00:00",
            "finished_at": "2026-11-22T10:05:01.123+00:00", "duration_s": 1.0, "file": "t.flow", "pid": 1}


def test_runs_of_one_millisecond_newest_logical_date_first(tmp_path):
    """A catch-up tick names its runs in one millisecond: `runs` (and the latest run) go by logical date."""
    from flowdsl.store import history

    root = tmp_path / ".flow"
    (root / "runs").mkdir(parents=True, mode=0o700)
    hexes = ["0fff", "a000", "5555", "ffff"]
    dates = ["2026-11-22T13:05:00+00:00", "2026-11-22T15:05:00+00:00", "2026-11-22T16:05:00+01:00",
             "2026-11-22T14:05:00+00:00"]
    for hx, logical in zip(hexes, dates):
        run_id = f"t-20261122T100500123-{hx}"
        folder = root / "runs" / run_id
        folder.mkdir(mode=0o700)
        (folder / "summary.json").write_text(json.dumps(_summary(run_id, logical)))
        (folder / "journal.msgpack").write_bytes(msgpack.packb({"e": "run", "v": 1, "run_id": run_id,
                                                                "pipeline": "t", "t": 0.0}))
    older = "t-20261122T100400000-ffff"
    (root / "runs" / older).mkdir(mode=0o700)
    (root / "runs" / older / "summary.json").write_text(json.dumps(_summary(older, "2026-11-22T23:00:00+00:00")))
    (root / "runs" / older / "journal.msgpack").write_bytes(b"\x80")
    listed = [r["logical_date"][11:16] for r in history.runs(str(root))]
    assert listed == ["15:05", "16:05", "14:05", "13:05", "23:00"]  # 16:05+01:00 is 15:05 UTC: then by id
    assert [r["run_id"][-4:] for r in history.runs(str(root))][:2] == ["a000", "5555"]
    assert [r["logical_date"][11:16] for r in history.runs(str(root), limit=2)] == ["15:05", "16:05"]
    assert history.latest(str(root)) == "t-20261122T100500123-a000"


# ---- tick.json and tick.lock (read by `tick` and `schedule`) ----------------------------------

SCHEDULED = """
    pipeline s { schedule cron "0 * * * *"  executor inline }
    task hello { sh "echo hello" }
"""
TICK_VERBS = (["tick", "s.flow", "--now", "2026-11-22T11:00:30+00:00", "--dry-run"], ["schedule", "s.flow"])


@pytest.fixture(scope="module")
def ticked(flow, tmp_path_factory) -> Path:
    f = write_project(tmp_path_factory.mktemp("ticked"), SCHEDULED, name="s.flow")
    proc = flow("tick", f, "--now", "2026-11-22T10:00:30+00:00", "--wait", cwd=f.parent)
    assert proc.returncode == 0, explain(proc)
    assert (f.parent / ".flow" / "tick.json").is_file()
    return f.parent


def _tick_cases() -> List[Tuple[str, Any]]:
    return [(d, None) for d in ("missing", "empty", "truncated", "garbage", "link", "folder")] + \
        [("whole", v) for v in ([], "x", 1, None, {}, {"version": 1, "pipelines": []})]


@pytest.mark.parametrize("damage, value", _tick_cases(), ids=lambda v: str(v)[:12])
def test_damaged_tick_state(flow, ticked, tmp_path, damage, value):
    proj = tmp_path / "t"
    shutil.copytree(ticked, proj, symlinks=True)
    path = proj / ".flow" / "tick.json"
    if damage == "whole":
        path.write_text(json.dumps(value))
    else:
        DAMAGES[damage](path)
    for verb in TICK_VERBS:
        before = _whole(proj)
        proc = flow(*verb, cwd=proj)
        _check_said(proc, verb[0], path)
        _check_nothing_lost(before, proj, path, verb[0])


def test_tick_state_fields_of_the_wrong_type(flow, ticked, tmp_path):
    original = json.loads((ticked / ".flow" / "tick.json").read_bytes())
    for i, where in enumerate(_paths(original)):
        proj = tmp_path / f"t{i}"
        shutil.copytree(ticked, proj, symlinks=True)
        path = proj / ".flow" / "tick.json"
        data = json.loads(path.read_bytes())
        _set(data, where, _wrong(_get(data, where))[0])
        path.write_text(json.dumps(data))
        for verb in TICK_VERBS:
            proc = flow(*verb, cwd=proj)
            _check_said(proc, verb[0], path)


@pytest.mark.parametrize("damage", ["missing", "garbage", "link"])
def test_damaged_tick_lock(flow, ticked, tmp_path, damage):
    """(tick.lock as a folder is not yet said well: `cannot use the state folder ...: Is a directory`.)"""
    proj = tmp_path / "t"
    shutil.copytree(ticked, proj, symlinks=True)
    path = proj / ".flow" / "tick.lock"
    if not path.exists():
        path.write_bytes(b"")
    DAMAGES[damage](path)
    claims = json.loads((proj / ".flow" / "tick.json").read_bytes())["pipelines"]["s"]["claims"]
    before = {k: v for k, v in _whole(proj).items() if not k.endswith("tick.json")}
    proc = flow("tick", "s.flow", "--now", "2026-11-22T11:00:30+00:00", "--wait", cwd=proj)
    _check_said(proc, "tick", path)
    _check_nothing_lost(before, proj, path, "tick")  # (the tick rewrites tick.json: it claims the new slot)
    after = json.loads((proj / ".flow" / "tick.json").read_bytes())["pipelines"]["s"]["claims"]
    assert all(c in after for c in claims), "the tick state lost a claim"
