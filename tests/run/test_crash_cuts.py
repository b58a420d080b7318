"""Crash consistency, proven at every point: the journal cut after every record and inside every record.

Three journals are cut: a run that uses foreach (from a result), retries with
delays, `when failure` and `always`, `cache` and hooks; the same run with a
resume session after it; and a `--from` run. From each cut the real driver
(run.driver.Runner, in this process, on a real journal) resumes, with a
backend that answers at once and always alike. Then:

* no task whose success is in the cut journal runs again, unless something
  upstream of it had not succeeded there (a failed task runs again, and what
  depends on it follows);
* every task ends (nothing pending, queued or running);
* statuses and results equal those of the run that was never cut;
* for a cut inside a resume session, a second resume runs nothing that
  succeeded.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List, Set, Tuple

import msgpack
import pytest

from flowdsl import check
from flowdsl.lang import planner
from flowdsl.run.driver import Runner, RunOptions
from flowdsl.run.worker import Outcome
from flowdsl.store import codec, history, journal, state

FLOW = """
pipeline p {
    on failure sh "alert"
    on finish sh "finish"
}
task a      { sh "list" output json }
task fe     { foreach x in a  sh "fe {x}" }
task flaky  { sh "flaky" retry 2 delay 10ms }
task c      { sh "c"  with { n = fe }  cache }
task bad    { sh "bad" }
task onbad  { sh "onbad" after bad when failure }
task fin    { sh "fin" after c, flaky, onbad when always }
task last   { sh "last {fin}" }
task sensor { wait sh "sensor" every 10ms }
task never  { sh "never" if a == [] }
task some   { foreach x in a  sh "some {x}"  if x > 1 }
task join   { sh "join" after never, sensor, some when none_failed }
"""


class InstantBackend:
    """Answers every attempt at once, the same way every time: `flaky` fails its odd attempts, `bad` every one,
    a sensor says "not yet" to its first two checks."""

    runs_hooks = True
    capacity = 4

    def __init__(self) -> None:
        self.done: List[Outcome] = []
        self.checks: Dict[Tuple[str, int], int] = {}

    def submit(self, attempt) -> None:
        what = attempt.target or " ".join(attempt.argv)
        t = 1.0
        if attempt.sensor:  # "not yet" twice, then ready, for each attempt of each session
            seen = self.checks[(attempt.key, attempt.number)] = self.checks.get((attempt.key, attempt.number), 0) + 1
            if seen <= 2:
                self.done.append(Outcome(attempt.key, attempt.number, False, started=t, finished=t,
                                         error={"type": "NotYet", "message": "not yet", "traceback": ""}))
                return
        if what == "bad" or (what == "flaky" and attempt.number % 2 == 1):
            self.done.append(Outcome(attempt.key, attempt.number, False, started=t, finished=t,
                                     error={"type": "RuntimeError", "message": what, "traceback": ""}))
            return
        args = sorted((k, v) for k, v in attempt.env.items() if k.startswith("FLOW_ARG_"))
        value: Any = [1, 2, 3] if what == "list" else f"out:{what}:{args}"
        self.done.append(Outcome(attempt.key, attempt.number, True, result=codec.encode_result(value, "msgpack"),
                                 started=t, finished=t))

    def wait(self, timeout):
        done, self.done = self.done, []
        if not done and timeout:
            import time

            time.sleep(min(timeout, 0.02))
        return done

    def kill(self, key: str) -> None:
        pass

    def interrupt(self) -> None:
        pass

    def close(self) -> None:
        pass


class Silent:
    refresh = 0.05

    def __getattr__(self, name):
        return lambda *a, **k: None


def load(path: str, from_=()):
    loaded = check(path)
    assert not [d for d in loaded.diagnostics if d.severity == "error"]
    plan = planner.make_plan(loaded.program)
    forced = planner.downstream_closure(plan.graph, from_) & set(plan.tasks) if from_ else set()
    return plan, forced


def run(path: str, state_dir: str, **options) -> Dict[str, Any]:
    plan, forced = load(path, options.pop("from_", ()))
    opts = RunOptions(state_dir=state_dir, backend=InstantBackend(), forced=forced, **options)
    return Runner(plan, opts, Silent()).run()


def resume(path: str, state_dir: str, run_id: str) -> Dict[str, Any]:
    """As `flow run --resume RUN_ID` does it (cli.run.resume_options)."""
    head = journal.head(state.journal_path(state.run_dir(state_dir, run_id)))
    opts: Dict[str, Any] = {"run_id": run_id, "resume": True}
    if head.get("from_run"):
        opts["earlier_forced"] = set(head.get("forced") or ())
        opts["earlier_id"] = head["from_run"]
        opts["earlier"] = history.load(state.run_dir(state_dir, head["from_run"]))
    return run(path, state_dir, **opts)


def boundaries(path: str) -> List[Tuple[int, int]]:
    """(start, end) byte offsets of each record."""
    with open(path, "rb") as f:
        data = f.read()
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    out, start = [], 0
    for _ in unpacker:
        end = unpacker.tell()
        out.append((start, end))
        start = end
    assert start == len(data)
    return out


def cuts(path: str, first: int = 1) -> List[int]:
    """Every offset after a whole record (from record `first` on) and one inside each record after it."""
    bounds = boundaries(path)
    offsets = []
    for i, (start, end) in enumerate(bounds):
        if i >= first:
            offsets.append(start + (end - start) // 2)  # torn inside the record
        if i + 1 >= first:
            offsets.append(end)
    return sorted(set(offsets))


def succeeded(run: state.RunState) -> Set[str]:
    return {k for k, s in run.tasks.items() if s.status in state.SUCCEEDED}


def starts_after(path: str, offset: int) -> List[str]:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    return [r["task"] for r in _records(data) if r["e"] == "start"]


def _records(data: bytes):
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data)
    return list(unpacker)


def view(report: Dict[str, Any]) -> Dict[str, Tuple[str, Any]]:
    """Each task's status and result (`cached` counts as `success`: a cut run may find the cache filled)."""
    return {k: ("success" if t["status"] == "cached" else t["status"], t["result"])
            for k, t in report["tasks"].items()}


