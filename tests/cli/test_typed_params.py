"""Typed params (language reference, section 7): a `--param` value must fit the kind of the param's
default, or the run is a usage error (exit 2) naming the param, the kind and an example; nothing runs.
Every kind is tried with values that fit and values that do not, on the command line and in the API."""

import datetime as dt
import json
import re
import sys

import pytest
from runkit import ROOT, explain, run_json, write_project

PIPELINE = """
    pipeline typed {
        params {
            flag  = false
            n     = 3
            ratio = 0.5
            wait  = 30s
            items = ["a"]
            opts  = { k = 1 }
            when  = run.logical_date
            day   = run.date
            name  = "emea"
            any   = null
            token = secret("TYPED_TOKEN")
        }
    }
    task show {
        run show:kinds
        with { flag = params.flag  n = params.n  ratio = params.ratio  wait = params.wait  items = params.items
               opts = params.opts  when = params.when  day = params.day  name = params.name  any = params.any }
    }
    task tok { sh "test -n \\"$FLOW_ARG_T\\""  with { t = params.token } }
"""

SHOW = {"show.py": """
    def kinds(**kw):
        return {k: [type(v).__name__, v if not hasattr(v, "isoformat") else v.isoformat()] for k, v in kw.items()}
"""}

FITS = [
    ("flag", "true", ["bool", True]), ("flag", "False", ["bool", False]), ("flag", "TRUE", ["bool", True]),
    ("n", "42", ["int", 42]), ("n", "-7", ["int", -7]), ("n", "1_000", ["int", 1000]),
    ("ratio", "2", ["float", 2.0]), ("ratio", "2.5", ["float", 2.5]), ("ratio", "-1e3", ["float", -1000.0]),
    ("wait", "1m30s", ["int", 90]), ("wait", "500ms", ["float", 0.5]), ("wait", "45", ["int", 45]),
    ("items", '[1, "two"]', ["list", [1, "two"]]), ("items", "[]", ["list", []]),
    ("items", '["a","b"]', ["list", ["a", "b"]]),
    ("opts", '{"a": [1]}', ["dict", {"a": [1]}]), ("opts", "{ a = 1  b = \"x\" }", ["dict", {"a": 1, "b": "x"}]),
    ("when", "2026-11-22T05:00:00+01:00", ["datetime", "2026-11-22T05:00:00+01:00"]),
    ("when", "2026-11-22", ["datetime", "2026-11-22T00:00:00+00:00"]),
    ("day", "2026-11-22", ["str", "2026-11-22"]),
    ("name", "apac", ["str", "apac"]), ("name", "123", ["str", "123"]), ("name", "true", ["str", "true"]),
    ("name", '"quoted text"', ["str", "quoted text"]), ("name", "", ["str", ""]), ("name", "a=b", ["str", "a=b"]),
    ("any", "null", ["NoneType", None]), ("any", "5", ["int", 5]), ("any", "[1]", ["list", [1]]),
    ("any", "free text", ["str", "free text"]),
]

MISFITS = [
    ("flag", "False!", "boolean"), ("flag", "1", "boolean"), ("flag", "yes", "boolean"), ("flag", "", "boolean"),
    ("n", "3.5", "integer"), ("n", "three", "integer"), ("n", "true", "integer"), ("n", "[1]", "integer"),
    ("ratio", "fast", "float"), ("ratio", "null", "float"),
    ("wait", "soon", "duration"), ("wait", "5 minutes", "duration"),
    ("items", "[1, 2", "list"), ("items", "a,b", "list"), ("items", '{"a": 1}', "list"),
    ("opts", "[1]", "map"), ("opts", "k=1", "map"), ("opts", "{", "map"),
    ("when", "yesterday", "datetime"), ("when", "2026-13-01", "datetime"),
    ("day", "22/11/2026", "date"), ("day", "2026-11-22T05:00", "date"),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return write_project(tmp_path_factory.mktemp("typed"), PIPELINE, SHOW)


@pytest.mark.parametrize("key, text, expected", FITS, ids=[f"{k}={t}" for k, t, _ in FITS])
def test_a_value_that_fits_arrives_typed(flow, project, key, text, expected):
    proc, report = run_json(flow, project, "--param", f"{key}={text}", "--target", "show",
                            env={"TYPED_TOKEN": "typed-secret-value"})
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["show"]["result"][key] == expected


@pytest.mark.parametrize("key, text, kind", MISFITS, ids=[f"{k}={t}" for k, t, _ in MISFITS])
def test_a_value_that_does_not_fit_is_exit_2_naming_the_param_the_kind_and_an_example(flow, project, key, text,
                                                                                      kind):
    runs_before = sorted((project.parent / ".flow" / "runs").glob("*")) if (project.parent / ".flow").exists() \
        else []
    proc = flow("run", project, "--param", f"{key}={text}", cwd=project.parent,
                env={"TYPED_TOKEN": "typed-secret-value"})
    assert proc.returncode == 2, explain(proc)
    message = proc.stderr
    assert f"--param {key}" in message and re.search(rf"is not an? {kind} ", message), message
    assert "for example" in message
    assert "Traceback" not in message
    runs_after = sorted((project.parent / ".flow" / "runs").glob("*")) if (project.parent / ".flow").exists() \
        else []
    assert runs_after == runs_before  # nothing was started


def test_a_value_for_a_secret_param_is_a_secret(flow, project):
    proc, report = run_json(flow, project, "--param", "token=given-s3cret", "--target", "tok")
    assert proc.returncode == 0, explain(proc)
    assert "given-s3cret" not in json.dumps(report)
    for path in (project.parent / ".flow").rglob("*"):
        if path.is_file():
            assert b"given-s3cret" not in path.read_bytes(), path


def test_the_api_types_python_values_as_the_command_line_does(project, tmp_path, monkeypatch):
    monkeypatch.setenv("TYPED_TOKEN", "typed-secret-value")
    sys.path.insert(0, str(ROOT))
    import flowdsl

    report = flowdsl.run(str(project), params={"n": 5, "ratio": 1, "when": dt.datetime(2026, 1, 2, 3, 4),
                                               "items": ("x",), "day": dt.date(2026, 1, 2)},
                         target=["show"], executor="inline", state_dir=str(tmp_path / "state"))
    got = report["tasks"]["show"]["result"]
    assert got["n"] == ["int", 5] and got["ratio"] == ["float", 1.0] and got["items"] == ["list", ["x"]]
    assert got["when"] == ["datetime", "2026-01-02T03:04:00+00:00"] and got["day"] == ["str", "2026-01-02"]
    for bad in ({"n": "5"}, {"flag": 1}, {"items": "abc"}, {"opts": [1]}, {"when": "soon"}):
        with pytest.raises(flowdsl.FlowError, match="--param"):
            flowdsl.run(str(project), params=bad, executor="inline", state_dir=str(tmp_path / "state"))
