"""The run machine, in-process: a fake clock and a fake backend, each case in milliseconds.

Cases are tables: a pipeline, what each attempt does, and what the machine
must decide (statuses, attempts, when each attempt started, what was killed).
What only a real process shows (signals reaching a worker, a shell's group
killed, output in logs) stays in the end-to-end tests (test_run_*.py).
"""

from __future__ import annotations

import random

import pytest
from machinekit import Sim, always, fail, hang, ok, script

# ---- statuses and attempts ---------------------------------------------------------------------

CASES = [
    pytest.param(
        """
        task a { sh "a" }
        task b { sh "b" after a }
        task c { sh "c" after b }
        """, {}, {"a": "success", "b": "success", "c": "success"}, "success", id="chain"),
    pytest.param(
        """
        task a { sh "a" }
        task b { sh "b" after a }
        task c { sh "c" after b }
        """, {"a": [fail()]}, {"a": "failed", "b": "skipped", "c": "skipped"}, "failed", id="chain-fails"),
    pytest.param(
        """
        task a { sh "a" }
        task on_fail { sh "alert" after a when failure }
        task on_ok { sh "ok" after a when failure }
        task fin { sh "fin" after a when always }
        """, {"a": [fail()]},
        {"a": "failed", "on_fail": "success", "on_ok": "success", "fin": "success"}, "failed", id="when-failure"),
    pytest.param(
        """
        task a { sh "a" }
        task on_fail { sh "alert" after a when failure }
        task fin { sh "fin" after a when always }
        task after_fin { sh "x" after fin }
        """, {}, {"a": "success", "on_fail": "skipped", "fin": "success", "after_fin": "success"}, "success",
        id="when-failure-skipped"),
    pytest.param(
        """
        task a { sh "a" }
        task b { sh "b" after a }
        task c { sh "c" after b when always }
        """, {"a": [fail()]}, {"a": "failed", "b": "skipped", "c": "success"}, "failed", id="always-after-skip"),
    pytest.param(
        """
        task e { foreach x in [] sh "e {x}" }
        task d { sh "d" after e }
        """, {}, {"e": "success", "d": "success"}, "success", id="foreach-empty"),
    pytest.param(
        """
        task e { foreach x in [1] sh "e {x}" }
        task d { sh "d" after e }
        """, {}, {"e": "success", "e[0]": "success", "d": "success"}, "success", id="foreach-one"),
    pytest.param(
        """
        task e { foreach x in [1, 2, 3] sh "e {x}" }
        task d { sh "d" after e }
        """, {"e[1]": [fail()]},
        {"e": "failed", "e[0]": "success", "e[1]": "failed", "e[2]": "success", "d": "skipped"}, "failed",
        id="foreach-one-instance-fails"),
    pytest.param(
        """
        task src { sh "src" output json }
        task e { foreach x in src sh "e {x}" }
        task d { sh "d" after e }
        """, {"src": [ok(result=["a", "b"])]},
        {"src": "success", "e": "success", "e[0]": "success", "e[1]": "success", "d": "success"}, "success",
        id="foreach-from-result"),
    pytest.param(
        """
        task src { sh "src" output json }
        task e { foreach x in src sh "e {x}" }
        task d { sh "d" after e }
        """, {"src": [ok(result=[])]}, {"src": "success", "e": "success", "d": "success"}, "success",
        id="foreach-from-empty-result"),
    pytest.param(
        """
        task src { sh "src" }
        task e { foreach x in src sh "e {x}" }
        """, {"src": [ok(result="not a list")]}, {"src": "success", "e": "failed"}, "failed",
        id="foreach-over-text-fails"),
    pytest.param(
        """
        task a { sh "a"  with { x = env("FLOW_TEST_NEVER_SET") } }
        task b { sh "b" after a }
        """, {}, {"a": "failed", "b": "skipped"}, "failed", id="eval-error"),
]


@pytest.mark.parametrize("flow, plan, expected, status", CASES)
def test_statuses(flow, plan, expected, status):
    sim = Sim(flow, script(plan))
    m = sim.session()
    got = sim.statuses()
    assert {k: got[k] for k in expected} == expected
    assert m.status == status == sim.report()["status"]
    # no instance starts its first attempt twice, on any path
    firsts = [(r["task"], r["n"]) for r in sim.starts()]
    assert len(firsts) == len(set(firsts))


