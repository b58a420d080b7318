"""`flow report` and `flow runs --html` through the zipapp: the page's data, its files, its errors.

What the page draws in a browser is tested in test_report_browser.py; here,
what it holds (the JSON it carries), what it must not hold (secrets, anything
fetched from the network) and how the verbs behave.
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from reportkit import SECRET, demo_project, page_data, rows
from runkit import explain, write_project

ROOT = Path(__file__).resolve().parents[2]
COMPAT = ROOT / "tests" / "data" / "compat-0.1.0"


@pytest.fixture(scope="module")
def demo(flow, tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    flow_file, run_id = demo_project(flow, folder)
    proc = flow("report", "--html", "page.html", cwd=folder)
    assert proc.returncode == 0, explain(proc)
    return folder, run_id, page_data(folder / "page.html"), (folder / "page.html").read_text()


def no_traceback(proc):
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


def test_the_page_holds_every_task_with_its_state(flow, demo):
    folder, run_id, data, _ = demo
    status = json.loads(flow("status", "--json", cwd=folder).stdout)
    found = rows(data)
    assert data["run_id"] == run_id and data["status"] == "failed"
    assert set(found) == set(status["tasks"])  # each task and each foreach instance, nothing else
    for key, task in status["tasks"].items():
        assert found[key]["state"] == task["status"], key
        assert found[key]["attempts"] == task["attempts"], key
    assert found["after_bad"]["state"] == "skipped" and "bad" in found["after_bad"]["reason"]
    tasks = {t["name"]: t for t in data["tasks"]}
    assert tasks["fan"]["instances"] == ["fan[0]", "fan[1]", "fan[2]"]
    assert tasks["bad"]["up"] == [["flaky", "after"]]
    assert tasks["start"]["layer"] == 0 and tasks["flaky"]["layer"] == 1 and tasks["after_bad"]["layer"] == 3


def test_every_attempt_is_a_bar_with_the_wait_before_its_retry(demo):
    _, _, data, _ = demo
    flaky = rows(data)["flaky"]["bars"]
    assert [(b["n"], b["status"]) for b in flaky] == [(1, "failed"), (2, "failed"), (3, "success")]
    for before, after in zip(flaky, flaky[1:]):
        assert before["end"] <= before["retry_at"] <= after["start"] + 0.05
        assert after["start"] - before["end"] >= 0.25  # `delay 300ms`, drawn as the gap between the bars
    assert flaky[0]["error"]["type"] == "ConnectionError" and "try 1" in flaky[0]["error"]["message"]
    assert "flaky attempt 1" in flaky[0]["log"] and "flaky attempt 3" in flaky[2]["log"]
    bad = rows(data)["bad"]
    assert bad["error"]["type"] == "ValueError" and "raise ValueError" in bad["error"]["traceback"]
    assert "about to fail" in bad["bars"][0]["log"]
    assert rows(data)["after_bad"]["bars"] == []


def test_cpu_seconds_are_measured_per_attempt(demo):
    _, _, data, _ = demo
    found = rows(data)
    for key in ("fan[0]", "fan[1]", "fan[2]"):  # 0.25 s of CPU in Python, in a worker
        assert 0.2 <= found[key]["bars"][0]["cpu"] < 1.5, found[key]["bars"]
    assert 0.25 <= found["shburn"]["bars"][0]["cpu"] < 1.5  # a command's CPU is its child's
    assert found["sleeper"]["bars"][0]["cpu"] < 0.1  # waiting is not CPU
    assert found["sleeper"]["duration"] >= 0.3


def test_the_critical_path_ends_with_the_last_task(demo):
    _, _, data, _ = demo
    assert data["critical"] == ["start", "flaky", "bad", "cleanup"]  # cleanup sleeps 0.5 s: it ends last


def test_secrets_stay_masked(demo):
    _, _, data, text = demo
    assert SECRET not in text
    assert data["params"]["token"] == "***"
    assert "token is ***" in rows(data)["start"]["bars"][0]["log"]


def test_the_page_loads_nothing_from_elsewhere(demo):
    _, _, _, text = demo
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"\b(src|href)\s*=\s*[\"'](?!#|data:)", text.replace('href="data:,"', "")), \
        "the page refers to another file"
    assert not re.search(r"https?://", text)
    assert "@import" not in text and "url(" not in text


def test_the_latest_run_is_the_default_and_a_prefix_will_do(flow, demo, tmp_path):
    folder, run_id, _, _ = demo
    proc = flow("report", run_id[:-3], "--html", tmp_path / "a.html", cwd=folder)
    assert proc.returncode == 0, explain(proc)
    assert page_data(tmp_path / "a.html")["run_id"] == run_id
    proc = flow("report", "--html", str(tmp_path) + "/", cwd=folder)  # a folder: the index and every page
    assert proc.returncode == 0, explain(proc)
    index = (tmp_path / "index.html").read_text()
    assert f'href="{run_id}.html"' in index and 'data-state="failed"' in index
    assert page_data(tmp_path / f"{run_id}.html")["run_id"] == run_id
    proc = flow("report", run_id, "--html", tmp_path, cwd=folder)  # a folder and a run: <run_id>.html in it
    assert proc.returncode == 0 and str(tmp_path / f"{run_id}.html") in proc.stdout


def test_runs_html_writes_an_index_linking_to_each_run(flow, tmp_path):
    flow_file = write_project(tmp_path, """\
        task a { sh "echo {run.trigger}" }
    """)
    for _ in range(2):
        assert flow("run", flow_file, cwd=tmp_path).returncode == 0
    out = tmp_path / "site"
    out.mkdir()
    proc = flow("runs", "--html", out / "runs.html", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    ids = [r["run_id"] for r in json.loads(flow("runs", "--json", cwd=tmp_path).stdout)]
    index = (out / "runs.html").read_text()
    assert re.findall(r'data-run="([^"]+)"', index) == ids  # newest first, as `flow runs`
    for run_id in ids:
        assert f'href="{run_id}.html"' in index
        assert rows(page_data(out / f"{run_id}.html"))["a"]["state"] == "success"
    # a folder, as `flow report --html DIR/` takes it: index.html and the pages inside, nothing beside it
    proc = flow("runs", "--html", str(tmp_path / "new") + "/", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(["index.html"] + [f"{i}.html" for i in ids])
    assert not list(tmp_path.glob("*.html"))


def test_wrong_command_lines_are_usage_errors(flow, demo, tmp_path):
    folder = demo[0]
    cases = [
        (("report", "--html", tmp_path / "x.html"), tmp_path, "no runs"),
        (("report", "nosuchrun", "--html", tmp_path / "x.html"), folder, "no run `nosuchrun`"),
        (("report", "--html", tmp_path / "missing" / "x.html"), folder, "no such folder"),
        (("report",), folder, "--html"),
    ]
    for args, cwd, words in cases:
        proc = flow(*args, cwd=cwd)
        assert proc.returncode == 2, explain(proc)
        assert words in proc.stderr
        no_traceback(proc)
    assert not (tmp_path / "x.html").exists()


def test_a_damaged_journal_is_reported_in_one_line(flow, tmp_path):
    run = tmp_path / ".flow" / "runs" / "p-20260101T000000000-abcd"
    (run / "logs").mkdir(parents=True)
    (run / "journal.msgpack").write_bytes(b"\xc1garbage" * 20)
    proc = flow("report", "--html", tmp_path / "x.html", cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    assert "journal.msgpack" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    no_traceback(proc)


def test_a_running_run_gives_its_state_so_far(flow, tmp_path):
    flow_file = write_project(tmp_path, """\
        task first { sh "echo quick" }
        task slow  { sh "sleep 4" after first }
        task last  { sh "echo done" after slow }
    """)
    proc = flow("run", flow_file, "--detach", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    deadline = time.time() + 20
    while True:  # until `slow` has started
        status = json.loads(flow("status", "--json", cwd=tmp_path).stdout)
        if status["tasks"]["slow"]["status"] == "running" or time.time() > deadline:
            break
        time.sleep(0.1)
    proc = flow("report", "--html", tmp_path / "now.html", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    data = page_data(tmp_path / "now.html")
    found = rows(data)
    assert data["status"] == "running"
    assert found["first"]["state"] == "success" and found["last"]["state"] == "pending"
    assert found["slow"]["state"] == "running" and found["slow"]["bars"][0]["status"] == "running"
    assert "still running" in (tmp_path / "now.html").read_text()
    while json.loads(flow("status", "--json", cwd=tmp_path).stdout)["status"] == "running":
        assert time.time() < deadline + 20
        time.sleep(0.2)


def test_journals_written_before_cpu_was_measured_still_report(flow, tmp_path):
    state = tmp_path / "state"
    shutil.copytree(COMPAT / "state", state)
    for run_id in sorted(os.listdir(state / "runs")):
        proc = flow("report", run_id, "--html", tmp_path / f"{run_id}.html", "--state-dir", state, cwd=tmp_path)
        assert proc.returncode == 0, explain(proc)
        bars = [b for r in page_data(tmp_path / f"{run_id}.html")["rows"] for b in r["bars"]]
        assert bars and all(b["cpu"] is None for b in bars)


def test_graph_run_colours_nodes_by_the_runs_states(flow, demo):
    folder, run_id, _, _ = demo
    dot = flow("graph", "p.flow", "--format", "dot", "--run", run_id, cwd=folder)
    assert dot.returncode == 0, explain(dot)
    assert re.search(r'^  "bad" \[.*fillcolor="#d64541".*tooltip="failed"', dot.stdout, re.M)
    assert re.search(r'^  "after_bad" \[.*tooltip="skipped"', dot.stdout, re.M)
    assert re.search(r'^  "fan" \[.*tooltip="success"', dot.stdout, re.M)
    mermaid = flow("graph", "p.flow", "--format", "mermaid", "--run", run_id[:-2], cwd=folder).stdout
    ids = dict(re.findall(r'^  (t\d+)\[+"(\w+)', mermaid, re.M))
    classes = {state: names.split(",") for names, state in re.findall(r"^  class (\S+) (\w+)$", mermaid, re.M)}
    assert [ids[i] for i in classes["failed"]] == ["bad"]
    assert "classDef failed fill:#d64541" in mermaid
    as_json = json.loads(flow("graph", "p.flow", "--format", "json", "--run", run_id, cwd=folder).stdout)
    assert {t["name"]: t["state"] for t in as_json["tasks"]}["cleanup"] == "success"
    plain = flow("graph", "p.flow", "--format", "mermaid", cwd=folder).stdout
    assert "classDef" not in plain
    proc = flow("graph", "p.flow", "--run", "nosuch", cwd=folder)
    assert proc.returncode == 2 and "no run `nosuch`" in proc.stderr
    # a run of another pipeline in the same state folder does not colour this one
    (folder / "other.flow").write_text("pipeline other {}\ntask bad { sh \"true\" }\n")
    assert flow("run", "other.flow", "-q", cwd=folder).returncode == 0
    other = json.loads(flow("runs", "other", "--json", cwd=folder).stdout)[0]["run_id"]
    proc = flow("graph", "p.flow", "--run", other, cwd=folder)
    assert proc.returncode == 2 and f"run {other} is not a run of" in proc.stderr, explain(proc)
    no_traceback(proc)


def test_cpu_is_measured_under_the_thread_executor_too(flow, tmp_path):
    flow_file = write_project(tmp_path, """\
        task burn { run tasks:burn }
        task idle { run tasks:idle }
    """, {"tasks.py": """\
        import time
        def burn():
            t = time.process_time()
            while time.process_time() - t < 0.3:
                pass
        def idle():
            time.sleep(0.3)
    """})
    proc = flow("run", flow_file, "--executor", "thread", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    assert flow("report", "--html", tmp_path / "t.html", cwd=tmp_path).returncode == 0
    found = rows(page_data(tmp_path / "t.html"))
    assert 0.25 <= found["burn"]["bars"][0]["cpu"] < 1.5
    assert found["idle"]["bars"][0]["cpu"] < 0.15  # only its own thread counts, not the other task's



def test_a_resumed_run_shows_both_sessions_and_what_it_kept(flow, tmp_path):
    flow_file = write_project(tmp_path, """\
        task a { sh "echo a" }
        task b { sh "test -f ok && echo b" after a }
    """)
    assert flow("run", flow_file, cwd=tmp_path).returncode == 1
    (tmp_path / "ok").write_text("")
    assert flow("run", flow_file, "--resume", cwd=tmp_path).returncode == 0
    assert flow("report", "--html", tmp_path / "r.html", cwd=tmp_path).returncode == 0
    data = page_data(tmp_path / "r.html")
    found = rows(data)
    assert found["a"]["state"] == "kept" and found["a"]["kept_from"] == data["run_id"]
    assert [(b["n"], b["status"], b["session"]) for b in found["b"]["bars"]] == [(1, "failed", 0), (2, "success", 1)]
    assert data["counts"] == {"kept": 1, "success": 1}
