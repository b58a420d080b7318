"""`flow runs` over a state folder of 1,000 runs, from summaries and from journals.

    python3 benchmarks/runs_listing.py [--runs 1000] [--repeat 5] [--pyz dist/flow.pyz]

Makes the state folder quickly but realistically: a 3-task pipeline runs
once for real through the zipapp, and its run folder is copied N-1 times
under `<state>/runs/` with new run ids of the same shape
(`<pipeline>-<UTC %Y%m%dT%H%M%S><ms>-<4 hex>`, distinct, a minute apart),
each copy's `summary.json` and journal rewritten to its own run id and
times. A second state folder holds the same runs without their
`summary.json`, so that `flow runs` falls back to replaying every journal.

Times `python flow.pyz runs --state-dir S` (the table) and `... --json`
on both folders, median of the repeats, against bare `python -c pass`,
and checks that each lists all N runs (the JSON is parsed). The goal:
under 0.5 s over 1,000 runs.
"""

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import msgpack  # noqa: E402
from benchkit import ensure_pyz  # noqa: E402

from flowdsl.store import journal  # noqa: E402

GOAL_S = 0.5
PIPELINE = "tiny"


def write_pipeline(folder: str) -> str:
    with open(os.path.join(folder, "tiny_tasks.py"), "w") as f:
        f.write("def noop():\n    return 1\n")
    path = os.path.join(folder, "tiny.flow")
    with open(path, "w") as f:
        f.write(f"pipeline {PIPELINE} {{ concurrency 2 }}\n"
                "task a { run tiny_tasks:noop }\n"
                'task b { sh "true" after a }\n'
                "task c { run tiny_tasks:noop after b }\n")
    return path


def shifted_iso(text, delta: float):
    if not text:
        return text
    return (dt.datetime.fromisoformat(text) + dt.timedelta(seconds=delta)).isoformat(timespec="milliseconds")


def make_copies(state: str, count: int) -> list:
    """Copy the one real run `count` times (older than it, a minute apart); every run id, the real one too."""
    runs = os.path.join(state, "runs")
    (original,) = os.listdir(runs)
    source = os.path.join(runs, original)
    records = journal.read(os.path.join(source, "journal.msgpack"))
    with open(os.path.join(source, "summary.json"), encoding="utf-8") as f:
        summary = json.load(f)
    start = records[0]["t"]
    ids = [original]
    for i in range(count):
        delta = -60.0 * (count - i) + (i % 997) / 1000  # distinct milliseconds too
        t = dt.datetime.fromtimestamp(start + delta, dt.timezone.utc)
        run_id = f"{PIPELINE}-{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}-{i:04x}"
        folder = os.path.join(runs, run_id)
        shutil.copytree(source, folder)
        line = dict(summary, run_id=run_id, logical_date=shifted_iso(summary.get("logical_date"), delta),
                    started_at=shifted_iso(summary.get("started_at"), delta),
                    finished_at=shifted_iso(summary.get("finished_at"), delta))
        with open(os.path.join(folder, "summary.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
        packer = msgpack.Packer(use_bin_type=True)
        with open(os.path.join(folder, "journal.msgpack"), "wb") as f:
            for r in records:
                r = dict(r, t=r["t"] + delta) if "t" in r else r
                if r["e"] == "run":
                    r = dict(r, run_id=run_id, logical_date=shifted_iso(r["logical_date"], delta))
                f.write(packer.pack(r))
        ids.append(run_id)
    if len(set(ids)) != len(ids):
        sys.exit("two copies got the same run id")
    return ids


def timed(cmd, cwd: str) -> tuple:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def check_table(out: str, ids: list, what: str) -> None:
    rows = [line.split()[0] for line in out.splitlines()[2:] if line.strip()]
    if sorted(rows) != sorted(ids):
        sys.exit(f"{what}: the table lists {len(rows)} runs, expected {len(ids)}")


def check_json(out: str, ids: list, what: str) -> None:
    entries = json.loads(out)
    got = [e["run_id"] for e in entries]
    if sorted(got) != sorted(ids):
        sys.exit(f"{what}: --json lists {len(got)} runs ({len(set(got))} distinct), expected {len(ids)}")
    statuses = {e["status"] for e in entries}
    if statuses != {"success"}:
        sys.exit(f"{what}: statuses {sorted(statuses)}, expected only success")
    if [e["run_id"] for e in entries] != sorted(ids, key=lambda i: i.split("-")[1], reverse=True):
        sys.exit(f"{what}: the runs are not listed newest first")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="runs in the state folder")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls of each command (median)")
    ap.add_argument("--pyz", default=os.path.join(ROOT, "dist", "flow.pyz"))
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    pyz = ensure_pyz(args.pyz)
    cmd = [sys.executable, pyz]
    folder = tempfile.mkdtemp(prefix="flow-runs-bench-")
    try:
        write_pipeline(folder)
        with_summaries = os.path.join(folder, "state")
        timed(cmd + ["run", "tiny.flow", "-q", "--state-dir", with_summaries], folder)
        t0 = time.perf_counter()
        ids = make_copies(with_summaries, args.runs - 1)
        journals_only = os.path.join(folder, "state-journals")
        shutil.copytree(with_summaries, journals_only)
        for run_id in ids:
            os.remove(os.path.join(journals_only, "runs", run_id, "summary.json"))
        made = time.perf_counter() - t0
        bare = statistics.median(timed([sys.executable, "-c", "pass"], folder)[0] for _ in range(args.repeat))
        results = []
        for label, state in (("summary.json", with_summaries), ("journals only", journals_only)):
            for form, extra, check in (("table", [], check_table), ("--json", ["--json"], check_json)):
                times = []
                for _ in range(args.repeat):
                    elapsed, out = timed(cmd + ["runs", "--state-dir", state] + extra, folder)
                    check(out, ids, f"{label}, {form}")
                    times.append(elapsed)
                results.append((label, form, statistics.median(times)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"`flow runs` over {len(ids)} runs ({os.path.basename(pyz)}, median of {args.repeat}; "
          f"state folders made in {made:.2f} s)")
    for label, form, seconds in results:
        verdict = "ok" if seconds < GOAL_S else "MISSED"
        print(f"  {label:13}  {form:6}  {seconds:6.3f} s   {seconds / bare:5.1f}x bare   "
              f"{(seconds - bare) / len(ids) * 1e6:6.1f} us/run over bare   (goal < {GOAL_S} s: {verdict})")
    print(f"  bare `python -c pass`  {bare:6.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