def test_empty_foreach_ready_at_the_start_releases_its_dependent_once():
    for items in ("[]", "params.none"):
        sim = Sim(f"""
            pipeline p {{ params {{ none = [] }} }}
            task e {{ foreach x in {items} sh "e {{x}}" }}
            task d {{ sh "d" after e }}
            task d2 {{ sh "d2" after e, d when always }}
        """)
        sim.session()
        assert [r["task"] for r in sim.starts()] == ["d", "d2"]
        assert len(sim.reporter.of("skipped")) == 0


def test_a_long_chain_of_skips_does_not_recurse():
    n = 3000
    tasks = "\n".join(f"task t{i} {{ sh \"t\" after t{i - 1} }}" for i in range(1, n))
    sim = Sim("task t0 { sh \"t\" }\n" + tasks, script({"t0": [fail()]}))
    m = sim.session()
    assert m.status == "failed"
    assert sum(1 for s in sim.statuses().values() if s == "skipped") == n - 1


# ---- retries and their delays ------------------------------------------------------------------

RETRIES = [
    # (retry statement, failures before success, start times of the attempts)
    ("retry 3", 3, [0, 1, 2, 3]),
    ("retry 3 delay 10s", 3, [0, 11, 22, 33]),
    ("retry 3 delay 10s backoff 2", 3, [0, 11, 32, 73]),
    ("retry 4 delay 10s backoff 2 max_delay 25s", 4, [0, 11, 32, 58, 84]),
    ("retry 2 delay 500ms", 5, [0, 1.5, 3]),  # out of retries: 3 attempts
    ("retry 1 delay 1m", 0, [0]),
]


@pytest.mark.parametrize("retry, failures, times", RETRIES)
def test_retry_delays(retry, failures, times):
    acts = [fail()] * failures + [ok()]
    sim = Sim(f'task a {{ sh "a" {retry} }}', script({"a": acts}))
    m = sim.session()
    assert sim.start_times("a") == times
    assert m.status == ("success" if failures < len(times) else "failed")


@pytest.mark.parametrize("draw, times", [(lambda a, b: a, [0, 6, 12]), (lambda a, b: b, [0, 16, 32])])
def test_jitter_at_its_bounds(draw, times):
    sim = Sim('task a { sh "a" retry 2 delay 10s jitter 0.5 }', script({"a": [fail(), fail(), ok()]}),
              uniform=draw)
    sim.session()
    assert sim.start_times("a") == times


def test_jitter_stays_within_its_bounds():
    rng = random.Random(7)
    for _ in range(200):
        sim = Sim('task a { sh "a" retry 1 delay 10s jitter 0.3 }', script({"a": [fail(), ok()]}),
                  uniform=rng.uniform)
        sim.session()
        first, second = sim.start_times("a")
        assert 1 + 7 <= second <= 1 + 13


@pytest.mark.parametrize("on, error, retried", [
    ("on ValueError", "ValueError", True),
    ("on ValueError", "KeyError", False),
    ("on KeyError, ValueError", "KeyError", True),
    ("on Exception", "ValueError", True),  # a base class counts (the fake's names include Exception)
])
def test_retry_only_on_named_errors(on, error, retried):
    sim = Sim(f'task a {{ sh "a" retry 2 {on} }}', script({"a": [fail(error=error), ok()]}))
    m = sim.session()
    assert len(sim.starts("a")) == (2 if retried else 1)
    assert m.status == ("success" if retried else "failed")


# ---- timeouts -------------------------------------------------------------------------------------


def test_an_attempt_past_its_timeout_is_killed_and_retried():
    sim = Sim('task a { sh "a" timeout 5s retry 1 delay 2s }', script({"a": [hang(), ok()]}))
    m = sim.session()
    assert sim.backend.killed == ["a"]
    assert sim.start_times("a") == [0, 7]
    ends = [r for r in sim.records if r["e"] == "end"]
    assert ends[0]["error"]["type"] == "Timeout" and ends[0]["error"]["message"] == "timed out after 5s"
    assert m.status == "success"


def test_the_runs_timeout_stops_attempts_and_fails_the_run():
    sim = Sim("""
        pipeline p { timeout 10s }
        task a { sh "a" }
        task b { sh "b" after a }
        task c { sh "c" after b }
    """, script({"b": [hang()]}))
    m = sim.session()
    assert m.status == "failed" and "timeout (10s) passed" in m.stop_reason
    assert sim.statuses()["b"] == "pending" and sim.statuses()["c"] == "pending"
    assert sim.backend.interrupts == 1
    done = sim.records[-1]
    assert done["e"] == "done" and done["t"] - sim.records[0]["t"] < 11


