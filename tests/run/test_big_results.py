"""Results passed whole travel as their stored bytes, are stored once, and are verified before a resume
keeps them.

End to end through the zipapp: every way of passing a result (whole, in a
list or map written in `with`, a part of it, in a command, as a foreach's
list) on the three local executors; report.json and `status --json`; a
journal written as the release before this one wrote it (msgpack results, no
checksums) resumes and keeps; a byte changed anywhere in a stored result
makes the resume run that task again. In this process: the runner decodes
no result it only passes on, in a run, a resume, a `--from` run, `status`
and `runs` (counted by wrapping the codec's decoders).
"""

import json
import os

import msgpack
import pytest
from runkit import explain, run_json, write_project

from flowdsl.store import codec

ROWS = 4000  # 4000 rows: past report.json's limit for a result shown inline (64 kB)

TASKS = {"bigtasks.py": f"""
    def make():
        return [{{"id": i, "name": "customer %d" % i, "amount": i * 1.5}} for i in range({ROWS})]

    def count(rows):
        assert type(rows) is list and type(rows[0]) is dict, type(rows)
        return len(rows)

    def shape(both, named, second):
        return [len(both[0]), both[1], len(named["rows"]), second["id"]]

    def small():
        return ["a", "b"]

    def upper(letter):
        return letter.upper()

    def size(items):
        return len(items)
"""}

FLOW = """
pipeline big { concurrency 2 }
task make { run bigtasks:make }
task count { run bigtasks:count with { rows = make } }
task shape { run bigtasks:shape with { both = [make, 7]  named = { rows = make }  second = make[1] } }
task echo { sh "echo {make[2].name}" }
task small { run bigtasks:small }
task each { run bigtasks:upper with { letter = x } foreach x in small }
task gather { run bigtasks:size with { items = each } }
"""


def project(tmp_path, executor=None):
    text = FLOW if executor is None else FLOW.replace("{ concurrency 2 }", f"{{ concurrency 2 executor {executor} }}")
    return write_project(tmp_path, text, TASKS)


def check_results(tasks):
    assert tasks["count"]["result"] == ROWS
    assert tasks["shape"]["result"] == [ROWS, 7, ROWS, 1]
    assert tasks["echo"]["result"] == "customer 2"
    assert tasks["each"]["result"] == ["A", "B"] and tasks["gather"]["result"] == 2
    assert len(tasks["make"]["result"]) == ROWS and tasks["make"]["result"][3] == {
        "id": 3, "name": "customer 3", "amount": 4.5}


@pytest.mark.parametrize("executor", [None, "thread", "inline"])
def test_every_way_of_passing_a_result_on_every_local_executor(flow, tmp_path, executor):
    flow_file = project(tmp_path, executor)
    proc, report = run_json(flow, flow_file)
    assert proc.returncode == 0, explain(proc)
    check_results(report["tasks"])


def only_run(state):
    (run_id,) = os.listdir(state / "runs")
    return run_id


def test_report_json_leaves_big_results_to_the_journal_and_status_shows_them(flow, tmp_path):
    flow_file = project(tmp_path)
    proc, _ = run_json(flow, flow_file)
    assert proc.returncode == 0, explain(proc)
    folder = tmp_path / ".flow" / "runs" / only_run(tmp_path / ".flow")
    kept = json.loads((folder / "report.json").read_text())
    make = kept["tasks"]["make"]
    assert make["result"] is None and make["result_bytes"] > 1 << 16
    assert kept["tasks"]["count"]["result"] == ROWS and "result_bytes" not in kept["tasks"]["count"]
    status = flow("status", "--json", cwd=tmp_path)
    check_results(json.loads(status.stdout)["tasks"])
    journal = (folder / "journal.msgpack").stat().st_size
    stored = len(codec.encode_result(json.loads(status.stdout)["tasks"]["make"]["result"], "msgpack"))
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert on_disk - journal < 20_000 and journal < stored * 1.2  # the result once, in the journal
    text = flow("status", cwd=tmp_path)
    assert text.returncode == 0 and "customer" not in text.stdout


# ---- as the release before JSON results wrote them ------------------------------------------


