"""The state folder is trusted only when it is private, and nothing in it leads elsewhere.

* A state folder (and its `runs/`, `cache/`, a run's folder, its `logs/`) that
  another user owns or others can write to is refused: exit 2 for the state
  folder itself, damage for what is inside it. One flow did not create is
  never chmod'ed; one it creates is 0700. An existing 0755 folder of our own
  is accepted as it is (nobody else can write to it; what flow puts inside is
  0700 and 0600 all the same).
* Nothing inside is followed: a file or folder planted as a symbolic link is
  refused (read, appended to, resumed), or replaced when flow rewrites the
  file whole (rename over it); what it points at is never touched.
* A run id read from a file (tick claims, summaries, journals) that is not a
  run id is damage: one line, never a path outside the state folder.
* A crash report is private (0600, a name nobody can guess) and says where it is.

The end-to-end tests go through the zipapp (`flow` fixture) and work on a copy
of one failed run made once per module; they run as root in CI, and "another
user" is uid 65534 (nobody).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import msgpack
import pytest
from runkit import explain, state_runs, write_project

from flowdsl.run import capture, exitcodes
from flowdsl.schedule import tickstate
from flowdsl.store import checkpoint, journal, state

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a folder of another user")
NOBODY = 65534
PRECIOUS = "precious: must not change\n"

PIPELINE = """
    pipeline p { executor inline }
    task a { sh "echo hello" }
    task b { sh "echo out; exit 1"  after a }
    task c { sh "echo cached"  cache }
"""

SCHEDULED = """
    pipeline s { schedule cron "0 * * * *"  executor inline }
    task hello { sh "echo hello" }
"""


@pytest.fixture(scope="module")
def made(flow, tmp_path_factory) -> Path:
    """A project whose state folder holds one failed (resumable) run of `p`, and a cache entry."""
    folder = tmp_path_factory.mktemp("made")
    f = write_project(folder, PIPELINE)
    proc = flow("run", f, cwd=folder)
    assert proc.returncode == 1, explain(proc)
    return folder


def run_folder(proj: Path) -> Path:
    (run,) = state_runs(proj)
    return run


def run_id_of(proj: Path) -> str:
    return run_folder(proj).name


@pytest.fixture
def outside(tmp_path) -> Path:
    path = tmp_path / "outside.txt"
    path.write_text(PRECIOUS)
    return path


def untouched(path: Path) -> None:
    assert path.read_text() == PRECIOUS and not path.is_symlink()


def said(proc, *words, code=None) -> None:
    """The command ended with `code` (if given), saying each of `words` on stderr, with no traceback."""
    assert "Traceback" not in proc.stderr + proc.stdout and "internal error" not in proc.stderr, explain(proc)
    if code is not None:
        assert proc.returncode == code, explain(proc)
    for w in words:
        assert w in proc.stderr, explain(proc)


def plant_link(path: Path, target: Path) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def tree(folder: Path) -> dict:
    """Every path below `folder` with its bytes (files) or None (folders), links not followed."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            out[str(p.relative_to(folder))] = None if p.is_dir() else p.read_bytes()
    return out


# ---- the state folder itself -----------------------------------------------------------------------------------


def every_verb(flow, proj: Path, state_dir: Path, run_id: str):
    """Each verb that reads or writes state, pointed at `state_dir`: (name, CompletedProcess)."""
    f = proj / "p.flow"
    s = ("--state-dir", state_dir)
    yield "run", flow("run", f, *s, cwd=proj)
    yield "run --resume", flow("run", f, "--resume", *s, cwd=proj)
    yield "tick", flow("tick", proj, "--now", "2026-11-22T10:00:30Z", *s, cwd=proj)
    yield "runs", flow("runs", *s, cwd=proj)
    yield "status", flow("status", run_id, *s, cwd=proj)
    yield "logs", flow("logs", run_id, *s, cwd=proj)
    yield "report", flow("report", "--html", proj / "page.html", *s, cwd=proj)
    yield "prune", flow("prune", "--keep", "0", *s, cwd=proj)


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o770], ids=["sticky-like-tmp", "world-writable", "group-writable"])
def test_a_state_folder_others_can_write_to_is_refused_by_every_verb_and_left_as_it_was(flow, proj, mode):
    shared = proj / "shared"
    shutil.copytree(proj / ".flow", shared)
    shared.chmod(mode)
    before = tree(shared)
    for verb, proc in every_verb(flow, proj, shared, run_id_of(proj)):
        said(proc, f"the state folder {shared} is writable by other users", code=2)
        assert stat.S_IMODE(shared.stat().st_mode) == mode, verb  # never chmod'ed: others keep their access
    assert tree(shared) == before  # nothing read into it, nothing written
    proc = flow("status", cwd=proj, env={"FLOW_STATE_DIR": str(shared)})
    said(proc, "writable by other users", code=2)