def test_an_attempt_that_ignores_the_interrupt_is_killed_after_the_grace():
    sim = Sim('pipeline p { timeout 10s }\ntask a { sh "a" }', script({"a": [hang(obeys_interrupt=False)]}))
    m = sim.session()
    assert sim.backend.killed == ["a"]
    assert sim.clock.t == pytest.approx(15)  # 10 s, then the 5 s grace
    assert m.status == "failed"


@pytest.mark.parametrize("hook", ['on finish sh "sleep 20"', 'on success sh "sleep 20"'])
def test_a_hook_is_bound_by_the_runs_timeout(hook):
    sim = Sim(f'pipeline p {{ timeout 2s  {hook} }}\ntask a {{ sh "a" }}',
              script({"a": [ok(takes=0.5)], "on_finish": [hang()], "on_success": [hang()]}))
    m = sim.session()
    (h,) = [r for r in sim.records if r["e"] == "hook"]
    assert h["status"] == "failed" and h["error"]["type"] == "Timeout"
    assert sim.clock.t == pytest.approx(2)
    assert m.status == "success"  # the tasks succeeded; the hook's failure is the hook's


def test_hooks_after_the_runs_timeout_get_a_grace():
    sim = Sim('pipeline p { timeout 2s  on failure sh "alert" }\ntask a { sh "a" }',
              script({"a": [hang()], "on_failure": [ok(takes=3)]}))
    m = sim.session()
    (h,) = [r for r in sim.records if r["e"] == "hook"]
    assert h["status"] == "success" and m.status == "failed"


def test_a_queued_attempts_timeout_counts_from_when_it_began():
    sim = Sim('task a { sh "a" timeout 5s }', script({"a": [ok(takes=4, queue_for=30)]}), queues=True)
    m = sim.session()
    assert m.status == "success"
    kinds = [r["e"] for r in sim.records if r.get("task") == "a"]
    assert kinds == ["start", "began", "end"]
    assert sim.statuses()["a"] == "success"
    assert sim.report()["tasks"]["a"]["duration_s"] == pytest.approx(4, abs=0.01)


def test_a_queued_attempt_shows_as_queued():
    sim = Sim('task a { sh "a" timeout 5s }', script({"a": [ok(takes=4, queue_for=30)]}), queues=True)
    sim.session(stop_at=10)
    assert sim.statuses()["a"] == "queued"
    sim.session(stop_at=10)  # a resumed run puts it back to pending, and queues it again
    assert sim.statuses()["a"] == "queued"
    assert sim.session().status == "success"


# ---- interrupts ---------------------------------------------------------------------------------


def test_a_signal_interrupts_and_no_hook_runs():
    sim = Sim('pipeline p { on finish sh "x" }\ntask a { sh "a" }\ntask b { sh "b" after a }',
              script({"a": [ok(takes=10)]}))
    m = sim.session(signals=((3, "SIGINT"),))
    assert m.status == "interrupted" and m.stop_reason == "interrupted by SIGINT"
    assert sim.statuses() == {"a": "pending", "b": "pending"}
    assert not [r for r in sim.records if r["e"] == "hook"]
    assert sim.clock.t == pytest.approx(3.1)


def test_a_second_signal_kills_at_once():
    sim = Sim('task a { sh "a" }', script({"a": [hang(obeys_interrupt=False)]}))
    m = sim.session(signals=((3, "SIGINT"), (4, "SIGTERM")))
    assert m.status == "interrupted" and sim.backend.killed == ["a"]
    assert sim.clock.t == pytest.approx(4)


def test_an_interrupted_error_the_run_did_not_ask_for_is_a_failure():
    sim = Sim('task a { sh "a" }', script({"a": [fail(error="Interrupted")]}))
    m = sim.session()
    assert m.status == "failed" and sim.statuses()["a"] == "failed"


def test_a_signal_while_waiting_for_a_retry():
    sim = Sim('task a { sh "a" retry 1 delay 1h }', script({"a": [fail(), ok()]}))
    m = sim.session(signals=((60, "SIGTERM"),))
    assert m.status == "interrupted" and sim.clock.t == pytest.approx(60)
    assert sim.statuses()["a"] == "pending"


# ---- targets, resume, --from, cache ----------------------------------------------------------------

DIAMOND = """
    task a { sh "a" }
    task b { sh "b" after a }
    task c { sh "c" after a }
    task d { sh "d" after b, c }
"""


def test_target_runs_what_it_needs_only():
    sim = Sim(DIAMOND, targets=["b"])
    sim.session()
    assert [r["task"] for r in sim.starts()] == ["a", "b"]


