"""`flow graph FILE --format ascii|dot|mermaid|json`: structure, not layout."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "orders" / "orders.flow"
GRAPH = ROOT / "tests" / "data" / "graph"
FANOUT = GRAPH / "fanout.flow"


@pytest.fixture(scope="module")
def render(flow):
    """flow graph FILE --format F, each (file, format) run once."""
    cache = {}

    def run(path, fmt):
        if (path, fmt) not in cache:
            proc = flow("graph", path, "--format", fmt)
            assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
            assert proc.returncode == 0, proc.stderr
            cache[path, fmt] = proc.stdout
        return cache[path, fmt]

    return run


def dot_is_well_formed(text, name):
    lines = text.strip().splitlines()
    assert lines[0] == f'digraph "{name}" {{'
    assert lines[-1] == "}"
    for line in lines[1:-1]:
        assert line.startswith("  ") and line.endswith(";"), line
        assert len(re.findall(r'(?<!\\)"', line)) % 2 == 0, f"unbalanced quotes: {line}"


# ---- the example pipeline ---------------------------------------------------------------------------


def test_example_json(render):
    data = json.loads(render(EXAMPLE, "json"))
    assert set(data) == {"pipeline", "tasks", "edges", "hooks"}
    assert data["pipeline"] == "orders"
    tasks = {t["name"]: t for t in data["tasks"]}
    assert list(tasks) == ["prepare", "extract", "transform", "load", "count_lines", "cleanup"]
    assert tasks["extract"]["foreach"] == "table in params.tables"
    assert tasks["extract"]["tags"] == ["extract", "io"]
    assert tasks["cleanup"]["when"] == "always"
    assert tasks["load"]["upstream"] == ["transform", "prepare"]
    edges = {(e["from"], e["to"], e["kind"]) for e in data["edges"]}
    assert edges == {("extract", "transform", "data"), ("transform", "load", "data"),
                     ("prepare", "load", "after"), ("load", "count_lines", "data"),
                     ("count_lines", "cleanup", "after")}
    assert [t["layer"] for t in data["tasks"]] == [0, 0, 1, 2, 3, 4]
    assert [h["event"] for h in data["hooks"]] == ["failure", "finish"]
    assert data["hooks"][0]["action"] == "run orders_etl.notify:alert"


def test_example_dot(render):
    text = render(EXAMPLE, "dot")
    dot_is_well_formed(text, "orders")
    assert '"extract" -> "transform";' in text
    assert '"prepare" -> "load" [style=dashed];' in text
    assert '"count_lines" -> "cleanup" [style=dashed];' in text
    assert re.search(r'"extract" \[label="extract\[\*\][^"]*foreach table in params\.tables", shape=box3d\];', text)


def test_example_mermaid(render):
    text = render(EXAMPLE, "mermaid")
    assert text.startswith("flowchart")
    ids = dict(re.findall(r"^  (t\d+)\[+\"([a-z_]+)", text, re.M))
    by_name = {name: i for i, name in ids.items()}
    assert set(by_name) == {"prepare", "extract", "transform", "load", "count_lines", "cleanup"}
    assert f"  {by_name['extract']} --> {by_name['transform']}" in text
    assert f"  {by_name['prepare']} -.-> {by_name['load']}" in text


def test_example_ascii(render):
    text = render(EXAMPLE, "ascii")
    lines = text.splitlines()
    assert lines[0] == "pipeline orders (6 tasks)"
    assert "stage 1" in lines and "stage 5" in lines
    assert any(line.strip().startswith("extract[*]") and "| foreach table in params.tables" in line for line in lines)
    assert "on failure -> run orders_etl.notify:alert" in lines


def test_default_format_is_ascii(flow, render):
    proc = flow("graph", EXAMPLE)
    assert proc.returncode == 0
    assert proc.stdout == render(EXAMPLE, "ascii")


# ---- foreach and hooks ------------------------------------------------------------------------------


def test_fanout_json(render):
    data = json.loads(render(FANOUT, "json"))
    tasks = {t["name"]: t for t in data["tasks"]}
    assert tasks["work"]["foreach"] == "region in params.regions"
    assert tasks["chunks"]["foreach"] == "item in split"
    assert tasks["split"]["foreach"] is None
    assert tasks["split"]["description"] == "List the work"
    assert tasks["merge"]["upstream"] == ["work", "chunks"]
    assert {(e["from"], e["to"], e["kind"]) for e in data["edges"]} == {
        ("split", "chunks", "data"), ("work", "merge", "data"), ("chunks", "merge", "data"),
        ("merge", "cleanup", "after")}
    assert data["hooks"] == [
        {"event": "success", "action": 'sh "echo done {run.id}"'},
        {"event": "failure", "action": "run notify:alert"},
        {"event": "finish", "action": 'sh "echo finished"'},
    ]


def test_fanout_dot(render):
    text = render(FANOUT, "dot")
    dot_is_well_formed(text, "fanout")
    for edge in ('"split" -> "chunks";', '"work" -> "merge";', '"chunks" -> "merge";',
                 '"merge" -> "cleanup" [style=dashed];'):
        assert edge in text
    assert re.search(r'"work" \[label="work\[\*\][^"]*foreach region in params.regions", shape=box3d\];', text)
    notes = re.findall(r'\[label="on (success|failure|finish)\\n[^"]*", shape=note\];', text)
    assert notes == ["success", "failure", "finish"]
    assert "when always" in text


def test_fanout_mermaid(render):
    text = render(FANOUT, "mermaid")
    assert text.startswith("flowchart LR\n")
    # a foreach task is drawn as a subroutine box [[...]] that says what it iterates over
    assert re.search(r'^  t1\[\["work\[\*\]<br/>.*foreach region in params\.regions"\]\]$', text, re.M)
    assert re.search(r'^  t2\[\["chunks\[\*\]<br/>.*foreach item in split"\]\]$', text, re.M)
    assert "  t0 --> t2" in text and "  t3 -.-> t4" in text
    hooks = re.findall(r'^  h\d\{\{"on (\w+)<br/>', text, re.M)
    assert hooks == ["success", "failure", "finish"]


def test_fanout_ascii(render):
    lines = render(FANOUT, "ascii").splitlines()
    assert lines[0] == "pipeline fanout (5 tasks)"
    assert any("chunks[*]" in line and "<- split" in line and "| foreach item in split" in line for line in lines)
    assert any(line.strip().startswith("cleanup") and "<- merge (after)" in line and "| when always" in line
               for line in lines)
    assert lines[-3:] == ['on success -> sh "echo done {run.id}"', "on failure -> run notify:alert",
                          'on finish -> sh "echo finished"']


def test_graph_follows_includes(render):
    data = json.loads(render(ROOT / "tests" / "data" / "valid" / "include_main.flow", "json"))
    assert {t["name"] for t in data["tasks"]} == {"top", "left_task", "shared_task", "leaf_task", "right_task"}
    assert ("shared_task", "leaf_task", "after") in {(e["from"], e["to"], e["kind"]) for e in data["edges"]}


# ---- files that are not valid -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ascii", "json", "dot", "mermaid"])
def test_graph_of_an_invalid_file(flow, tmp_path, fmt):
    (tmp_path / "bad.flow").write_text('task a {\n    sh "echo {transfrom}"\n}\ntask transform { sh "x" }\n')
    proc = flow("graph", "bad.flow", "--format", fmt, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "bad.flow:2:15: error E201 unknown name `transfrom`" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_graph_of_a_cycle(flow, tmp_path):
    (tmp_path / "cycle.flow").write_text('task a { sh "{b}" }\ntask b { sh "x" after a }\n')
    proc = flow("graph", "cycle.flow", "--format", "json", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "E301" in proc.stderr and "a → b → a" in proc.stderr


def test_graph_of_a_syntax_error(flow, tmp_path):
    (tmp_path / "syntax.flow").write_text("task a {\n")
    proc = flow("graph", "syntax.flow", cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert "syntax.flow:1:9: error E004" in proc.stderr


def test_graph_with_only_warnings_renders(flow, tmp_path):
    (tmp_path / "warn.flow").write_text('pipeline w { params { unused = 1 } }\ntask a { sh "x" }\n')
    proc = flow("graph", "warn.flow", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0
    assert [t["name"] for t in json.loads(proc.stdout)["tasks"]] == ["a"]