def test_the_message_for_a_shared_folder_like_tmp_says_to_use_one_of_your_own(flow, proj):
    shared = proj / "tmp-like"
    shared.mkdir()
    shared.chmod(0o1777)
    proc = flow("runs", "--state-dir", shared, cwd=proj)
    said(proc, f"flow runs: error: the state folder {shared} is writable by other users (mode 1777)",
         "use a folder of your own", code=2)
    assert "chmod" not in proc.stderr  # never advise locking others out of a shared folder


def test_a_state_folder_beside_the_file_that_others_can_write_to_is_refused(flow, proj):
    (proj / ".flow").chmod(0o777)
    proc = flow("run", proj / "p.flow", cwd=proj)
    said(proc, f"the state folder {proj / '.flow'} is writable by other users (mode 777)", "chmod go-w", code=2)
    assert stat.S_IMODE((proj / ".flow").stat().st_mode) == 0o777


@AS_ROOT
@pytest.mark.parametrize("mode", [0o700, 0o755])
def test_a_state_folder_of_another_user_is_refused_by_every_verb(flow, proj, mode):
    theirs = proj / "theirs"
    shutil.copytree(proj / ".flow", theirs)
    for root, dirs, files in os.walk(theirs):
        for name in [root] + [os.path.join(root, n) for n in dirs + files]:
            os.chown(name, NOBODY, NOBODY)
    theirs.chmod(mode)
    before = tree(theirs)
    for verb, proc in every_verb(flow, proj, theirs, run_id_of(proj)):
        said(proc, f"the state folder {theirs} belongs to", f"(uid {NOBODY}), not to you", code=2)
        st = theirs.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, mode), verb
    assert tree(theirs) == before


@AS_ROOT
@pytest.mark.parametrize("inner", ["runs", "cache"])
def test_runs_or_cache_of_another_user_is_refused(flow, proj, inner):
    os.chown(proj / ".flow" / inner, NOBODY, NOBODY)
    proc = flow("runs", cwd=proj, env={"FLOW_STATE_DIR": str(proj / ".flow")})
    said(proc, f"the folder {proj / '.flow' / inner} belongs to", code=2)
    proc = flow("run", proj / "p.flow", cwd=proj)
    said(proc, f"the folder {proj / '.flow' / inner} belongs to", code=2)


@pytest.mark.parametrize("inner", ["runs", "cache"])
def test_runs_or_cache_that_others_can_write_to_is_refused(flow, proj, inner):
    (proj / ".flow" / inner).chmod(0o777)
    proc = flow("run", proj / "p.flow", cwd=proj)
    said(proc, f"the folder {proj / '.flow' / inner} is writable by other users", code=2)
    assert stat.S_IMODE((proj / ".flow" / inner).stat().st_mode) == 0o777


def test_a_state_folder_that_is_a_file_is_refused(flow, proj):
    (proj / "file").write_text("")
    proc = flow("runs", "--state-dir", proj / "file", cwd=proj)
    said(proc, f"the state folder {proj / 'file'} is not a folder", code=2)


def test_an_existing_folder_of_our_own_that_others_cannot_write_to_is_used_as_it_is(flow, tmp_path):
    """0755 is accepted and stays 0755 (flow did not create it); what flow creates inside is private."""
    f = write_project(tmp_path, PIPELINE)
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o755)
    proc = flow("run", f, "--state-dir", mine, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, explain(proc)
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755
    for root, dirs, files in os.walk(mine):
        for name in dirs:
            assert stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode) == 0o700, (root, name)
        for name in files:
            assert stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode) == 0o600, (root, name)
    proc = flow("runs", "--state-dir", mine, "--json", cwd=tmp_path)
    assert proc.returncode == 0 and [r["status"] for r in json.loads(proc.stdout)] == ["failed"], explain(proc)


def test_a_state_folder_flow_creates_is_private_whatever_the_umask(flow, tmp_path):
    f = write_project(tmp_path, PIPELINE)
    old = os.umask(0)  # the child inherits it
    try:
        proc = flow("run", f, "--state-dir", tmp_path / "deep" / "new", cwd=tmp_path)
    finally:
        os.umask(old)
    assert proc.returncode == 1, explain(proc)
    for root, _dirs, files in os.walk(tmp_path / "deep" / "new"):
        assert stat.S_IMODE(os.lstat(root).st_mode) == 0o700, root
        for name in files:
            assert stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode) == 0o600, (root, name)