def test_resume_keeps_successes_and_runs_the_rest():
    sim = Sim(DIAMOND, script({"c": [fail()]}))
    assert sim.session().status == "failed"
    m = sim.session(behave=always(ok()))
    assert m.status == "success"
    assert [r["task"] for r in sim.starts(session=2)] == ["c", "d"]
    assert sim.report()["tasks"]["a"]["kept_from"] == sim.run_id


def test_resume_of_a_successful_run_runs_nothing_and_fires_no_hook():
    sim = Sim('pipeline p { on success sh "x"  on finish sh "y" }\n' + DIAMOND)
    sim.session()
    hooks = len([r for r in sim.records if r["e"] == "hook"])
    assert hooks == 2
    m = sim.session()
    assert m.status == "success" and sim.starts(session=2) == []
    assert len([r for r in sim.records if r["e"] == "hook"]) == hooks


def test_resume_runs_again_what_depends_on_a_task_that_ran_again():
    sim = Sim(DIAMOND + 'task e { sh "e" after a when always }', script({"a": [fail()]}))
    sim.session()
    assert sim.statuses()["e"] == "success"
    sim.session(behave=always(ok()))
    assert sorted(r["task"] for r in sim.starts(session=2)) == ["a", "b", "c", "d", "e"]


def test_from_reuses_the_earlier_runs_results_upstream():
    earlier = Sim(DIAMOND)
    earlier.session()
    sim = Sim(DIAMOND, from_=["c"], run_id="p-20270102T000000000-0000")
    m = sim.session(earlier=earlier.state, earlier_id=earlier.run_id)
    assert m.status == "success"
    assert [r["task"] for r in sim.starts()] == ["c", "d"]
    assert sorted(r["task"] for r in sim.records if r["e"] == "reuse") == ["a", "b"]


def test_cache_reuses_a_result_with_the_same_fingerprint():
    flow = 'task a { sh "a" cache }\ntask b { sh "b" after a }'
    sim = Sim(flow)
    sim.session()
    again = Sim(flow, run_id="p-20270102T000000000-0000")
    again.cache = sim.cache
    again.session()
    assert [r["task"] for r in again.starts()] == ["b"]
    assert again.statuses()["a"] == "cached"


def test_concurrency_is_kept():
    flow = "pipeline p { concurrency 2 }\n" + "\n".join(f'task t{i} {{ sh "t" }}' for i in range(6))
    sim = Sim(flow, always(ok(takes=1)))
    sim.session()
    assert sorted(round(r["t"] - 1_800_000_000.0) for r in sim.starts()) == [0, 0, 1, 1, 2, 2]


# ---- a backend that loses its cluster; capacity that changes ---------------------------------------


def test_a_lost_backend_interrupts_the_run_and_spends_no_retry():
    sim = Sim('task a { sh "a" retry 3 }\ntask b { sh "b" after a }', script({"a": [hang()]}))
    m = sim.session(stop_at=2)
    m.lost("the Dask scheduler at tcp://x:8786 went away")
    for item in sim.backend.collect():  # what the backend says of the attempt it lost: a dead worker
        m.ended(item)
    m.ended(sim.machine.stopped_outcome("a", 1, "WorkerDied", "the scheduler went away"))
    assert m.done and m.status == "interrupted"
    ends = [r for r in sim.records if r["e"] == "end"]
    assert [(r["task"], r["status"], r.get("retry_at")) for r in ends] == [("a", "interrupted", None)]
    assert sim.statuses() == {"a": "pending", "b": "pending"}
    assert sim.session(behave=always(ok())).status == "success"  # a resume finishes it


def test_capacity_may_change_while_the_run_goes():
    flow = "\n".join(f'task t{i} {{ sh "t" }}' for i in range(6))
    sim = Sim(flow, always(ok(takes=1)))
    m = sim.session(stop_at=0.5)
    assert len(m.running) == m.capacity
    m.capacity = 6
    m.advance()
    assert len(m.running) == 6


def test_a_result_past_64_mb_gets_a_note_saying_to_pass_a_path():
    from flowdsl.run import machine

    sim = Sim('task big { sh "big" }\ntask small { sh "small" }\n')
    behave = {"big": ok(result="x" * (machine.BIG_RESULT + 10)), "small": ok(result="y")}
    m = sim.session(behave=lambda key, number, sensor=False: behave[key])
    assert m.status == "success"
    notes = [c[0] for c in sim.reporter.of("note")]
    assert [n for n in notes if "big's result is 64 MB" in n and "return its path" in n], notes
    assert not [n for n in notes if "small" in n]
