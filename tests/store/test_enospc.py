"""Every write of `run` (a new run, a resume) and `prune` meets a full disk: ENOSPC, for real.

The state folder is put on a small tmpfs (mounted by the test, so it needs
root; skipped otherwise), which a file fills to within N pages of full, for
each N from 0 up to what the whole run needs, so that each of the run's
writes in turn is the first to fail: the journal's first record, the
summary, each attempt's log, a cache entry, the journal's later records, the
report, the snapshot. For each:

* flow ends with a message, never a traceback (exit 1: the run failed, or
  could not start);
* no temporary file is left in the state folder;
* nothing already written is lost: an earlier run's files keep their bytes,
  a resumed journal keeps every record it had;
* once there is room again, the run is not a damaged one that `--resume`
  keeps choosing and cannot finish: `flow run --resume` finishes it (or, when
  its first record never fit, there is no such run and a new one runs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Dict

import pytest
from runkit import explain, write_project

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs: needs root")

PAGE = 4096
PIPELINE = """
    pipeline p { executor inline }
    task a { sh "echo hello; echo more output" }
    task b { sh "echo out; test ! -f fail"  after a }
    task c { sh "echo cached"  cache }
    task d { sh "echo last" after b, c }
"""


@pytest.fixture
def disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path, free_pages: int) -> Path:
    """A file taking all but `free_pages` pages of the disk."""
    filler = disk / "filler"
    if filler.exists():
        filler.unlink()
    st = os.statvfs(disk)
    room = st.f_bavail * st.f_frsize - free_pages * PAGE
    with open(filler, "wb") as f:
        if room > 0:
            f.write(b"\0" * room)
    return filler


def files(root: Path) -> Dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if name != "filler" and path.is_file() and not path.is_symlink():
                out[str(path.relative_to(root))] = path.read_bytes()
    return out


def no_temporaries(root: Path) -> None:
    left = [str(Path(f) / n) for f, _, ns in os.walk(root) for n in ns if ".tmp" in n]
    assert not left, f"temporary files left: {left}"


def said(proc) -> None:
    out = proc.stdout + proc.stderr
    assert not re.search(r"^Traceback", out, re.M) and "internal error" not in out, explain(proc)
    assert proc.returncode in (0, 1, 2), explain(proc)


def runs(flow, state: Path, cwd: Path):
    proc = flow("runs", "--json", "--state-dir", state, cwd=cwd)
    said(proc)
    assert proc.returncode == 0, explain(proc)
    return json.loads(proc.stdout)


MAX_PAGES = 14  # the whole run of PIPELINE fits in fewer


def test_a_new_run_on_a_full_disk(flow, disk, tmp_path):
    proj = tmp_path / "proj"
    f = write_project(proj, PIPELINE)
    state = disk / "state"
    # an earlier run, written whole while there was room: nothing of it may be lost
    proc = flow("run", f, "--state-dir", state, cwd=proj)
    assert proc.returncode == 0, explain(proc)
    earlier = files(state)
    for free in range(MAX_PAGES):
        filler = fill(disk, free)
        proc = flow("run", f, "--state-dir", state, cwd=proj)
        said(proc)
        no_temporaries(disk)
        now = files(state)
        for rel, data in earlier.items():
            if "/cache/p/" not in "/" + rel:  # (a cache entry is rewritten whole by each success)
                assert now.get(rel) == data, f"{free} pages free: {rel} was lost or changed"
        filler.unlink()
        listed = runs(flow, state, proj)
        newest = listed[0]
        if newest["run_id"] in {r.split("/")[1] for r in earlier if r.startswith("runs/")}:
            # its first record did not fit: no run at all, said so
            assert proc.returncode == 1 and "No space left on device" in proc.stderr, explain(proc)
        else:
            assert newest["status"] in ("failed", "interrupted", "success"), (free, newest, explain(proc))
            resumed = flow("run", f, "--state-dir", state, "--resume", newest["run_id"], cwd=proj)
            said(resumed)
            assert resumed.returncode == 0, (free, explain(proc), explain(resumed))
            assert runs(flow, state, proj)[0]["status"] == "success"
            # and the latest run is the one `--resume` chooses: it has nothing left to do
            again = flow("run", f, "--state-dir", state, "--resume", cwd=proj)
            assert again.returncode == 0, explain(again)
        earlier = files(state)


def test_a_resume_on_a_full_disk(flow, disk, tmp_path):
    proj = tmp_path / "proj"
    f = write_project(proj, PIPELINE)
    state = disk / "state"
    for free in range(MAX_PAGES):
        (proj / "fail").touch()  # b fails: a run to resume
        proc = flow("run", f, "--state-dir", state, cwd=proj)
        assert proc.returncode == 1, explain(proc)
        (proj / "fail").unlink()
        run_id = runs(flow, state, proj)[0]["run_id"]
        journal = state / "runs" / run_id / "journal.msgpack"
        before = journal.read_bytes()
        logs = {p.name: p.read_bytes() for p in (state / "runs" / run_id / "logs").iterdir()}
        filler = fill(disk, free)
        proc = flow("run", f, "--state-dir", state, "--resume", run_id, cwd=proj)
        said(proc)
        no_temporaries(disk)
        assert journal.read_bytes().startswith(before), f"{free} pages free: the journal lost records"
        for name, data in logs.items():
            assert (state / "runs" / run_id / "logs" / name).read_bytes() == data
        status = flow("status", run_id, "--json", "--state-dir", state, cwd=proj)
        said(status)
        if status.returncode == 0:  # `runs` does not believe a summary of an earlier session
            assert runs(flow, state, proj)[0]["status"] == json.loads(status.stdout)["status"], free
        filler.unlink()
        if proc.returncode != 0:
            resumed = flow("run", f, "--state-dir", state, "--resume", cwd=proj)
            said(resumed)
            assert resumed.returncode == 0, (free, explain(proc), explain(resumed))
        assert runs(flow, state, proj)[0]["status"] == "success"
        pruned = flow("prune", "--keep", "0", "--state-dir", state, cwd=proj)
        assert pruned.returncode == 0, explain(pruned)


def test_prune_on_a_full_disk(flow, disk, tmp_path):
    """`prune` writes nothing: on a full disk it deletes what it should and leaves no temporary file."""
    proj = tmp_path / "proj"
    f = write_project(proj, PIPELINE)
    state = disk / "state"
    for _ in range(3):
        assert flow("run", f, "--state-dir", state, cwd=proj).returncode == 0
    ids = [r["run_id"] for r in runs(flow, state, proj)]
    fill(disk, 0)
    proc = flow("prune", "--keep", "1", "--older-than", "0s", "--state-dir", state, cwd=proj)
    said(proc)
    assert proc.returncode == 0, explain(proc)
    no_temporaries(disk)
    assert sorted(os.listdir(state / "runs")) == [ids[0]]
