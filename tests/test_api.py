"""The Python API (cli.md, "The Python API"), in-process: flowdsl.load, run, runs, FlowError, Skip."""

from __future__ import annotations

import textwrap

import pytest

import flowdsl

TASKS = """
    import flowdsl

    def extract(region):
        return {"rows": 3, "region": region}

    def maybe(n):
        if n % 2:
            raise flowdsl.Skip(f"{n} is odd")
        return n * 10

    def total(values):
        return sum(v for v in values if v is not None)
"""

FLOW = """
    pipeline orders {
        schedule cron "0 5 * * *"
        params { region = "emea"  n = 3 }
    }
    task extract { run tasks:extract  with { region = params.region } }
    task parts   { foreach i in [1, 2, 3, 4]  run tasks:maybe  with { n = i } }
    task sum     { run tasks:total  with { values = parts }  after extract }
    task odd     { run tasks:maybe  with { n = params.n } }
    task after_odd { sh "echo after"  after odd }
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "tasks.py").write_text(textwrap.dedent(TASKS))
    f = tmp_path / "orders.flow"
    f.write_text(textwrap.dedent(FLOW))
    return f


def test_load_gives_the_checked_pipeline(project):
    p = flowdsl.load(project)
    assert p.name == "orders" and set(p.tasks) == {"extract", "parts", "sum", "odd", "after_odd"}
    order = list(p.tasks)  # dependency order
    assert all(order.index(u) < order.index(name) for name, t in p.tasks.items() for u in t.upstream)
    assert p.tasks["sum"].upstream == ("parts", "extract") and p.tasks["parts"].foreach
    assert p.schedules == ["cron 0 5 * * *"]


def test_load_raises_flow_error_with_the_diagnostics_validate_gives(tmp_path):
    bad = tmp_path / "bad.flow"
    bad.write_text('task a { sh "x" after nope }\n')
    with pytest.raises(flowdsl.FlowError) as e:
        flowdsl.load(bad)
    (d,) = e.value.diagnostics
    assert (d["code"], d["line"], d["severity"]) == ("E201", 1, "error")
    with pytest.raises(flowdsl.FlowError):
        flowdsl.load(tmp_path / "missing.flow")


@pytest.mark.parametrize("executor", ["inline", None])
def test_run_returns_the_report_and_skip_skips(project, tmp_path, executor):
    report = flowdsl.run(project, params={"region": "apac"}, executor=executor, state_dir=str(tmp_path / "st"))
    assert report["status"] == "success", report
    t = report["tasks"]
    assert t["extract"]["result"] == {"rows": 3, "region": "apac"}
    assert t["parts"]["result"] == [None, 20, None, 40] and t["parts"]["status"] == "success"
    assert t["parts[0]"]["status"] == "skipped" and t["parts[0]"]["reason"] == "1 is odd"
    assert t["sum"]["result"] == 60
    assert t["odd"]["status"] == "skipped" and t["after_odd"]["status"] == "skipped"
    runs = flowdsl.runs(project, state_dir=str(tmp_path / "st"))
    assert [r["run_id"] for r in runs] == [report["run_id"]] and runs[0]["status"] == "success"


def test_run_targets_and_resumes(project, tmp_path):
    st = str(tmp_path / "st")
    report = flowdsl.run(project, target="extract", executor="inline", state_dir=st)
    assert list(report["tasks"]) == ["extract"]
    again = flowdsl.run(project, executor="inline", state_dir=st, resume=True)
    assert again["run_id"] == report["run_id"] and again["tasks"]["extract"]["kept_from"] == report["run_id"]


@pytest.mark.parametrize("kwargs, words", [
    ({"params": {"nope": 1}}, "not a param"),
    ({"target": "nope"}, "names no task"),
    ({"executor": "ray"}, "--executor takes"),
    ({"resume": "nosuchrun"}, "nothing to resume"),
])
def test_run_raises_flow_error_where_flow_run_exits_2(project, tmp_path, kwargs, words):
    with pytest.raises(flowdsl.FlowError) as e:
        flowdsl.run(project, state_dir=str(tmp_path / "st"), **kwargs)
    assert words in str(e.value)
