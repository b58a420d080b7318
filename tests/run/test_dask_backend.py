"""The Dask backend by itself (no runner): when an attempt waits in Dask's queue, and when it begins.

The cluster is the smallest that queues: `dask scheduler` and one `dask
worker` with one thread, on 127.0.0.1, each command in its own session so
that the finalizer kills every process it started, by process group. The
attempts are built as the runner builds them and go through DaskBackend's
submit / wait / interrupt, as the runner calls them.
"""

import textwrap
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed: pip install -e '.[dask]'")

from daskkit import Cluster  # noqa: E402

from flowdsl.run.dask import DaskBackend  # noqa: E402
from flowdsl.run.worker import Attempt, Began, Outcome  # noqa: E402
from flowdsl.store import codec  # noqa: E402

NAP = 1.5  # seconds each attempt sleeps
EPSILON = 0.05  # seconds of slack between clocks read on the same machine


@pytest.fixture(scope="module")
def one_thread(tmp_path_factory):
    """The address of a cluster with one worker of one thread: a second attempt waits for the first."""
    c = Cluster(tmp_path_factory.mktemp("cluster"), workers=1, threads=1)
    try:
        c.start()
        yield c.address
    finally:
        c.stop()


@pytest.fixture
def backend(one_thread, tmp_path):
    (tmp_path / "nap.py").write_text(textwrap.dedent("""
        import time

        def nap(seconds):
            time.sleep(seconds)
            return "rested"
    """))
    b = DaskBackend(one_thread, [str(tmp_path)], timeout=30)
    try:
        yield b
    finally:
        b.close()


def attempt(folder: Path, key: str, kind: str, target: str, **fields) -> Attempt:
    """An attempt as the runner makes one (runner.make_attempt)."""
    return Attempt(key=key, number=1, kind=kind, target=target, cwd=str(folder), sys_path=(str(folder),),
                   env={"FLOW_TASK": key}, log_path=str(folder / f"{key}.1.log"), timeout=fields.pop("timeout", None),
                   results="msgpack", **fields)


def collect(backend: DaskBackend, count: int, within: float = 30.0):
    """(what wait() returned, the time each arrived) until `count` Outcomes came."""
    items, arrived = [], []
    give_up = time.monotonic() + within
    while sum(isinstance(x, Outcome) for x in items) < count:
        assert time.monotonic() < give_up, items
        got = backend.wait(0.2)
        now = time.time()
        for x in got:
            items.append(x)
            arrived.append(now)
    return items, arrived


def test_an_attempt_queued_behind_another_begins_when_the_first_ends(backend, tmp_path):
    assert DaskBackend.queues is True
    submitted = time.time()
    # both past a timeout of 2 s if the queue counted: the runner's deadline starts at Began
    backend.submit(attempt(tmp_path, "first", "run", "nap:nap", kwargs={"seconds": NAP}, timeout=2.0))
    backend.submit(attempt(tmp_path, "second", "sh", f"sleep {NAP}", timeout=2.0))
    items, arrived = collect(backend, 2)

    keys = [x.key for x in items]
    began = {x.key: (i, x) for i, x in enumerate(items) if isinstance(x, Began)}
    ended = {x.key: (i, x) for i, x in enumerate(items) if isinstance(x, Outcome)}
    assert sorted(ended) == ["first", "second"], items
    for key in ended:  # exactly one Began per attempt, before its Outcome
        assert sum(1 for x in items if isinstance(x, Began) and x.key == key) == 1, items
        assert began[key][0] < ended[key][0], keys
        assert began[key][1].number == ended[key][1].number == 1
        assert ended[key][1].ok, ended[key][1].error

    # Dask picks the order: the first to begin is the one that did not wait
    one, two = sorted(ended, key=lambda k: began[k][1].t)
    b1, b2 = began[one][1], began[two][1]
    o1, o2 = ended[one][1], ended[two][1]
    assert b1.t - submitted < 1.0, (b1, submitted)  # promptly, on the worker's free thread
    assert arrived[began[one][0]] - submitted < 2.0
    # the second began only once the first ended, and the runner hears of it after the first Outcome
    assert b2.t >= o1.finished - EPSILON, (b2, o1)
    assert began[two][0] > ended[one][0], keys
    for b, o in ((b1, o1), (b2, o2)):
        assert abs(o.started - b.t) < EPSILON, (b, o)  # started is when it left the queue, not when submitted
        assert NAP - EPSILON <= o.finished - o.started < NAP + 1.0, o  # the wait in the queue is not counted
    assert o2.started - submitted >= NAP - EPSILON
    assert codec.decode_result(ended["first"][1].result, allow_pickle=False) == "rested"


def test_interrupt_cancels_the_attempts_still_queued(backend, tmp_path):
    backend.submit(attempt(tmp_path, "running", "run", "nap:nap", kwargs={"seconds": 10}))
    backend.submit(attempt(tmp_path, "queued", "run", "nap:nap", kwargs={"seconds": 10}))
    items, give_up = [], time.monotonic() + 15
    while not any(isinstance(x, Began) for x in items):
        assert time.monotonic() < give_up, items
        items += backend.wait(0.2)
    (running,) = [x.key for x in items if isinstance(x, Began)]
    queued = "queued" if running == "running" else "running"
    began = time.monotonic()
    backend.interrupt()
    more, _ = collect(backend, 2, within=10)
    items += more
    assert time.monotonic() - began < 5  # neither slept its 10 s
    outcomes = {x.key: x for x in items if isinstance(x, Outcome)}
    assert {k: o.error["type"] for k, o in outcomes.items()} == {running: "Interrupted", queued: "Interrupted"}
    assert "queue" in outcomes[queued].error["message"], outcomes[queued]
    # the queued one still has its one Began, right before its Outcome, at the same time
    i = next(i for i, x in enumerate(items) if isinstance(x, Outcome) and x.key == queued)
    assert isinstance(items[i - 1], Began) and items[i - 1].key == queued
    assert items[i - 1].t == outcomes[queued].started
    assert [x.key for x in items if isinstance(x, Began)].count(queued) == 1


