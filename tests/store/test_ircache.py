"""The cache of checked programs: used while true, never stale, never a way to run code.

An entry is two lines of JSON that name record classes from an allow-list
(store/ircache.py). Every valid file of the corpus must come back equal; any
entry that is not exactly what ircache.py writes (a pickle, a marshal, a
class not on the list, a field of the wrong type, a truncated file, an entry
someone else could have written) must be ignored without running anything,
and the program checked afresh. Payloads that would run code create a
marker file, so a test sees it if one ever did.
"""

import json
import marshal
import os
import pickle
import random
import signal
import time
from pathlib import Path

import pytest
from runkit import explain, run_json, wait_until, write_project

from flowdsl.lang import diagnostics, ir
from flowdsl.lang.check import check
from flowdsl.lang.records import Record, fields, is_record
from flowdsl.store import ircache

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS = sorted((DATA / "valid").glob("*.flow"))

PIPE = """
    pipeline cached {}
    task a { run mod:f  with { x = 1 } }
"""
MOD = {"mod.py": "def f(x):\n    return x + 1\n"}

# Most kinds of value and statement in one file, and a warning (W101) kept with it.
BAIT = """
    pipeline bait {
        params { n = 2  unused = 1 }
        schedule cron "0 * * * *"
        executor inline
    }
    task a { run mod:f  with { x = params.n } }
    task b {
        sh "echo b {run.logical_date}"
        after a
        retry 2 delay 1s
        timeout 1h
    }
    task c { run mod:g  with { xs = [1, 2.5, true, null, env("HOME", "x"), a.out[0]] } }
"""
BAIT_MOD = {"mod.py": "def f(x):\n    return {'out': [x + 1]}\n\ndef g(xs):\n    return xs\n"}


# ---- helpers ---------------------------------------------------------------------------------


def entries(folder: Path, suffix: str = ircache.SUFFIX) -> list:
    return sorted((folder / ".flow" / "cache" / "ir").glob("*" + suffix))


def wait_for_entry(folder: Path) -> Path:
    deadline = time.monotonic() + 10
    while not entries(folder):  # written by a background process
        assert time.monotonic() < deadline, "no cache entry was written"
        time.sleep(0.05)
    return entries(folder)[0]


def wait_for_valid_entry(cache_dir: str, path: Path, targets=()) -> None:
    """Until the background write of a fresh entry is done (so a planted one is not overwritten later)."""
    assert wait_until(lambda: ircache.load(cache_dir, str(path), list(targets)) is not None, 10), \
        "no valid cache entry was written"


def cached_project(tmp_path: Path, text: str = BAIT, modules=BAIT_MOD):
    """(the .flow file, its cache folder, the bytes of its entry as ircache.py writes it)."""
    f = write_project(tmp_path, text, modules)
    cache_dir = ircache.folder(str(tmp_path / ".flow"))
    loaded, keep = ircache.checked(str(f), cache_dir)
    assert keep is not None, "a first check must offer to cache"
    keep(background=False)
    return f, cache_dir, Path(ircache.entry_path(cache_dir, str(f))).read_bytes()


def lines(entry: bytes):
    header, body = (json.loads(line) for line in entry.splitlines())
    return header, body


def join(header, body) -> bytes:
    return (json.dumps(header) + "\n" + json.dumps(body) + "\n").encode()


def edit(entry: bytes, tag: str, change) -> bytes:
    """The entry with `change(record)` applied to the first record named `tag` in its body."""
    header, body = lines(entry)

    def walk(node) -> bool:
        if type(node) is list:
            if node and node[0] == tag:
                change(node)
                return True
            return any(walk(item) for item in node)
        return False

    assert walk(body), f"no {tag} in the entry"
    return join(header, body)


def edit_header(entry: bytes, change) -> bytes:
    header, body = lines(entry)
    change(header)
    return join(header, body)


def setitem(i, value):
    return lambda record: record.__setitem__(i, value)


def retag(name):
    return setitem(0, name)