def rewrite_journal(path, change):
    """Each record through `change(record) -> record`, written back as msgpack."""
    records = list(msgpack.Unpacker(open(path, "rb"), raw=False, strict_map_key=False))
    with open(path, "wb") as f:
        for r in records:
            f.write(msgpack.packb(change(r), use_bin_type=True))


def as_before(record):
    """A record as flow 0.1.0 wrote it: results in msgpack, no checksum."""
    record.pop("rc", None)
    if isinstance(record.get("result"), bytes) and record["result"][:1] == b"J":
        record["result"] = b"M" + msgpack.packb(json.loads(record["result"][1:]), use_bin_type=True)
    return record


def failed_run(flow, tmp_path):
    """The pipeline with a last task that fails while the file `fail` is there: (its file, run id, folder)."""
    flow_file = write_project(tmp_path, FLOW + "task last { sh \"test ! -e fail\" after count }\n", TASKS)
    (tmp_path / "fail").write_text("")
    proc, _ = run_json(flow, flow_file)
    assert proc.returncode == 1, explain(proc)
    run_id = only_run(tmp_path / ".flow")
    return flow_file, run_id, tmp_path / ".flow" / "runs" / run_id


def test_results_stored_as_msgpack_by_the_release_before_still_resume(flow, tmp_path):
    flow_file, run_id, folder = failed_run(flow, tmp_path)
    rewrite_journal(folder / "journal.msgpack", as_before)
    for name in ("snapshot.json", "report.json"):
        (folder / name).unlink(missing_ok=True)
    (tmp_path / "fail").unlink()
    proc, report = run_json(flow, flow_file, "--resume", run_id, "-v")
    assert proc.returncode == 0, explain(proc)
    for task in ("make", "count", "shape", "echo", "each[0]", "each[1]", "gather"):
        assert report["tasks"][task].get("kept_from") == run_id, (task, proc.stderr)
    check_results(report["tasks"])
    # a --from run of the old run passes its msgpack result on, whole
    proc, report = run_json(flow, flow_file, "--from", "count")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["make"].get("kept_from") and report["tasks"]["count"]["result"] == ROWS


# ---- a stored result changed on disk -------------------------------------------------------


def result_place(path, task):
    """Where `task`'s result's bytes start in the journal, and their length."""
    data = path.read_bytes()
    for r in msgpack.Unpacker(open(path, "rb"), raw=False):
        if r.get("e") == "end" and r.get("task") == task and r.get("result"):
            return data.rindex(r["result"]), len(r["result"])
    raise AssertionError(f"no result of {task}")


