"""The journal's cost per task, written and replayed, at 100, 1,000 and 10,000 tasks.

    python3 benchmarks/journal_cost.py [--sizes 100,1000,10000] [--repeat 5] [--turn 4]

In-process, like the runner: a `flowdsl.store.journal.Writer` in a temporary
folder gets the `run` record (fsynced, as the runner does), then per task a
`start` and an `end` record (result: `codec.encode_result({"rows": i})`),
each applied to a `flowdsl.store.state.RunState` as it is appended; one
`group_commit()` per turn of `--turn` tasks (a runner at concurrency 4
commits the ends of one turn with the starts of the next), then the `done`
record and `close()`. Wall time therefore includes the group-commit fsyncs
(at most one per journal.SYNC_INTERVAL, plus the first and the last): that
is the real policy. The temporary folder is on the disk of $TMPDIR.

Printed per N, the best of the repeats (a 100-task journal takes under a
millisecond, so one preemption would swamp a median on a busy machine):
microseconds per task for the whole journal (open to close: its fixed cost,
the open and the first and last fsync, weighs most at 100 tasks) and for
the loop alone (after the run record's fsync, before the final one); and
replay, `journal.scan(path)` plus `RunState.apply` of every record, in
microseconds per record. The goal: a flat cost, cost(10,000) / cost(100)
about 1.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from flowdsl.store import codec, journal, state  # noqa: E402


def write_journal(folder: str, n: int, turn: int) -> dict:
    """One run's journal of n tasks; the times taken and the records written."""
    path = os.path.join(folder, f"journal-{n}.msgpack")
    if os.path.exists(path):
        os.remove(path)
    names = [f"t{i}" for i in range(n)]
    run = state.RunState()
    count = 0

    def record(writer: journal.Writer, r: dict, sync: bool = False) -> None:
        nonlocal count
        writer.append(r, sync=sync)
        run.apply(r)
        count += 1

    t0 = time.perf_counter()
    writer = journal.Writer(path)
    record(writer, {"e": "run", "v": journal.VERSION, "run_id": f"bench-20260101T000000000-{n % 65536:04x}",
                    "pipeline": "bench", "file": "bench.flow", "fingerprint": "0" * 16, "params": {},
                    "logical_date": "2026-01-01T00:00:00+00:00", "trigger": "manual", "t": time.time(),
                    "pid": os.getpid(), "targets": [], "tasks": names, "results": "msgpack",
                    "executor": "process", "overrides": None}, sync=True)
    t1 = time.perf_counter()
    previous: list = []
    for lo in range(0, n, turn):
        for i in previous:  # the last turn's attempts end...
            record(writer, {"e": "end", "task": names[i], "n": 1, "t": time.time(), "status": "success",
                            "result": codec.encode_result({"rows": i}, "msgpack")})
        previous = range(lo, min(n, lo + turn))
        for i in previous:  # ...and this turn's start
            record(writer, {"e": "start", "task": names[i], "n": 1, "t": time.time(), "fp": f"d{i:09x}.s-.i0"})
        writer.group_commit()
    for i in previous:
        record(writer, {"e": "end", "task": names[i], "n": 1, "t": time.time(), "status": "success",
                        "result": codec.encode_result({"rows": i}, "msgpack")})
    record(writer, {"e": "done", "status": "success", "t": time.time(), "reason": None})
    writer.flush()
    t2 = time.perf_counter()
    writer.close()
    t3 = time.perf_counter()
    if run.status != "success" or sum(1 for s in run.tasks.values() if s.status == "success") != n:
        sys.exit(f"N={n}: the RunState does not show {n} successes")
    return {"path": path, "whole": t3 - t0, "loop": t2 - t1, "records": count, "size": os.path.getsize(path)}


def replay(path: str, n: int) -> float:
    t0 = time.perf_counter()
    records, _ = journal.scan(path)
    run = state.RunState()
    for r in records:
        run.apply(r)
    elapsed = time.perf_counter() - t0
    if run.status != "success" or len(run.tasks) != n:
        sys.exit(f"N={n}: the replay does not show {n} tasks and a successful run")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000", help="task counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=5, help="runs per size (the best counts)")
    ap.add_argument("--turn", type=int, default=4, help="tasks per group commit (the runner's concurrency)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    folder = tempfile.mkdtemp(prefix="flow-journal-bench-")
    rows = []
    try:
        for n in sizes:
            written = [write_journal(folder, n, args.turn) for _ in range(args.repeat)]
            replays = [replay(written[-1]["path"], n) for _ in range(args.repeat)]
            records = written[-1]["records"]
            rows.append({
                "n": n, "records": records, "bytes": written[-1]["size"] / n,
                "whole": min(w["whole"] for w in written) / n * 1e6,
                "loop": min(w["loop"] for w in written) / n * 1e6,
                "replay": min(replays) / records * 1e6,
            })
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    print(f"journal cost per task (a start and an end record, one group commit per {args.turn} tasks; "
          f"best of {args.repeat}; fsync interval {journal.SYNC_INTERVAL} s)")
    print(f"  {'tasks':>6}  {'records':>7}  {'bytes/task':>10}  {'write, whole':>12}  {'write, loop':>11}  "
          f"{'replay':>14}")
    for r in rows:
        print(f"  {r['n']:>6}  {r['records']:>7}  {r['bytes']:>10.1f}  {r['whole']:>9.2f} us  {r['loop']:>8.2f} us  "
              f"{r['replay']:>6.2f} us/record")
    first, last = rows[0], rows[-1]
    if len(rows) > 1:
        print(f"  cost({last['n']}) / cost({first['n']}): write, whole {last['whole'] / first['whole']:.2f}; "
              f"write, loop {last['loop'] / first['loop']:.2f}; replay {last['replay'] / first['replay']:.2f} "
              f"(goal: about 1, flat)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