def test_files_shipped_with_the_code_are_where_an_attempt_off_the_runners_disk_runs(one_thread, tmp_path):
    """A worker without the pipeline's folder runs the attempt in the run's own folder, which holds the files
    shipped with the code (as they lay beside the .flow file); the folder goes when the run ends."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.csv").write_text("a,b\n1,2\n")
    (tmp_path / "lookup.txt").write_text("looked up\n")
    b = DaskBackend(one_thread, [str(tmp_path)], timeout=30,
                    data={"data": str(tmp_path / "data"), "lookup.txt": str(tmp_path / "lookup.txt")})
    try:
        far = Attempt(key="far", number=1, kind="sh", target="cat data/rows.csv lookup.txt; pwd",
                      cwd="/nonexistent/pipeline/folder", env={"FLOW_TASK": "far"},
                      log_path=str(tmp_path / "far.1.log"), results="msgpack")
        b.submit(far)
        items, _ = collect(b, 1)
    finally:
        b.close()
    (outcome,) = [x for x in items if isinstance(x, Outcome)]
    assert outcome.ok, outcome.error
    text = codec.decode_result(outcome.result, allow_pickle=False)
    lines = text.split("\n")
    assert lines[:3] == ["a,b", "1,2", "looked up"], text
    assert f"flow-runs/{b.token}/files" in lines[3], text
    assert not Path(lines[3]).exists()  # removed with the run's upload when the backend closed


def test_small_outcomes_come_as_events_and_big_ones_are_fetched(backend, tmp_path, monkeypatch):
    """An outcome of at most daskhost.EARLY_BYTES travels as an event ahead of its future (no gather for it),
    and ahead of the Began of the attempt that took its thread (both on the worker's stream). A bigger one
    (a long log here) is fetched with its future, as before. All come back whole."""
    from flowdsl.run import daskhost

    gathered = []
    gather = backend.client.gather
    monkeypatch.setattr(backend.client, "gather", lambda futures, *a, **k: gathered.extend(futures) or gather(
        futures, *a, **k))
    for i in range(6):  # submitted in one turn: one client.map for all
        backend.submit(attempt(tmp_path, f"small{i}", "sh", f"echo {i}"))
    items, _ = collect(backend, 6)
    outcomes = {x.key: x for x in items if isinstance(x, Outcome)}
    assert {k: codec.decode_result(o.result, allow_pickle=False) for k, o in outcomes.items()} == {
        f"small{i}": str(i) for i in range(6)}
    assert all(o.worker for o in outcomes.values())
    order = [(type(x).__name__, x.key) for x in items]
    assert gathered == [], order
    begun = [k for kind, k in order if kind == "Began"]  # in the order the one thread took them
    for one, then in zip(begun, begun[1:]):  # each attempt's Outcome comes before the next one's Began
        assert order.index(("Outcome", one)) < order.index(("Began", then)), order
    gathered.clear()
    big = "x" * (daskhost.EARLY_BYTES + 100)
    backend.submit(attempt(tmp_path, "big", "sh", f"echo {big} >&2; echo done"))
    items, _ = collect(backend, 1)
    (outcome,) = [x for x in items if isinstance(x, Outcome)]
    assert outcome.ok and codec.decode_result(outcome.result, allow_pickle=False) == "done"
    assert [f.key for f in gathered] == [backend._dask_key(attempt(tmp_path, "big", "sh", ""))]
    assert big in (tmp_path / "big.1.log").read_text()


def test_a_claim_passes_on_only_from_a_worker_still_alive(backend):
    """The run's guard on the real scheduler: a worker asks for the claims of the attempts queued on it; only
    the holder may start one. A claim passes to another worker while its holder lives (Dask moved the queued
    attempt: it steals only what has not started), never from a worker the scheduler lost, nor from an
    earlier process at the same address (a worker restarted on a fixed port)."""
    (address, server), = backend.client.run_on_scheduler(
        lambda dask_scheduler: {a: ws.server_id for a, ws in dask_scheduler.workers.items()}).items()
    alive = (address, server)
    gone = ("tcp://127.0.0.1:9", "Worker-gone")
    restarted = (address, "Worker-before")

    def ask(keys, holder):  # a lambda travels by value: the scheduler cannot import this module
        guard = backend.guard
        return backend.client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins[guard].claim(keys=keys, worker=holder[0], server=holder[1]))

    assert ask(["a-1", "b-1"], alive) == {"a-1": True, "b-1": True}
    assert ask(["a-1"], alive) == {"a-1": True}  # asked again by its holder
    assert ask(["a-1"], gone) == {"a-1": True}  # moved on from a live holder
    refused = ask(["a-1", "c-1"], alive)  # its holder now is one the scheduler does not know
    assert refused["c-1"] is True and "did not start it" in refused["a-1"], refused
    assert ask(["d-1"], restarted) == {"d-1": True}
    refused = ask(["d-1"], alive)
    assert "at most once" in refused["d-1"], refused
