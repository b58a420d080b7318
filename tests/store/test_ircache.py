"""The cache of checked programs: used while true, never stale, never a way to run code."""

import pickle
import time
from pathlib import Path

from runkit import explain, run_json, write_project

PIPE = """
    pipeline cached {}
    task a { run mod:f  with { x = 1 } }
"""
MOD = {"mod.py": "def f(x):\n    return x + 1\n"}


def entries(folder: Path) -> list:
    return sorted((folder / ".flow" / "cache" / "ir").glob("*.pickle"))


def wait_for_entry(folder: Path) -> Path:
    deadline = time.monotonic() + 10
    while not entries(folder):  # written by a background process
        assert time.monotonic() < deadline, "no cache entry was written"
        time.sleep(0.05)
    return entries(folder)[0]


def test_a_run_caches_its_checked_program_and_an_edit_invalidates_it(flow, tmp_path):
    f = write_project(tmp_path, PIPE, MOD)
    proc, report = run_json(flow, f)
    assert report["tasks"]["a"]["result"] == 2
    wait_for_entry(tmp_path)
    # an edit of the .flow file that breaks it is seen, not hidden by the cache
    f.write_text(f.read_text().replace("x = 1", "x = 1  y = 2"))
    proc = flow("run", f, cwd=tmp_path)
    assert proc.returncode == 1 and "E" in proc.stderr and "`y`" in proc.stderr, explain(proc)
    f.write_text(f.read_text().replace("  y = 2", ""))
    proc, report = run_json(flow, f)
    assert report["tasks"]["a"]["result"] == 2
    # so is an edit of the Python module the checks read
    time.sleep(0.01)
    (tmp_path / "mod.py").write_text("def f(z):\n    return z\n")
    proc = flow("run", f, cwd=tmp_path)
    assert proc.returncode == 1 and "`x`" in proc.stderr, explain(proc)


def test_usage_errors_and_dry_runs_write_no_cache(flow, tmp_path):
    f = write_project(tmp_path, PIPE, MOD)
    assert flow("run", f, "--target", "nope", cwd=tmp_path).returncode == 2
    time.sleep(0.3)
    assert not (tmp_path / ".flow").exists()


def test_a_tampered_entry_runs_no_code(flow, tmp_path):
    f = write_project(tmp_path, PIPE, MOD)
    run_json(flow, f)
    entry = wait_for_entry(tmp_path)
    canary = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {canary}",))

    entry.write_bytes(pickle.dumps({"targets": [], "deps": [], "program": Evil(), "warnings": []}))
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["a"]["result"] == 2
    assert not canary.exists()
    entry.write_bytes(b"garbage")
    proc, report = run_json(flow, f)
    assert proc.returncode == 0 and report["tasks"]["a"]["result"] == 2


def test_an_entry_naming_the_old_module_paths_is_ignored(flow, tmp_path, monkeypatch):
    """Entries written before the IR moved to flowdsl.lang name `flowdsl.ir`: never loaded, checked afresh."""
    import sys
    import types

    from flowdsl.store import ircache

    f = write_project(tmp_path, PIPE, MOD)
    old_ir = types.ModuleType("flowdsl.ir")

    class Program:
        pass

    Program.__module__, Program.__qualname__ = "flowdsl.ir", "Program"
    old_ir.Program = Program
    monkeypatch.setitem(sys.modules, "flowdsl.ir", old_ir)
    cache_dir = ircache.folder(str(tmp_path / ".flow"))
    Path(cache_dir).mkdir(parents=True)
    entry = Path(ircache.entry_path(cache_dir, str(f)))
    entry.write_bytes(pickle.dumps({"targets": [], "deps": [], "program": Program(), "warnings": []}))
    assert ircache.load(cache_dir, str(f), []) is None  # the restricted unpickler refuses the old path
    proc, report = run_json(flow, f)
    assert proc.returncode == 0 and report["tasks"]["a"]["result"] == 2, explain(proc)