def task_succeeded(run: state.RunState, name: str) -> bool:
    s = run.aggregate(name) if name in run.instances else run.tasks.get(name)
    return s is not None and s.status in state.SUCCEEDED


def may_run_again(key: str, run: state.RunState, graph, forced: Set[str]) -> bool:
    """A journaled success may run again only if something it depends on had not succeeded (or --from names it)."""
    name = key.split("[", 1)[0]
    if name in forced:
        return True
    return any(not task_succeeded(run, u) for u in planner.upstream_closure(graph, [name]) - {name})


def check_resumes(project, folder: str, run_id: str, offsets: List[int], whole: Dict[str, Any],
                  forced: Set[str], twice: bool, never: Set[str] = frozenset()) -> int:
    """Resume from each cut (and again, with `twice`); `never`: keys no resume may start at all."""
    path = str(project / "p.flow")
    plan, _ = load(path)
    checked = 0
    for offset in offsets:
        trial = str(project / f"trial-{offset}")
        shutil.rmtree(trial, ignore_errors=True)
        shutil.copytree(folder, trial, ignore=shutil.ignore_patterns("snapshot.json", "report.json",
                                                                     "summary.json"))
        jpath = state.journal_path(state.run_dir(trial, run_id))
        os.truncate(jpath, offset)
        cut_state, _ = history.replay(state.run_dir(trial, run_id))
        before = succeeded(cut_state)
        size = boundaries_end(jpath)
        report = resume(path, trial, run_id)
        again = [k for k in starts_after(jpath, size)
                 if k in before and not may_run_again(k, cut_state, plan.graph, forced)]
        assert again == [], f"cut at {offset}: {again} ran again though their success was journaled"
        assert not set(starts_after(jpath, size)) & never, f"cut at {offset}: {never} must be kept"
        assert not [k for k, t in report["tasks"].items() if t["status"] not in ("success", "failed", "skipped",
                                                                                   "cached")], offset
        assert view(report) == view(whole), f"cut at {offset}"
        if twice:
            first_state = history.replay(state.run_dir(trial, run_id))[0]
            kept = succeeded(first_state)
            size = os.path.getsize(jpath)
            second = resume(path, trial, run_id)
            again = [k for k in starts_after(jpath, size)
                     if k in kept and not may_run_again(k, first_state, plan.graph, set())]
            assert again == [], f"cut at {offset}, second resume: {again} ran again"
            assert view(second) == view(whole)
        shutil.rmtree(trial)
        checked += 1
    return checked