def test_a_state_folder_that_is_a_link_is_the_folder_it_leads_to_checked_as_such(flow, proj, tmp_path):
    real = tmp_path / "real-state"
    shutil.move(str(proj / ".flow"), real)
    (proj / ".flow").symlink_to(real)
    proc = flow("runs", "--json", cwd=proj, env={"FLOW_STATE_DIR": str(proj / ".flow")})
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["status"] == "failed", explain(proc)
    real.chmod(0o777)
    proc = flow("runs", cwd=proj, env={"FLOW_STATE_DIR": str(proj / ".flow")})
    said(proc, f"the state folder {real} is writable by other users", code=2)


# ---- files planted as links --------------------------------------------------------------------------------------


RUN_FILES = ["journal.msgpack", "summary.json", "report.json", "snapshot.json", "output.log",
             "logs/b.1.log", "logs/b.2.log"]  # b.2.log: the log the resumed attempt would append to


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_resume_refuses_a_run_holding_a_link_and_leaves_its_target_alone(flow, proj, outside, name):
    link = run_folder(proj) / name
    plant_link(link, outside)
    proc = flow("run", proj / "p.flow", "--resume", cwd=proj)
    said(proc, f"{link} is a symbolic link", code=1)
    untouched(outside)
    assert link.is_symlink()


def test_a_detached_resume_refuses_a_linked_output_log(flow, proj, outside):
    link = run_folder(proj) / "output.log"
    plant_link(link, outside)
    proc = flow("run", proj / "p.flow", "--resume", "--detach", cwd=proj)
    said(proc, f"{link} is a symbolic link", code=1)
    untouched(outside)


def test_a_linked_journal_is_damage_for_every_verb_that_reads_it(flow, proj, outside):
    run_id = run_id_of(proj)
    link = run_folder(proj) / "journal.msgpack"
    for other in ("summary.json", "snapshot.json"):  # so that the journal is what tells
        (run_folder(proj) / other).unlink()
    plant_link(link, outside)
    msg = f"{link} is a symbolic link"
    said(flow("status", run_id, cwd=proj), msg, code=1)
    said(flow("logs", run_id, cwd=proj), msg, code=1)
    said(flow("report", run_id, "--html", proj / "r.html", cwd=proj), msg, code=1)
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0, explain(proc)
    (line,) = json.loads(proc.stdout)
    assert line["status"] == "damaged" and msg in line["error"]
    untouched(outside)


def test_flow_logs_does_not_print_a_linked_log(flow, proj, outside):
    run_id = run_id_of(proj)
    link = run_folder(proj) / "logs" / "b.1.log"
    plant_link(link, outside)
    proc = flow("logs", run_id, cwd=proj)
    said(proc, f"flow logs: error: {link} is a symbolic link", code=1)
    assert "hello" in proc.stdout and "precious" not in proc.stdout  # the others are shown, not the link's target
    proc = flow("logs", run_id, "b", cwd=proj)
    said(proc, "is a symbolic link", code=1)
    assert "precious" not in proc.stdout
    untouched(outside)


def test_the_html_report_does_not_show_a_linked_log(flow, proj, outside):
    run_id = run_id_of(proj)
    plant_link(run_folder(proj) / "logs" / "b.1.log", outside)
    page = proj / "page.html"
    proc = flow("report", run_id, "--html", page, cwd=proj)
    said(proc)
    text = page.read_text()
    assert "precious" not in text and "hello" in text  # the other logs' tails are there, not the link's target
    untouched(outside)


@pytest.mark.parametrize("name", ["summary.json", "snapshot.json"])
def test_a_linked_summary_or_snapshot_is_not_believed_the_journal_tells(flow, proj, tmp_path, name):
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps({"run_id": run_id_of(proj), "status": "success", "pipeline": "p"}))
    plant_link(run_folder(proj) / name, fake)
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["status"] == "failed", explain(proc)
    proc = flow("status", "--json", cwd=proj)
    assert proc.returncode == 0 and json.loads(proc.stdout)["status"] == "failed", explain(proc)


def test_a_fifo_planted_as_a_log_does_not_hang_flow_logs(flow, proj):
    fifo = run_folder(proj) / "logs" / "b.1.log"
    fifo.unlink()
    os.mkfifo(fifo)
    proc = flow("logs", run_id_of(proj), timeout=30, cwd=proj)
    said(proc, f"{fifo} is not a regular file", code=1)