def os_system_pickle(marker: Path) -> bytes:
    """A pickle whose loading runs `touch marker` (the plain payload)."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"targets": [], "deps": [], "program": Evil(), "warnings": []})


def dotted_name_pickle(marker: Path) -> bytes:
    """The payload that beat the old restricted unpickler: it allowed module flowdsl.lang.ir,
    and a dotted name walks attributes from there to `eval`."""

    def text(s: str) -> bytes:
        return b"\x8c" + bytes([len(s)]) + s.encode()  # SHORT_BINUNICODE

    return (b"\x80\x04" + text("flowdsl.lang.ir") + text("Factory.__init__.__builtins__.get") + b"\x93"
            + text("eval") + b"\x85R" + text(f"__import__('os').system('touch {marker}')") + b"\x85R.")


def marshal_code(marker: Path) -> bytes:
    return marshal.dumps(compile(f"open({str(marker)!r}, 'w').close()", "planted", "exec"))


# payload(valid entry, marker) -> the bytes planted in its place
PLANTED = [
    pytest.param(lambda e, m: os_system_pickle(m), id="pickle-os.system"),
    pytest.param(lambda e, m: dotted_name_pickle(m), id="pickle-dotted-name"),
    pytest.param(lambda e, m: marshal_code(m), id="marshal-code-object"),
    pytest.param(lambda e, m: marshal.dumps(lines(e)), id="marshal-of-a-valid-entry"),
    # classes that are not on the allow-list, by exact name
    pytest.param(lambda e, m: edit(e, "Program", retag("Module")), id="class-module"),
    pytest.param(lambda e, m: edit(e, "Literal", retag("os.system")), id="class-os.system"),
    pytest.param(lambda e, m: edit(e, "Literal", retag("Factory.__init__")), id="class-dotted"),
    pytest.param(lambda e, m: edit(e, "Span", retag("span")), id="class-lowercase"),
    pytest.param(lambda e, m: edit(e, "Span", retag("Span ")), id="class-padded"),
    pytest.param(lambda e, m: edit(e, "Task", retag("Loaded")), id="class-loaded"),
    pytest.param(lambda e, m: edit(e, "Literal", retag(["Literal"])), id="class-a-list"),
    # fields of the wrong type or number
    pytest.param(lambda e, m: edit(e, "Span", setitem(2, "1")), id="span-line-str"),
    pytest.param(lambda e, m: edit(e, "Span", setitem(2, True)), id="span-line-bool"),
    pytest.param(lambda e, m: edit(e, "Span", setitem(1, 99)), id="span-file-out-of-range"),
    pytest.param(lambda e, m: edit(e, "Span", setitem(1, -1)), id="span-file-negative"),
    pytest.param(lambda e, m: edit(e, "Span", setitem(1, 0.0)), id="span-file-float"),
    pytest.param(lambda e, m: edit(e, "Span", lambda r: r.append(1)), id="span-extra-field"),
    pytest.param(lambda e, m: edit(e, "Span", lambda r: r.pop()), id="span-missing-field"),
    pytest.param(lambda e, m: edit(e, "Task", setitem(1, 5)), id="task-name-int"),
    pytest.param(lambda e, m: edit(e, "Task", setitem(8, None)), id="task-settings-null"),
    pytest.param(lambda e, m: edit(e, "Literal", setitem(1, {"x": 1})), id="literal-dict"),
    pytest.param(lambda e, m: edit(e, "Literal", setitem(1, [1])), id="literal-list"),
    pytest.param(lambda e, m: edit(e, "Literal", setitem(1, float("nan"))), id="literal-nan"),
    pytest.param(lambda e, m: edit(e, "Duration", setitem(1, True)), id="duration-bool"),
    pytest.param(lambda e, m: edit(e, "EnvCall", setitem(3, 1)), id="envcall-secret-int"),
    pytest.param(lambda e, m: edit(e, "Ref", setitem(2, [1.5])), id="ref-path-float"),
    pytest.param(lambda e, m: edit(e, "Ref", setitem(2, "out")), id="ref-path-str"),
    pytest.param(lambda e, m: edit(e, "Template", setitem(1, [5])), id="template-part-int"),
    pytest.param(lambda e, m: edit(e, "RunAction", setitem(1, ["Span", 0, 1, 1, 1, 1])), id="action-a-span"),
    pytest.param(lambda e, m: edit(e, "Settings", setitem(1, ["Word", "x", ["Span", 0, 1, 1, 1, 1]])),
                 id="settings-retry-a-word"),
    pytest.param(lambda e, m: edit(e, "Diagnostic", setitem(1, "E201")), id="warning-an-error"),
    pytest.param(lambda e, m: edit(e, "Diagnostic", setitem(1, "X999")), id="warning-unknown-code"),
    pytest.param(lambda e, m: edit(e, "Program", setitem(4, [1])), id="program-files-int"),
    pytest.param(lambda e, m: join(lines(e)[0], [[7], *lines(e)[1][1:]]), id="file-table-int"),
    pytest.param(lambda e, m: join(lines(e)[0], lines(e)[1][:2]), id="body-short"),
    pytest.param(lambda e, m: join(lines(e)[0], {"program": lines(e)[1]}), id="body-a-map"),
    # the header: what the entry is, and the stamps that keep it true
    pytest.param(lambda e, m: edit_header(e, setitem(1, 2)), id="format-2"),
    pytest.param(lambda e, m: edit_header(e, setitem(0, "flow-xx")), id="magic"),
    pytest.param(lambda e, m: edit_header(e, setitem(3, [])), id="deps-none"),
    pytest.param(lambda e, m: edit_header(e, lambda h: h[3].__setitem__(0, [0, "flow", None])), id="deps-an-fd"),
    pytest.param(lambda e, m: edit_header(e, lambda h: h[3][0].__setitem__(1, "sh")), id="deps-kind"),
    pytest.param(lambda e, m: edit_header(e, lambda h: h[3][0].__setitem__(2, "0" * 64)), id="deps-stale"),
    pytest.param(lambda e, m: edit_header(e, lambda h: h[3].pop(0)), id="deps-without-the-flow-file"),
    # not an entry at all
    pytest.param(lambda e, m: e[: len(e) // 2], id="truncated"),
    pytest.param(lambda e, m: e.splitlines()[0] + b"\n", id="header-only"),
    pytest.param(lambda e, m: e.splitlines()[0], id="no-newline"),
    pytest.param(lambda e, m: b"", id="empty"),
    pytest.param(lambda e, m: random.Random(7).randbytes(4096), id="random-bytes"),
    pytest.param(lambda e, m: e.splitlines()[0] + b"\n" + b"[" * 100_000 + b"]" * 100_000, id="deep-nesting"),
    pytest.param(lambda e, m: e.replace(b"[", b"\xff", 1), id="not-utf8"),
]


# ---- through the CLI ------------------------------------------------------------------------


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


def baited(entry: bytes, marker: Path) -> bytes:
    """The entry with task b's command replaced by one that creates the marker: planted
    as is (and private), it would run; every test below plants it spoiled."""
    assert b"echo b " in entry
    return entry.replace(b"echo b ", f"touch {marker}; echo b ".encode())


def planted_for_the_cli(entry: bytes, marker: Path):
    """(name, bytes, mode) of the entries planted under `flow run` and `flow tick`."""
    bait = baited(entry, marker)
    return [
        ("pickle-os.system", os_system_pickle(marker), 0o600),
        ("pickle-dotted-name", dotted_name_pickle(marker), 0o600),
        ("class-not-allowed", edit(bait, "Literal", retag("os.system")), 0o600),
        ("wrong-type", edit(bait, "Span", setitem(2, "1")), 0o600),
        ("truncated", bait[: len(bait) * 2 // 3], 0o600),
        ("group-writable", bait, 0o620),
    ]


def test_planted_entries_run_no_code_under_flow_run(flow, tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    marker = tmp_path / "pwned"
    target = Path(ircache.entry_path(cache_dir, str(f)))
    for name, payload, mode in planted_for_the_cli(entry, marker):
        target.write_bytes(payload)
        os.chmod(target, mode)
        proc, report = run_json(flow, f)
        assert proc.returncode == 0, f"{name}: {explain(proc)}"
        assert report["tasks"]["a"]["result"] == {"out": [3]}, name
        assert report["tasks"]["b"]["status"] == report["tasks"]["c"]["status"] == "success", name
        assert not marker.exists(), name
        wait_for_valid_entry(cache_dir, f)  # checked afresh, and cached again
        assert ircache.load(cache_dir, str(f), []).program == check(str(f)).program, name


def test_planted_entries_run_no_code_under_flow_tick(flow, tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    marker = tmp_path / "pwned"
    target = Path(ircache.entry_path(cache_dir, str(f)))
    cases = planted_for_the_cli(entry, marker)
    for hour, (name, payload, mode) in enumerate(cases, start=1):
        target.write_bytes(payload)
        os.chmod(target, mode)
        proc = flow("tick", f, "--now", f"2026-11-22T{hour:02d}:00:30Z", "--json", cwd=tmp_path)
        assert proc.returncode == 0, f"{name}: {explain(proc)}"
        fired = json.loads(proc.stdout)["fired"]
        assert [x["logical_date"] for x in fired] == [f"2026-11-22T{hour:02d}:00:00+00:00"], name
        assert wait_until(lambda n=hour: runs_done(tmp_path, n), 30), f"{name}: the fired run did not finish"
        assert not marker.exists(), name
        wait_for_valid_entry(cache_dir, f)
    assert len(list((tmp_path / ".flow" / "runs").iterdir())) == len(cases)


def runs_done(folder: Path, count: int) -> bool:
    summaries = [json.loads(p.read_text()) for p in (folder / ".flow" / "runs").glob("*/summary.json")]
    return len(summaries) == count and all(s.get("status") == "success" for s in summaries)


def test_old_pickles_are_never_read_and_are_deleted(flow, tmp_path):
    """Entries of format 2 and before are pickles: named `.pickle`, they are never opened."""
    import hashlib
    import sys

    from flowdsl import __version__

    f = write_project(tmp_path, PIPE, MOD)
    cache_dir = Path(ircache.folder(str(tmp_path / ".flow")))
    cache_dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    key = f"{os.path.abspath(f)}\0{f}\0{__version__}\0{2}\0{sys.version_info[:2]}"  # format 2's name
    old = cache_dir / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".pickle")
    old.write_bytes(dotted_name_pickle(marker))
    other = cache_dir / "0123456789abcdef01234567.pickle"
    other.write_bytes(os_system_pickle(marker))
    proc, report = run_json(flow, f)
    assert proc.returncode == 0 and report["tasks"]["a"]["result"] == 2, explain(proc)
    wait_for_entry(tmp_path)
    assert wait_until(lambda: not old.exists() and not other.exists(), 10), "old pickles left behind"
    assert not marker.exists()


# ---- round trips ----------------------------------------------------------------------------


def walk_classes(node, seen: set) -> set:
    if is_record(node):
        seen.add(type(node).__name__)
        for name in fields(node):
            walk_classes(getattr(node, name), seen)
    elif isinstance(node, (tuple, list)):
        for item in node:
            walk_classes(item, seen)
    return seen


def test_the_corpus_is_there():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name) for p in CORPUS])
def test_every_valid_corpus_file_comes_back_equal(path, tmp_path):
    cache_dir = str(tmp_path / "cache" / "ir")
    loaded, keep = ircache.checked(str(path), cache_dir)
    keep(background=False)
    again, keep_again = ircache.checked(str(path), cache_dir)
    assert keep_again is None, "not loaded from the cache"
    assert again.program == loaded.program and again.diagnostics == loaded.diagnostics
    assert ir.to_data(again.program) == ir.to_data(loaded.program)
    assert [type(t) for t in again.program.tasks] == [type(t) for t in loaded.program.tasks]


def test_warnings_come_back_with_the_program(tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    fresh = check(str(f))
    assert [d.code for d in fresh.diagnostics] == ["W101"]
    cached = ircache.load(cache_dir, str(f), [])
    assert cached.program == fresh.program and cached.diagnostics == fresh.diagnostics
    assert cached.diagnostics[0].hint and cached.diagnostics[0].severity == "warning"


def test_the_round_trips_cover_every_class_on_the_allow_list(tmp_path):
    seen: set = set()
    for path in CORPUS:
        loaded = check(str(path))
        walk_classes(loaded.program, seen)
        walk_classes(loaded.diagnostics, seen)
    f = write_project(tmp_path, BAIT, BAIT_MOD)
    walk_classes(check(str(f)).diagnostics, seen)
    assert seen == set(ircache.SCHEMA)


def test_every_record_class_of_the_ir_is_on_the_allow_list_or_never_in_a_program():
    classes = {name: value for module in (ir, diagnostics) for name, value in vars(module).items()
               if isinstance(value, type) and issubclass(value, Record) and value is not Record}
    assert set(classes) - set(ircache.SCHEMA) == {"Module", "Include"}
    for name, kinds in ircache.SCHEMA.items():  # a kind for each field, so a new field is seen here
        assert len(kinds) == len(classes[name]._fields), name


def test_an_entry_is_plain_json_and_private(tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    header, body = lines(entry)
    assert header[:2] == [ircache.MAGIC, ircache.FORMAT] and header[3][0][:2] == [str(f), "flow"]
    assert body[1][0] == "Program" and body[0] == [str(f)]
    assert [p.name for p in Path(cache_dir).iterdir()] == [Path(ircache.entry_path(cache_dir, str(f))).name]
    assert Path(ircache.entry_path(cache_dir, str(f))).stat().st_mode & 0o777 == 0o600
    assert Path(cache_dir).stat().st_mode & 0o777 == 0o700


def test_what_is_not_ir_is_not_written(tmp_path):
    span = ir.Span("p.flow", 1, 1, 1, 2)
    for value in ({1}, b"x", float("nan"), 10 ** 5000):
        with pytest.raises(ValueError):
            ircache.encode_entry([], [], ir.Literal(value, span), [])
    f = write_project(tmp_path, PIPE, MOD)
    loaded = check(str(f))
    task = loaded.program.tasks[0]
    odd = ir.Program(loaded.program.file, loaded.program.pipeline,
                     (ir.Task(task.name, task.name_span, task.action, ir.MapExpr((), span), (), None,
                              ir.Literal(object(), span), task.settings, task.span),), loaded.program.files)
    loaded.program = odd
    cache_dir = str(tmp_path / "cache" / "ir")
    ircache.store(cache_dir, str(f), [], loaded, [])
    assert not os.path.exists(ircache.entry_path(cache_dir, str(f)))


# ---- planted entries ------------------------------------------------------------------------


def test_the_bait_loads_when_intact_so_each_refusal_below_is_the_damage(tmp_path):
    """The positive control: an entry this user wrote, privately, is trusted as is."""
    f, cache_dir, entry = cached_project(tmp_path)
    marker = tmp_path / "pwned"
    Path(ircache.entry_path(cache_dir, str(f))).write_bytes(baited(entry, marker))
    cached = ircache.load(cache_dir, str(f), [])
    assert cached is not None and f"touch {marker}" in cached.program.tasks[1].action.command.text
    assert ircache.load(cache_dir, str(f), ["a"]) is None  # other targets, another entry


@pytest.mark.parametrize("payload", PLANTED)
def test_a_planted_entry_is_ignored_runs_nothing_and_the_program_is_checked_afresh(payload, tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    marker = tmp_path / "pwned"
    target = Path(ircache.entry_path(cache_dir, str(f)))
    target.write_bytes(payload(baited(entry, marker), marker))
    assert ircache.load(cache_dir, str(f), []) is None
    loaded, keep = ircache.checked(str(f), cache_dir)
    assert keep is not None, "checked afresh, and offered to the cache again"
    assert loaded.program == check(str(f)).program
    assert "touch" not in loaded.program.tasks[1].action.command.text
    assert not marker.exists()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_an_entry_others_can_write_is_not_read(mode, tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    target = Path(ircache.entry_path(cache_dir, str(f)))
    os.chmod(target, mode)
    assert ircache.load(cache_dir, str(f), []) is None
    os.chmod(target, 0o600)
    assert ircache.load(cache_dir, str(f), []) is not None


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_an_entry_in_a_folder_others_can_write_to_is_not_read_nor_written(mode, tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    os.chmod(cache_dir, mode)
    assert ircache.load(cache_dir, str(f), []) is None
    os.chmod(cache_dir, 0o700)
    assert ircache.load(cache_dir, str(f), []) is not None


def test_a_symlinked_entry_is_not_followed(tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    target = Path(ircache.entry_path(cache_dir, str(f)))
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry)
    os.chmod(elsewhere, 0o600)
    target.unlink()
    target.symlink_to(elsewhere)
    assert ircache.load(cache_dir, str(f), []) is None


def test_a_fifo_named_as_a_dependency_does_not_hang_the_load(tmp_path):
    f, cache_dir, entry = cached_project(tmp_path)
    fifo = tmp_path / "fifo.flow"
    os.mkfifo(fifo)
    planted = edit_header(entry, lambda h: h[3].insert(0, [str(fifo), "flow", None]))
    Path(ircache.entry_path(cache_dir, str(f))).write_bytes(planted)

    def hung(signum, frame):
        raise TimeoutError("the load waited on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    try:
        assert ircache.load(cache_dir, str(f), []) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_failed_write_leaves_no_file_behind(tmp_path, monkeypatch):
    f, cache_dir, entry = cached_project(tmp_path)
    Path(ircache.entry_path(cache_dir, str(f))).unlink()

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    loaded, keep = ircache.checked(str(f), cache_dir)
    keep(background=False)
    assert list(Path(cache_dir).iterdir()) == []
