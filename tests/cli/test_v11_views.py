"""The v1.1 forms in the views: `flow graph` draws conditions on the edges into a task, sensors and
calls as shapes of their own; `flow fmt` lays them out; the HTML report and `flow status` show a
sensor's checks and a call's child run."""

import json
import subprocess
from pathlib import Path

from reportkit import page_data, rows
from runkit import explain, run_json, write_project

ROOT = Path(__file__).resolve().parents[2]
V11 = ROOT / "tests" / "data" / "valid" / "language_v11.flow"


def test_graph_draws_conditions_sensors_and_calls(flow):
    data = json.loads(flow("graph", V11, "--format", "json").stdout)
    tasks = {t["name"]: t for t in data["tasks"]}
    assert tasks["inbox"]["kind"] == "sensor" and tasks["monthly"]["kind"] == "call"
    assert tasks["load_full"]["if"] == 'extract.mode == "full" and params.stage != "dev"'
    assert tasks["per_region"]["foreach"] == "region, city in params.regions"
    assert {"from": "inbox", "to": "if", "kind": "data"} in data["edges"]  # a reference in `if` is an edge
    dot = flow("graph", V11, "--format", "dot").stdout
    assert '"inbox" [label="inbox\\nwait file' in dot and "shape=hexagon" in dot
    assert "shape=component" in dot
    assert '"extract" -> "load_full" [label="if extract.mode' in dot
    mermaid = flow("graph", V11, "--format", "mermaid").stdout
    assert '(["inbox' in mermaid and '[/"monthly' in mermaid and '-->|"if extract.mode' in mermaid
    ascii_ = flow("graph", V11).stdout
    assert "| when none_failed" in ascii_ and "| if params.full" in ascii_
    if subprocess.run(["which", "dot"], capture_output=True).returncode == 0:
        checked = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_fmt_lays_out_the_v11_forms_and_keeps_them(flow, tmp_path):
    messy = tmp_path / "m.flow"
    messy.write_text('task a { sh "x"  if   (params.a==1 or  params.b)and not(params.c)  when none_failed }\n'
                     'task b { foreach k,v in {x=1} sh "echo {k}" }\n'
                     'task c { wait file "x/*.csv" every 1m timeout 1h }\n'
                     'pipeline p { params { a = 1 b = 2 c = 3 } shell ["bash","-c"] }\n')
    proc = flow("fmt", messy)
    assert proc.returncode == 0, explain(proc)
    text = messy.read_text()
    assert "    if (params.a == 1 or params.b) and not (params.c)\n" in text
    assert "    foreach k, v in { x = 1 }\n" in text
    assert '    wait file "x/*.csv"\n    every 1m\n' in text
    assert flow("fmt", "--check", messy).returncode == 0


def test_the_report_and_status_show_checks_and_the_child_run(flow, tmp_path):
    write_project(tmp_path / "sub", 'task inner { sh "echo in" }\n', name="child.flow")
    f = write_project(tmp_path, """
        task sensor { wait file "go"  every 100ms  timeout 30s }
        task make { sh "sleep 0.5; touch go" }
        task c { call "sub/child.flow" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["sensor"]["checks"] >= 1
    child = report["tasks"]["c"]["child_run"]
    page = tmp_path / "page.html"
    assert flow("report", report["run_id"], "--html", page, cwd=tmp_path).returncode == 0
    found = rows(page_data(page))
    assert found["sensor"]["checks"] == report["tasks"]["sensor"]["checks"]
    assert found["c"]["child_run"] == child
    assert child in flow("status", report["run_id"], cwd=tmp_path).stdout
