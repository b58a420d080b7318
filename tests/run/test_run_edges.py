"""Edge rules of `flow run` chosen where the reference is terse."""

import stat

from runkit import explain, run_json, state_runs, write_project


def test_no_output_is_the_empty_string_and_no_lines_an_empty_list(flow, tmp_path):
    """Section 3: a command with no output gives ""; section 7: `output lines` of it is []."""
    f = write_project(tmp_path, """
        task t { sh "true" output text }
        task j { sh "true" output json }
        task l { exec ["true"] output lines }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert [report["tasks"][k]["result"] for k in "tjl"] == ["", "", []]


def test_state_files_are_private(flow, tmp_path):
    f = write_project(tmp_path, """
        task t { sh "echo hi" }
        task p { run m:f }
    """, {"m.py": "def f():\n    print('x')\n    return 1\n"})
    proc, _ = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    (run,) = state_runs(tmp_path)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"journal.msgpack", "report.json", "t.1.log", "p.1.log"}
    for p in files + [run, run / "logs", tmp_path / ".flow"]:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, (p, oct(p.stat().st_mode))


def test_a_failing_on_create_is_a_failure_of_the_task(flow, tmp_path):
    f = write_project(tmp_path, """
        task c { run life:Life }
    """, {"life.py": """
        class Life:
            def log(self, what):
                with open("events", "a") as f:
                    f.write(what + "\\n")

            def on_create(self):
                self.log("on_create")
                raise RuntimeError("no connection")

            def run(self):
                self.log("run")

            def on_failure(self, error):
                self.log(f"on_failure {error}")

            def on_destroy(self):
                self.log("on_destroy")
    """})
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    assert report["tasks"]["c"]["error"]["type"] == "RuntimeError"
    assert (tmp_path / "events").read_text().split("\n")[:-1] == [
        "on_create", "on_failure no connection", "on_destroy"]