@pytest.mark.parametrize("name", ["tick.json", "tick.lock"])
def test_a_linked_tick_state_or_lock_stops_that_folder_and_is_left_alone(flow, tmp_path, outside, name):
    f = write_project(tmp_path / "sched", SCHEDULED, name="s.flow")
    proc = flow("tick", f.parent, "--now", "2026-11-22T09:30:00Z", cwd=f.parent)
    assert proc.returncode == 0, explain(proc)
    link = f.parent / ".flow" / name
    plant_link(link, outside)
    proc = flow("tick", f.parent, "--now", "2026-11-22T10:00:30Z", "--json", cwd=f.parent)
    said(proc, f"{link}", code=1)
    assert "symbolic link" in proc.stderr and json.loads(proc.stdout)["fired"] == []
    untouched(outside)
    assert link.is_symlink()


# ---- folders planted as links, folders of others -----------------------------------------------------------------


def test_a_run_folder_that_is_a_link_is_damage_and_never_followed(flow, proj, tmp_path):
    run_id = run_id_of(proj)
    away = tmp_path / "away"
    away.mkdir()
    shutil.move(str(run_folder(proj)), away / run_id)
    (proj / ".flow" / "runs" / run_id).symlink_to(away / run_id)
    before = tree(away)
    msg = f"the run's folder {proj / '.flow' / 'runs' / run_id} is a symbolic link"
    said(flow("status", cwd=proj), msg, code=1)
    said(flow("logs", run_id, cwd=proj), msg, code=1)
    said(flow("report", run_id, "--html", proj / "r.html", cwd=proj), msg, code=1)
    said(flow("run", proj / "p.flow", "--resume", cwd=proj), msg, code=1)
    said(flow("prune", "--keep", "0", cwd=proj), f"{run_id}: not deleted: {msg}", code=1)
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0 and json.loads(proc.stdout)[0]["status"] == "damaged", explain(proc)
    assert tree(away) == before


def test_a_logs_folder_that_is_a_link_is_damage_and_never_written_through(flow, proj, tmp_path):
    away = tmp_path / "away-logs"
    shutil.move(str(run_folder(proj) / "logs"), away)
    (run_folder(proj) / "logs").symlink_to(away)
    before = tree(away)
    msg = f"the folder {run_folder(proj) / 'logs'} is a symbolic link"
    said(flow("run", proj / "p.flow", "--resume", cwd=proj), msg, code=1)
    said(flow("logs", run_id_of(proj), cwd=proj), msg, code=1)
    assert tree(away) == before


@pytest.mark.parametrize("how", ["writable", pytest.param("theirs", marks=AS_ROOT)])
def test_a_run_folder_of_another_user_or_writable_by_others_is_refused(flow, proj, how):
    folder = run_folder(proj)
    if how == "writable":
        folder.chmod(0o777)
    else:
        os.chown(folder, NOBODY, NOBODY)
    proc = flow("run", proj / "p.flow", "--resume", cwd=proj)
    said(proc, f"the run's folder {folder}", code=1)
    said(flow("status", cwd=proj), f"the run's folder {folder}", code=1)


def test_a_cache_folder_that_is_a_link_is_neither_written_nor_pruned_through(flow, proj, tmp_path):
    away = tmp_path / "away-cache"
    shutil.move(str(proj / ".flow" / "cache" / "p"), away)
    (proj / ".flow" / "cache" / "p").symlink_to(away)
    old = away / "keep-me.msgpack"
    old.write_bytes(b"not ours to delete")
    os.utime(old, (1_000_000, 1_000_000))
    before = tree(away)
    proc = flow("run", proj / "p.flow", "--json", cwd=proj)  # `c` has `cache`: a miss, and nothing written there
    assert proc.returncode == 1 and json.loads(proc.stdout)["tasks"]["c"]["status"] == "success", explain(proc)
    proc = flow("prune", "--older-than", "1s", cwd=proj)
    said(proc, f"{proj / '.flow' / 'cache' / 'p'}: not pruned", "symbolic link", code=1)
    assert tree(away) == before


def test_a_cache_folder_that_is_a_link_is_refused_before_anything(flow, proj, tmp_path):
    away = tmp_path / "away-cache-root"
    shutil.move(str(proj / ".flow" / "cache"), away)
    (proj / ".flow" / "cache").symlink_to(away)
    said(flow("run", proj / "p.flow", cwd=proj), f"the folder {proj / '.flow' / 'cache'} is a symbolic link", code=2)


