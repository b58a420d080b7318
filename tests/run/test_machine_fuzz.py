"""The run machine on generated pipelines: random DAGs, `when` rules, foreach, retries, timeouts, signals,
sessions killed at random moments and resumed. Seeded, so a failure names its seed and reproduces.

Invariants checked on every pipeline:
* every session ends (the machine never waits for nothing, never completes a task twice);
* no attempt number of an instance starts twice in the whole journal;
* a success journaled before a session never starts again in it, unless something it depends on had
  not succeeded when the session began;
* a task that ran did so only when its `when` rule held;
* the last session leaves every task final, and the run's status says whether one failed.
"""

from __future__ import annotations

import random
import zlib

import pytest
from machinekit import Act, Sim

from flowdsl.lang import planner
from flowdsl.store import state

WHENS = ["success", "success", "success", "failure", "always", "none_failed"]


def pipeline(rng: random.Random) -> str:
    n = rng.randint(2, 9)
    lines = []
    flags = {f"c{i}": rng.random() < 0.6 for i in range(n)}  # params a task's `if` may test
    concurrency = f"concurrency {rng.randint(1, 3)}" if rng.random() < 0.3 else ""
    params = " ".join(f"{k} = {'true' if v else 'false'}" for k, v in flags.items())
    lines.append(f"pipeline p {{ {concurrency} params {{ {params} }} }}")
    for i in range(n):
        parts = [f"task t{i} {{"]
        roll = rng.random()
        if roll < 0.25:
            items = rng.choice(["[]", "[1]", "[1, 2, 3]", "[1, 2]"])
            parts.append(f'foreach x in {items}  sh "t{i} {{x}}"')
            if rng.random() < 0.3:
                parts.append("if x > 1")  # per instance
        elif roll < 0.4:  # a sensor: "not yet" for a while, then ready or failed
            parts.append(f'wait sh "t{i}" every {rng.choice(["1s", "3s"])}')
        else:
            parts.append(f'sh "t{i}"')
        if rng.random() < 0.2 and "foreach" not in parts[-1] and "if x" not in parts[-1]:
            parts.append(f"if params.c{i}")
        ups = sorted({f"t{j}" for j in range(i) if rng.random() < 0.35})
        if ups:
            parts.append("after " + ", ".join(ups))
            parts.append(f"when {rng.choice(WHENS)}")
        if rng.random() < 0.3:
            parts.append(f"retry {rng.randint(1, 3)} delay {rng.choice(['0s', '1s', '5s'])}")
        if rng.random() < 0.2 or "wait" in parts[1]:  # a sensor always has one: the last session must end
            parts.append(f"timeout {rng.choice(['2s', '10s', '30s'])}")
        parts.append("}")
        lines.append(" ".join(parts))
    return "\n".join(lines) + "\n"


def behaviour(seed: int, fail_rate: float):
    """What attempt n of a key does in session s: decided by a hash, so every run of the test agrees.

    An attempt may hang (ignoring the interrupt or not) except in the last session, which must end:
    there only a timeout could end it, and not every task has one.
    """
    def behave_in(session: int, last: bool):
        checks: dict = {}

        def behave(key: str, number: int, sensor: bool = False) -> Act:
            h = zlib.crc32(f"{seed}:{key}:{number}:{session}".encode()) / 2**32
            if sensor:  # "not yet" for its first few checks
                seen = checks[(key, number)] = checks.get((key, number), 0) + 1
                if seen <= int(h * 8):
                    return Act(False, 0.2 + h, "NotYet")
            if h < fail_rate:
                return Act(False, 1 + h * 3)
            if h < fail_rate + 0.05 and not last:
                return Act(True, 0.0, hang=True, obeys_interrupt=h < fail_rate + 0.03)
            return Act(True, 0.5 + h * 4)
        return behave
    return behave_in


def succeeded(run: state.RunState) -> set:
    return {k for k, s in run.tasks.items() if s.status in state.SUCCEEDED}


def task_ok(run: state.RunState, name: str) -> bool:
    s = run.aggregate(name) if name in run.instances else run.tasks.get(name)
    return s is not None and s.status in state.SUCCEEDED