@pytest.mark.parametrize("where", ["tag", "second", "middle", "last"])
@pytest.mark.parametrize("snapshot", [False, True])
def test_a_changed_byte_in_a_stored_result_makes_the_resume_run_it_again(flow, tmp_path, where, snapshot):
    flow_file, run_id, folder = failed_run(flow, tmp_path)
    journal = folder / "journal.msgpack"
    at, size = result_place(journal, "make")
    offset = at + {"tag": 0, "second": 1, "middle": size // 2, "last": size - 1}[where]
    data = bytearray(journal.read_bytes())
    data[offset] = ord("7") if data[offset] != ord("7") else ord("8")
    journal.write_bytes(bytes(data))
    if snapshot:  # the snapshot believed for this journal: its place of the result, and its checksum
        snap = json.loads((folder / "snapshot.json").read_text())
        assert snap["tasks"]["make"][5] == [at, size]
        import hashlib

        snap["journal"] = hashlib.sha256(bytes(data)).hexdigest()
        (folder / "snapshot.json").write_text(json.dumps(snap))
    else:
        (folder / "snapshot.json").unlink()
    status = flow("status", run_id, cwd=tmp_path)
    assert status.returncode == 0 and "Traceback" not in status.stderr, explain(status)
    (tmp_path / "fail").unlink()
    proc, report = run_json(flow, flow_file, "--resume", run_id)
    assert proc.returncode == 0, explain(proc)
    assert "make runs again: its result in the journal is damaged" in proc.stderr
    assert "kept_from" not in report["tasks"]["make"] and "kept_from" not in report["tasks"]["count"]
    assert report["tasks"]["small"].get("kept_from") == run_id  # what did not use it is kept
    check_results(report["tasks"])


def test_a_damaged_cache_entry_is_a_miss(flow, tmp_path):
    flow_file = write_project(tmp_path, """
        task make { run bigtasks:make cache }
        task count { run bigtasks:count with { rows = make } }
    """, TASKS)
    proc, _ = run_json(flow, flow_file)
    assert proc.returncode == 0, explain(proc)
    (entry,) = (tmp_path / ".flow" / "cache").rglob("*.msgpack")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x01
    entry.write_bytes(bytes(data))
    proc, report = run_json(flow, flow_file)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["make"]["status"] == "success" and report["tasks"]["count"]["result"] == ROWS
    proc, report = run_json(flow, flow_file)
    assert report["tasks"]["make"]["status"] == "cached" and report["tasks"]["count"]["result"] == ROWS


# ---- the runner decodes only what it shows or looks inside -----------------------------------


@pytest.fixture
def decodes(monkeypatch):
    """Calls in this process of the codec's decoders on the big result (`make`'s: over 64 kB), by kind:
    "shown" (a report's view of it) or "other" (any other decoding). Small results are shown in
    report.json, which decodes them."""
    counts = {"shown": 0, "other": 0}
    decode, view = codec.decode_result, codec.result_json

    def counted_decode(data, allow_pickle):
        counts["other"] += len(data) > 1 << 16
        return decode(data, allow_pickle)

    def counted_view(data, allow_pickle):
        counts["shown"] += len(data) > 1 << 16
        return view(data, allow_pickle)

    monkeypatch.setattr(codec, "decode_result", counted_decode)
    monkeypatch.setattr(codec, "result_json", counted_view)
    return counts


def test_the_runner_never_decodes_a_result_it_passes_on(tmp_path, decodes, capsys, monkeypatch):
    from flowdsl.cli.command import main

    write_project(tmp_path, """
        pipeline big { concurrency 2 }
        task make { run bigtasks:make }
        task count { run bigtasks:count with { rows = make } }
        task again { run bigtasks:count with { rows = make } after count }
    """, TASKS)
    state = str(tmp_path / "state")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "p.flow", "--state-dir", state, "-q"]) == 0
    assert decodes == {"shown": 0, "other": 0}
    run_id = only_run(tmp_path / "state")
    for argv in (["run", "p.flow", "--resume", run_id], ["run", "p.flow", "--from", "count"],
                 ["status", run_id], ["runs"], ["report", run_id, "--html", str(tmp_path / "r.html")]):
        assert main(argv + ["--state-dir", state]) == 0, argv
        assert decodes == {"shown": 0, "other": 0}, argv
    assert main(["status", run_id, "--json", "--state-dir", state]) == 0
    assert decodes == {"shown": 1, "other": 0}  # it is shown: then it is decoded, once
    assert main(["run", "p.flow", "--json", "--state-dir", state]) == 0
    assert decodes == {"shown": 2, "other": 0}
    capsys.readouterr()


def test_the_snapshot_names_big_results_by_their_place_and_reads_back_the_same(flow, tmp_path):
    flow_file = write_project(tmp_path, """
        task items { run pad:items }
        task each { run pad:pad  with { i = x }  foreach x in items }
        task same { run pad:pad  with { i = 0 } }
        task fail { sh "exit 1"  after each }
    """, {"pad.py": """
        def items():
            return list(range(30))

        def pad(i):
            return {"i": i, "text": "x" * 5000}
    """})
    proc, _ = run_json(flow, flow_file)
    assert proc.returncode == 1, explain(proc)
    folder = tmp_path / ".flow" / "runs" / only_run(tmp_path / ".flow")
    snap = json.loads((folder / "snapshot.json").read_text())
    assert (folder / "snapshot.json").stat().st_size < 20_000  # 31 results of 5 kB: named, not copied
    places = [snap["tasks"][f"each[{i}]"][5] for i in range(30)]
    assert all(isinstance(p, list) for p in places) and len({p[0] for p in places}) == 30
    from_snapshot = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    (folder / "snapshot.json").unlink()
    from_journal = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
    assert from_snapshot == from_journal
    assert from_journal["tasks"]["each[7]"]["result"] == {"i": 7, "text": "x" * 5000}