# ---- run ids read from files -------------------------------------------------------------------------------------


BAD_IDS = {
    "dot-dot": "../../../escape-20261122T100000000-abcd",
    "absolute": "/tmp/escape-20261122T100000000-abcd",
    "slash": "s/../../escape-20261122T100000000-abcd",
    "nul": "s-20261122T100000000-ab\0cd",
    "long": "s" * 5000 + "-20261122T100000000-abcd",
    "dots": "..",
    "empty": "",
}


def claim(run_id: str) -> dict:
    return {"slot": "2026-11-22T10:00:00+00:00", "logical_date": "2026-11-22T10:00:00+00:00",
            "schedule": "cron 0 * * * *", "run_id": run_id, "started": False, "tick": "2026-11-22T10:00:30+00:00"}


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_a_tick_claim_whose_run_id_is_not_one_is_damage_and_starts_nothing(flow, tmp_path, bad):
    f = write_project(tmp_path / "sched", SCHEDULED, name="s.flow")
    proc = flow("tick", f.parent, "--now", "2026-11-22T09:30:00Z", cwd=f.parent)
    assert proc.returncode == 0, explain(proc)
    path = f.parent / ".flow" / "tick.json"
    data = json.loads(path.read_text())
    data["pipelines"]["s"]["last_tick"] = "2026-11-22T10:00:30+00:00"
    data["pipelines"]["s"]["claims"].append(claim(bad))
    path.write_text(json.dumps(data))
    def files() -> list:  # but the checked programs' cache, written in the background
        return sorted(str(p) for p in tmp_path.rglob("*") if "cache" not in p.relative_to(tmp_path).parts)

    before = files()
    proc = flow("tick", f.parent, "--now", "2026-11-22T10:01:30Z", "--json", cwd=f.parent)
    said(proc, f"{path}: the tick state is damaged", "for a run id", code=1)
    assert len(proc.stderr.splitlines()) == 1 and len(proc.stderr) < 1500  # one line, the id cut short
    assert json.loads(proc.stdout)["fired"] == []
    assert files() == before  # no run, here or anywhere
    assert not list(Path("/tmp").glob("escape-*"))


def test_a_tick_claim_whose_run_folder_is_a_link_is_said_once_and_not_followed(flow, tmp_path):
    f = write_project(tmp_path / "sched", SCHEDULED, name="s.flow")
    flow("tick", f.parent, "--now", "2026-11-22T09:30:00Z", cwd=f.parent)
    run_id = "s-20261122T100000000-abcd"
    away = tmp_path / "away-run"
    away.mkdir()
    (f.parent / ".flow" / "runs").mkdir(mode=0o700)
    (f.parent / ".flow" / "runs" / run_id).symlink_to(away)
    path = f.parent / ".flow" / "tick.json"
    data = json.loads(path.read_text())
    data["pipelines"]["s"]["last_tick"] = "2026-11-22T10:00:30+00:00"
    data["pipelines"]["s"]["claims"].append(claim(run_id))
    path.write_text(json.dumps(data))
    proc = flow("tick", f.parent, "--now", "2026-11-22T10:01:30Z", "--json", cwd=f.parent)
    said(proc, f"cannot start the run {run_id}", "is a symbolic link", code=1)
    assert list(away.iterdir()) == []
    proc = flow("tick", f.parent, "--now", "2026-11-22T10:02:30Z", "--json", cwd=f.parent)
    assert proc.returncode == 0 and json.loads(proc.stdout)["fired"] == [], explain(proc)  # said once


@pytest.mark.parametrize("bad", [BAD_IDS["dot-dot"], BAD_IDS["long"], "p-20990101T000000000-0000"],
                         ids=["dot-dot", "long", "another-run"])
def test_a_summary_naming_another_run_is_not_believed(flow, proj, bad):
    run_id = run_id_of(proj)
    path = run_folder(proj) / "summary.json"
    line = json.loads(path.read_text())
    path.write_text(json.dumps(dict(line, run_id=bad, status="success")))
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0, explain(proc)
    assert [(r["run_id"], r["status"]) for r in json.loads(proc.stdout)] == [(run_id, "failed")]
    pages = proj / "pages"
    proc = flow("report", "--html", f"{pages}/", cwd=proj)
    assert proc.returncode == 0, explain(proc)
    assert sorted(p.name for p in pages.iterdir()) == sorted(["index.html", f"{run_id}.html"])
    # the verbs that go by the run's folder are not misled either
    proc = flow("status", "--json", cwd=proj)
    assert proc.returncode == 0 and json.loads(proc.stdout)["run_id"] == run_id, explain(proc)
    proc = flow("logs", run_id, "a", cwd=proj)
    assert proc.returncode == 0 and proc.stdout == "hello\n", explain(proc)
    proc = flow("run", proj / "p.flow", "--resume", cwd=proj)
    assert proc.returncode == 1 and run_id in proc.stdout, explain(proc)  # b fails again, in its own run
    said(flow("prune", "--keep", "0", cwd=proj), code=0)
    assert os.listdir(proj / ".flow" / "runs") == []
    assert not list(proj.parent.rglob("escape-*"))