def replay(records) -> state.RunState:
    run = state.RunState()
    for r in records:
        run.apply(r)
    return run


@pytest.mark.parametrize("seed", range(1000))
def test_generated_pipelines(seed):
    rng = random.Random(seed)
    flow = pipeline(rng)
    behave_in = behaviour(seed, rng.choice([0.0, 0.2, 0.5]))
    sim = Sim(flow)
    graph = planner.make_plan(sim.program).graph
    sessions = rng.randint(1, 4)
    for s in range(1, sessions + 1):
        before = replay(sim.records) if sim.records else None
        start_at = len(sim.records)
        last = s == sessions
        stop_at = None if last else rng.uniform(0.5, 30)
        signals = ((rng.uniform(0.5, 20), "SIGINT"),) if not last and rng.random() < 0.3 else ()
        m = sim.session(behave=behave_in(s, last), stop_at=stop_at, signals=signals)
        new = sim.records[start_at:]
        started = [r["task"] for r in new if r["e"] == "start"]
        if before is not None:
            done_before = succeeded(before)
            for key in started:
                if key in done_before:
                    name = key.split("[", 1)[0]
                    ups = planner.upstream_closure(graph, [name]) - {name}
                    # it may run again only if an upstream had not succeeded, or succeeded after it was made
                    # (a session cut before the rerun that made it stale reached it)
                    newer = any(before.settled_seq(u) > before.tasks[key].seq for u in sim.plan.tasks[name].upstream)
                    assert newer or any(not task_ok(before, u) for u in ups), \
                        f"seed {seed} session {s}: {key} ran again\n{flow}"
        if last:
            assert m.done, f"seed {seed}\n{flow}"
            statuses = sim.statuses()
            assert all(v in ("success", "failed", "skipped", "cached") for v in statuses.values()), \
                f"seed {seed}: {statuses}\n{flow}"
            failed = any(v == "failed" for k, v in statuses.items() if "[" not in k)
            assert m.status == ("failed" if failed else "success"), f"seed {seed}: {statuses}\n{flow}"
            check_when(sim, graph, seed, flow)
    for r in sim.records:  # an instance whose `if x > 1` is false never starts
        if r["e"] == "start" and "[" in r["task"]:
            name, index = r["task"][:-1].split("[")
            spec = sim.plan.tasks[name]
            if spec.condition is not None:
                items = [1, 2, 3]  # every generated list is a prefix of this one
                assert items[int(index)] > 1, f"seed {seed}: {r['task']} ran though its condition was false\n{flow}"
    firsts = [(r["task"], r["n"]) for r in sim.records if r["e"] == "start"]
    assert len(firsts) == len(set(firsts)), f"seed {seed}: an attempt number started twice\n{flow}"


def check_when(sim: Sim, graph, seed: int, flow: str) -> None:
    """Every task that ran in the last session did so when its rule held, judged by what its upstream became."""
    last = max(i for i, r in enumerate(sim.records) if r["e"] in ("run", "resume"))
    ran = {r["task"].split("[", 1)[0] for r in sim.records[last:] if r["e"] == "start"}
    statuses = sim.statuses()
    for name in ran:
        spec = sim.plan.tasks[name]
        ups = [statuses[u] for u in spec.upstream]
        ok = [u in ("success", "cached") for u in ups]
        if spec.condition is not None and spec.foreach_items is None:
            assert sim.program.pipeline.params.get(spec.condition_text.split(".")[1]).value, \
                f"seed {seed}: {name} ran though its condition was false\n{flow}"
        if spec.when == "success":
            assert all(ok), f"seed {seed}: {name} ran though an upstream did not succeed\n{flow}"
        elif spec.when == "none_failed":
            assert "failed" not in ups and all(u in ("success", "cached", "skipped") for u in ups), \
                f"seed {seed}: {name} ran though an upstream failed\n{flow}"
        elif spec.when == "failure":
            assert "failed" in ups, f"seed {seed}: {name} ran though no upstream failed\n{flow}"
        else:
            assert all(u in ("success", "cached", "failed", "skipped") for u in ups), f"seed {seed}: {name}"