def boundaries_end(path: str) -> int:
    """Where the whole records of a (possibly torn) journal end: what a resume keeps."""
    _, end = journal.scan(path)
    return end if end is not None else os.path.getsize(path)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "p.flow").write_text(FLOW)
    return tmp_path


def first_run(project) -> Tuple[str, str, Dict[str, Any]]:
    folder = str(project / "state")
    report = run(str(project / "p.flow"), folder)
    assert report["status"] == "failed"  # `bad` always fails
    assert report["tasks"]["flaky"]["attempts"] == 2 and report["tasks"]["fe"]["status"] == "success"
    assert [h["event"] for h in report["hooks"]] == ["failure", "finish"]
    return folder, report["run_id"], report


def test_every_cut_of_a_run(project):
    folder, run_id, whole = first_run(project)
    jpath = state.journal_path(state.run_dir(folder, run_id))
    offsets = cuts(jpath)
    assert len(offsets) > 40
    assert check_resumes(project, folder, run_id, offsets, whole, set(), twice=False) == len(offsets)


def test_every_cut_inside_a_resume_session(project):
    folder, run_id, _ = first_run(project)
    jpath = state.journal_path(state.run_dir(folder, run_id))
    first_session = len(boundaries(jpath))
    whole = resume(str(project / "p.flow"), folder, run_id)
    offsets = cuts(jpath, first=first_session)
    assert len(offsets) > 20
    assert check_resumes(project, folder, run_id, offsets, whole, set(), twice=True) == len(offsets)


def test_every_cut_of_a_from_run(project):
    folder, earlier_id, _ = first_run(project)
    path = str(project / "p.flow")
    plan, forced = load(path, ["flaky"])
    earlier = history.load(state.run_dir(folder, earlier_id))
    whole = run(path, folder, from_=["flaky"], earlier_id=earlier_id, earlier=earlier)
    run_id = whole["run_id"]
    ran = [r["task"] for r in journal.read(state.journal_path(state.run_dir(folder, run_id))) if r["e"] == "start"]
    assert "a" not in ran and "c" not in ran and "flaky" in ran  # a and c were reused, flaky was forced
    jpath = state.journal_path(state.run_dir(folder, run_id))
    offsets = cuts(jpath)
    # a cut run's folder is copied with the earlier run beside it; what the earlier run made
    # upstream of --from's task is taken from it by every resume, however little was taken before the cut
    never = {"a", "fe[0]", "fe[1]", "fe[2]", "c"}
    assert check_resumes(project, folder, run_id, offsets, whole, forced, twice=False, never=never) == len(offsets)


def test_a_journal_that_cannot_be_written_fails_the_run_and_leaves_no_snapshot(project):
    """Mid-run the journal's disk is full for a while (/dev/full under its descriptor, until the hooks run):
    the run fails, and its resume runs again what the journal lost (no snapshot may stand in for it)."""
    path = str(project / "p.flow")
    folder = str(project / "state")
    plan, _ = load(path)

    class FullDisk(InstantBackend):
        def submit(self, attempt) -> None:
            if attempt.key in ("c", "on_failure"):  # c: every write fails with ENOSPC; the hook: room again
                other = os.open("/dev/full" if attempt.key == "c" else runner.journal.path, os.O_WRONLY | os.O_APPEND)
                os.dup2(other, runner.journal.fd)
                os.close(other)
            super().submit(attempt)

    runner = Runner(plan, RunOptions(state_dir=folder, backend=FullDisk()), Silent())
    report = runner.run()
    assert report["status"] == "failed" and "No space left" in report["reason"]
    run_id = report["run_id"]
    folder_of_run = state.run_dir(folder, run_id)
    assert not os.path.exists(os.path.join(folder_of_run, state.SNAPSHOT))
    records = journal.read(state.journal_path(folder_of_run))  # the turn that failed is lost, the rest is whole
    assert [r["task"] for r in records if r["e"] == "start"].count("c") == 0 and records[-1]["e"] == "done"
    again = resume(path, folder, run_id)  # c comes from the cache its success wrote, or runs again
    assert view(again) == view(run(path, str(project / "clean")))
