"""The process backend's wire form of attempts and outcomes: every field crosses, unchanged."""

import dataclasses

import pytest

from flowdsl.run.backends import from_wire, to_wire
from flowdsl.run.worker import Attempt, Outcome


def test_an_attempt_with_every_field_set_crosses_whole():
    attempt = Attempt("fetch[2]", 3, "run", "pkg.mod:Loader.run", argv=("a", "b"), args=({"x": 1},),
                      kwargs={"url": "https://x", "n": [1, 2.5, None], "raw": b"\x00\xff"},
                      env={"FLOW_ARG_N": "3"}, cwd="/srv/p", sys_path=("/srv/p", "/srv/lib"),
                      log_path="/srv/p/.flow/runs/r/logs/fetch[2].3.log", timeout=2.5, output="json",
                      results="pickle", secrets=("hunter2",))
    back = from_wire(Attempt, to_wire(attempt))
    assert back == attempt
    assert type(back) is Attempt
    assert [getattr(back, f.name) for f in dataclasses.fields(Attempt)] == \
           [getattr(attempt, f.name) for f in dataclasses.fields(Attempt)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.key = "other"  # still frozen


@pytest.mark.parametrize("outcome", [
    Outcome("t", 1, True, result=b"\x92\x01\x02", started=10.5, finished=11.25, cpu=0.0042),
    Outcome("t", 2, False, error={"type": "ValueError", "message": "bad", "traceback": "Traceback...",
                                  "names": ["ValueError", "builtins.ValueError"]}, started=1.0, finished=2.0),
])
def test_outcomes_cross_whole(outcome):
    back = from_wire(Outcome, to_wire(outcome))
    assert back == outcome
    assert back.__dict__ == outcome.__dict__


def test_the_wire_form_is_smaller_than_the_pickled_record():
    import pickle

    attempt = Attempt("t1", 1, "run", "noop_tasks:noop", log_path="/tmp/x/t1.1.log")
    assert len(to_wire(attempt)) < len(pickle.dumps(attempt, pickle.HIGHEST_PROTOCOL)) / 1.5