def rewrite_journal(path: Path, **changes) -> None:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(path.read_bytes())
    records = list(unpacker)
    records[0].update(changes)
    path.write_bytes(b"".join(msgpack.packb(r, use_bin_type=True) for r in records))


@pytest.mark.parametrize("field,bad", [("run_id", BAD_IDS["dot-dot"]), ("run_id", BAD_IDS["nul"]),
                                       ("from_run", BAD_IDS["dot-dot"]), ("from_run", BAD_IDS["absolute"]),
                                       ("run_id", "p-20990101T000000000-0000")],
                         ids=["run_id-dot-dot", "run_id-nul", "from_run-dot-dot", "from_run-absolute",
                              "run_id-another-run"])
def test_a_journal_naming_a_bad_run_id_is_damage_for_every_verb(flow, proj, field, bad):
    run_id = run_id_of(proj)
    folder = run_folder(proj)
    rewrite_journal(folder / "journal.msgpack", **{field: bad})
    for name in ("summary.json", "snapshot.json"):
        (folder / name).unlink()
    words = "names the run" if field == "run_id" and "2099" in bad else f"its {field}"
    said(flow("status", run_id, cwd=proj), "the journal is damaged", words, code=1)
    said(flow("logs", run_id, cwd=proj), "the journal is damaged", code=1)
    said(flow("report", run_id, "--html", proj / "r.html", cwd=proj), "the journal is damaged", code=1)
    said(flow("run", proj / "p.flow", "--resume", run_id, cwd=proj), "the journal is damaged", code=1)
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0, explain(proc)
    assert [(r["run_id"], r["status"]) for r in json.loads(proc.stdout)] == [(run_id, "damaged")]
    assert len(proc.stdout) < 5000  # the bad id is shown cut short
    said(flow("prune", "--keep", "0", cwd=proj), code=0)
    assert not (proj / ".flow" / "runs" / run_id).exists() and not list(proj.parent.rglob("escape-*"))


def test_a_snapshot_naming_another_run_is_not_believed(flow, proj):
    run_id = run_id_of(proj)
    path = run_folder(proj) / "snapshot.json"
    data = json.loads(path.read_text())  # its journal digest still matches: only the id is wrong
    data["info"]["run_id"] = "p-20990101T000000000-0000"
    data["status"] = "success"
    path.write_text(json.dumps(data))
    (run_folder(proj) / "summary.json").unlink()
    proc = flow("status", "--json", cwd=proj)
    assert proc.returncode == 0, explain(proc)
    assert (json.loads(proc.stdout)["run_id"], json.loads(proc.stdout)["status"]) == (run_id, "failed")


def test_names_in_runs_that_are_not_run_ids_are_not_runs(flow, proj):
    run_id = run_id_of(proj)
    for name in ("junk", f"{run_id}.damaged", ".hidden"):
        (proj / ".flow" / "runs" / name).mkdir()
    proc = flow("runs", "--json", cwd=proj)
    assert proc.returncode == 0 and [r["run_id"] for r in json.loads(proc.stdout)] == [run_id], explain(proc)
    said(flow("status", "junk", cwd=proj), "no run `junk`", code=2)
    said(flow("status", "../../etc", cwd=proj), "no run `../../etc`", code=2)


# ---- unit: the checks themselves ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["orders-20261122T050000123-3f9a", "a_b_c-20260101T000000000-0000",
                                  "compat-20261203T235034451-ea99", "old-20261122T050000-3f9a",
                                  "with-dash-20261122T050000123-3f9a"])
def test_run_ids_flow_makes_are_run_ids(text):
    assert state.is_run_id(text)
    assert state.run_dir("/s", text) == f"/s/runs/{text}"


@pytest.mark.parametrize("text", list(BAD_IDS.values()) + [
    None, 42, b"p-20261122T050000123-3f9a", "p-20261122T050000123-3f9a\n", "p-20261122T050000123-3F9A",
    "p-20261122T050000123-3f9a/..", ".p-20261122T050000123-3f9a", "p-2026112T050000123-3f9a"])
def test_anything_else_is_not_a_run_id_and_never_a_path(text):
    assert not state.is_run_id(text)
    with pytest.raises(state.Unsafe) as caught:
        state.run_dir("/s", text)
    assert len(str(caught.value)) < 200 and "\0" not in str(caught.value)


def test_a_log_path_stays_inside_logs_whatever_the_journal_says():
    for key, n in [("../../x", 1), ("a", "/../../y"), ("a\0b", 1), ("..", 1), ("fan[3]", 2)]:
        path = state.log_path("/s/runs/r", key, n)
        assert os.path.dirname(path) == "/s/runs/r/logs" and "\0" not in path, path
    assert state.log_path("/r", "fan[3]", 2) == "/r/logs/fan[3].2.log"


def test_a_folder_flow_makes_is_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        made = state.ensure_private_dir(str(tmp_path / "a" / "b"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700


def test_an_existing_folder_is_checked_never_chmoded(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    mine.chmod(0o755)
    state.ensure_private_dir(str(mine))
    assert stat.S_IMODE(mine.stat().st_mode) == 0o755
    for mode in (0o777, 0o1777, 0o775, 0o757):
        mine.chmod(mode)
        with pytest.raises(state.Unsafe, match="writable by other users"):
            state.ensure_private_dir(str(mine))
        assert stat.S_IMODE(mine.stat().st_mode) == mode


@AS_ROOT
def test_a_folder_of_another_user_is_refused_and_left_alone(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(state.Unsafe, match=f"belongs to .*uid {NOBODY}"):
        state.ensure_private_dir(str(theirs))
    assert theirs.stat().st_uid == NOBODY


def test_a_folder_inside_that_is_a_link_or_a_file_is_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(state.Unsafe, match="is a symbolic link"):
        state.ensure_private_dir(str(tmp_path / "link"))
    (tmp_path / "file").write_text("")
    with pytest.raises(state.Unsafe, match="is not a folder"):
        state.ensure_private_dir(str(tmp_path / "file"))


def test_open_file_refuses_links_fifos_and_folders_without_blocking(tmp_path, outside):
    link = tmp_path / "link"
    link.symlink_to(outside)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT):
        with pytest.raises(state.Unsafe, match="is a symbolic link"):
            state.open_file(str(link), flags)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(state.Unsafe, match="not a regular file"):
        state.open_file(str(fifo), os.O_RDONLY)
    with pytest.raises(state.Unsafe, match="not a regular file"):
        state.open_file(str(tmp_path), os.O_RDONLY)
    untouched(outside)


def test_an_attempt_log_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, outside):
    link = tmp_path / "t.2.log"
    link.symlink_to(outside)
    with pytest.raises(OSError, match="is a symbolic link") as caught:
        capture.open_log(str(link))
    assert isinstance(caught.value, state.Unsafe)
    log = capture.LazyLog(str(link))
    with pytest.raises(OSError):
        log.write(b"appended?\n")
    untouched(outside)
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(OSError):
        capture.open_log(str(tmp_path / "fifo.log"))  # no reader: refused at once, never blocks
    with capture.open_log(str(tmp_path / "fine.log")) as f:
        f.write(b"ok\n")
    with capture.open_log(str(tmp_path / "fine.log")) as f:
        f.write(b"again\n")
    assert (tmp_path / "fine.log").read_bytes() == b"ok\nagain\n"
    assert stat.S_IMODE((tmp_path / "fine.log").stat().st_mode) == 0o600


def test_a_file_rewritten_whole_replaces_a_link_and_never_writes_through_it(tmp_path, outside):
    path = tmp_path / "summary.json"
    path.symlink_to(outside)
    predictable = tmp_path / f"summary.json.tmp{os.getpid()}"  # the name flow used to write aside
    predictable.symlink_to(outside)
    state.write_json_atomic(str(path), {"run_id": "x"})
    untouched(outside)
    assert not path.is_symlink() and json.loads(path.read_text()) == {"run_id": "x"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["outside.txt", "summary.json", predictable.name])


def test_two_atomic_writes_never_share_a_temporary_name(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    for _ in range(3):
        state.write_atomic(str(tmp_path / "f"), b"x")
    assert len(set(seen)) == 3 and all(str(os.getpid()) not in name for name in seen)


def test_the_result_cache_reads_no_link_and_replaces_one_it_writes(tmp_path, outside):
    root = tmp_path / "state"
    cache = checkpoint.ResultCache(str(root), "p")
    cache.put("fp1", b"result", "p-20260101T000000000-0000", "t")
    assert cache.get("fp1", None)["result"] == b"result"
    entry = Path(cache.path("fp2"))
    entry.symlink_to(outside)
    assert cache.get("fp2", None) is None  # never read through
    cache.put("fp2", b"fresh", "p-20260101T000000000-0000", "t")
    untouched(outside)
    assert not entry.is_symlink() and cache.get("fp2", None)["result"] == b"fresh"


def test_the_result_cache_in_a_linked_folder_is_a_miss_and_writes_nothing_there(tmp_path):
    away = tmp_path / "away"
    away.mkdir()
    (tmp_path / "state" / "cache").mkdir(parents=True)
    (tmp_path / "state" / "cache" / "p").symlink_to(away)
    cache = checkpoint.ResultCache(str(tmp_path / "state"), "p")
    cache.put("fp", b"x", "p-20260101T000000000-0000", "t")
    assert cache.get("fp", None) is None and list(away.iterdir()) == []
    refused: list = []
    assert checkpoint.prune_cache(str(tmp_path / "state"), 0, 1e12, refused) == []
    assert len(refused) == 1 and "symbolic link" in refused[0]


def test_the_journal_is_never_opened_through_a_link(tmp_path, outside):
    folder = tmp_path / "runs" / "p-20260101T000000000-0000"
    os.makedirs(folder / "logs", mode=0o700)
    link = folder / "journal.msgpack"
    link.symlink_to(outside)
    with pytest.raises(journal.JournalError, match="is a symbolic link"):
        journal.Writer(str(link), create=False)
    with pytest.raises(journal.JournalError, match="is a symbolic link"):
        journal.head(str(link))
    with pytest.raises(journal.JournalError, match="is a symbolic link"):
        journal.read(str(link))
    assert journal.is_live(str(link)) is False
    untouched(outside)


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_the_tick_state_reader_calls_a_bad_claim_id_damage(tmp_path, bad):
    data = {"version": 1, "pipelines": {"s": {"last_tick": None, "claims": [claim(bad)], "skipped": []}}}
    (tmp_path / "tick.json").write_text(json.dumps(data))
    with pytest.raises(tickstate.Damaged, match="for a run id") as caught:
        tickstate.read(str(tmp_path))
    assert len(str(caught.value)) < 1000 and "\0" not in str(caught.value)


# ---- crash reports -----------------------------------------------------------------------------------------------


def crash(folder=None) -> int:
    try:
        raise RuntimeError("a bug in flow")
    except RuntimeError as e:
        return exitcodes.report_bug(e, folder)


def reported_path(err: str) -> Path:
    assert err.count("\n") == 1 and "flow: internal error: RuntimeError: a bug in flow" in err
    return Path(err.split("the traceback is in ", 1)[1].split(";", 1)[0])


def test_a_crash_report_is_private_in_the_users_state_folder_and_says_where(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "argv", ["flow", "run", "x.flow", "--param", "k=v"])
    assert crash() == exitcodes.EXIT_BUG
    first = reported_path(capsys.readouterr().err)
    assert first.parent == tmp_path / "xdg" / "flow"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.parent.stat().st_mode) == 0o700
    text = first.read_text()
    assert "RuntimeError: a bug in flow" in text and "k=v" in text
    crash()
    second = reported_path(capsys.readouterr().err)
    assert second != first and first.exists()  # a new name each time, nothing overwritten


def test_a_crash_of_a_detached_run_is_reported_in_its_folder(tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    crash(str(folder))
    path = reported_path(capsys.readouterr().err)
    assert path.parent == folder and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_crash_report_falls_back_to_a_private_file_in_the_temp_folder(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "xdg"))  # cannot be made
    monkeypatch.setenv("HOME", str(blocker))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # let it read TMPDIR again
    crash()
    path = reported_path(capsys.readouterr().err)
    assert path.parent == tmp_path / "tmp" and path.name.startswith("flow-crash-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_shared_crash_folder_is_not_used(tmp_path, monkeypatch, capsys):
    (tmp_path / "xdg" / "flow").mkdir(parents=True)
    (tmp_path / "xdg" / "flow").chmod(0o777)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    crash()
    assert reported_path(capsys.readouterr().err).parent == tmp_path / "tmp"
    assert list((tmp_path / "xdg" / "flow").iterdir()) == []
