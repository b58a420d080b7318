"""Conditions at run time, end to end (language reference, section 7): `if`, `when none_failed`,
`flowdsl.Skip`, per-instance conditions, and the small forms beside them (`foreach key, value`,
`output lines` of nothing, `shell`)."""

import pytest
from runkit import explain, run_json, write_project

BRANCH = """
    pipeline branch {
        params { mode = "full"  stage = "prod" }
    }
    task extract { sh "echo '{{\\"mode\\": \\"{params.mode}\\", \\"rows\\": 3}}'"  output json }
    task load_full {
        sh "echo full > full.txt; echo full"
        if extract.mode == "full" and params.stage != "dev"
    }
    task load_incremental {
        sh "echo incremental > incremental.txt; echo incremental"
        if extract.mode != "full"
    }
    task publish {
        sh    "echo published"
        after load_full, load_incremental
        when  none_failed
    }
    task strict {
        sh    "echo strict"
        after load_full, load_incremental
    }
"""


@pytest.mark.parametrize("mode, ran, skipped", [("full", "load_full", "load_incremental"),
                                                ("delta", "load_incremental", "load_full")])
def test_two_branches_join_with_none_failed(flow, tmp_path, mode, ran, skipped):
    f = write_project(tmp_path, BRANCH)
    proc, report = run_json(flow, f, "--param", f"mode={mode}")
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    assert tasks[ran]["status"] == "success"
    assert tasks[skipped]["status"] == "skipped"
    assert tasks[skipped]["attempts"] == 0
    assert tasks[skipped]["reason"].startswith("condition false: extract.mode")
    assert not (tmp_path / f"{skipped.split('_')[1]}.txt").exists()  # it never ran
    assert tasks["publish"]["status"] == "success"  # none failed: a skipped upstream is allowed
    assert tasks["strict"]["status"] == "skipped"  # `when success` needs every upstream to succeed
    assert report["status"] == "success"


def test_the_condition_text_is_the_skip_reason_as_written(flow, tmp_path):
    f = write_project(tmp_path, BRANCH)
    proc, report = run_json(flow, f, "--param", "stage=dev")
    assert report["tasks"]["load_full"]["reason"] == \
        'condition false: extract.mode == "full" and params.stage != "dev"'
    status = flow("status", "--file", f, cwd=tmp_path)
    assert "condition false" in status.stdout, explain(status)


def test_none_failed_skips_when_an_upstream_failed(flow, tmp_path):
    f = write_project(tmp_path, """
        task ok { sh "true" }
        task bad { sh "exit 3" }
        task skipped { sh "true"  if false }
        task join { sh "echo joined"  after ok, bad, skipped  when none_failed }
        task join_ok { sh "echo joined"  after ok, skipped  when none_failed }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1
    assert report["tasks"]["join"]["status"] == "skipped"
    assert "bad" in report["tasks"]["join"]["reason"] and "none_failed" in report["tasks"]["join"]["reason"]
    assert report["tasks"]["join_ok"]["status"] == "success"


def test_a_condition_that_cannot_be_evaluated_fails_the_task_naming_the_reference(flow, tmp_path):
    f = write_project(tmp_path, """
        task extract { sh "echo '{{\\"a\\": 1}}'"  output json }
        task t { sh "echo t"  if extract.mode == "x" }
        task order { sh "echo o"  if extract.a < "text" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1
    error = report["tasks"]["t"]["error"]
    assert error["type"] == "EvalError" and "extract.mode" in error["message"] and "a" in error["message"]
    assert "cannot order" in report["tasks"]["order"]["error"]["message"]
    assert report["tasks"]["t"]["attempts"] == 0


def test_a_condition_on_a_foreach_is_evaluated_per_instance(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline each { params { items = [1, 5, 2, 8] } }
        task big {
            foreach n in params.items
            sh "echo {n}"
            output json
            if n > 3
        }
        task none {
            foreach n in params.items
            sh "echo {n}"
            if n > 100
        }
        task after_big { sh "echo {big}" }
        task after_none { sh "echo none" after none }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    assert tasks["big"]["status"] == "success"
    assert tasks["big"]["result"] == [None, 5, None, 8]  # a skipped instance's result is null
    assert [tasks[f"big[{i}]"]["status"] for i in range(4)] == ["skipped", "success", "skipped", "success"]
    assert tasks["big[0]"]["reason"] == "condition false: n > 3"
    assert tasks["after_big"]["result"] == "[null, 5, null, 8]"
    assert tasks["none"]["status"] == "skipped"  # every instance skipped
    assert tasks["after_none"]["status"] == "skipped"


def test_a_reference_in_a_condition_is_a_dependency(flow, tmp_path):
    f = write_project(tmp_path, """
        task gate { sh "sleep 0.3; echo yes" }
        task t { sh "echo t"  if gate == "yes" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["t"]["status"] == "success"
    assert report["tasks"]["t"]["started_at"] >= report["tasks"]["gate"]["finished_at"]
    graph = flow("graph", f, "--format", "json")
    if graph.returncode == 0:
        assert "gate" in graph.stdout


def test_a_python_task_skips_itself_with_flowdsl_skip(flow, tmp_path):
    f = write_project(tmp_path, """
        task maybe { run tasks:maybe }
        task after_it { sh "echo after"  after maybe }
        task always_after { sh "echo always"  after maybe  when always }
    """, {"tasks.py": """
        import flowdsl

        def maybe():
            raise flowdsl.Skip("nothing new today")
    """})
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["maybe"]["status"] == "skipped"
    assert report["tasks"]["maybe"]["reason"] == "nothing new today"
    assert report["tasks"]["after_it"]["status"] == "skipped"
    assert report["tasks"]["always_after"]["status"] == "success"


def test_a_resume_evaluates_a_condition_again(flow, tmp_path):
    f = write_project(tmp_path, """
        task flag { sh "cat flag.txt" }
        task t { sh "echo ran > ran.txt"  if flag == "on" }
        task fail_once { sh "test -f ok.txt" }
    """)
    (tmp_path / "flag.txt").write_text("off")
    proc, report = run_json(flow, f)
    assert report["tasks"]["t"]["status"] == "skipped" and proc.returncode == 1
    (tmp_path / "ok.txt").write_text("")
    proc, report = run_json(flow, f, "--resume")
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["t"]["status"] == "skipped"  # flag succeeded and is kept: still "off"


def test_foreach_key_value_iterates_a_maps_items_in_order(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline maps { params { regions = { emea = "Berlin"  apac = "Tokyo"  amer = "Austin" } } }
        task each {
            foreach region, city in params.regions
            sh "echo {region}={city}"
        }
        task from_result {
            foreach k, v in source
            sh "echo {k}:{v}"
        }
        task source { sh "echo '{{\\"x\\": 1, \\"y\\": [2]}}'"  output json }
        task wrong { foreach k in source  sh "echo {k}" }
    """)
    proc, report = run_json(flow, f)
    tasks = report["tasks"]
    assert tasks["each"]["result"] == ["emea=Berlin", "apac=Tokyo", "amer=Austin"]
    assert tasks["from_result"]["result"] == ["x:1", "y:[2]"]
    assert tasks["wrong"]["status"] == "failed"
    assert "foreach key, value" in tasks["wrong"]["error"]["message"]


def test_output_lines_of_nothing_is_an_empty_list(flow, tmp_path):
    f = write_project(tmp_path, """
        task none { sh "true"  output lines }
        task blank { sh "printf '\\n\\n'"  output lines }
        task each { foreach x in none  sh "echo {x} >> ran.txt" }
        task text { sh "true" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    assert report["tasks"]["none"]["result"] == []
    assert report["tasks"]["blank"]["result"] == []
    assert report["tasks"]["each"]["result"] == []
    assert report["tasks"]["text"]["result"] == ""
    assert not (tmp_path / "ran.txt").exists()


def test_shell_chooses_the_program_that_runs_sh_commands(flow, tmp_path):
    f = write_project(tmp_path, """
        pipeline shells {
            shell ["bash", "-c"]
            defaults { shell ["bash", "-eu", "-o", "pipefail", "-c"] }
            on finish sh "echo $0 > hook.txt"
        }
        task strict { sh "false | cat; echo not reached" }
        task plain { sh "echo $0"  shell ["/bin/sh", "-c"] }
        task arrays { sh "a=(1 2 3); echo ${{a[2]}}"  shell ["bash", "-c"] }
    """)
    proc, report = run_json(flow, f)
    tasks = report["tasks"]
    assert tasks["strict"]["status"] == "failed"  # pipefail from defaults
    assert tasks["plain"]["result"] == "/bin/sh"
    assert tasks["arrays"]["result"] == "3"
    assert (tmp_path / "hook.txt").read_text().strip() == "bash"  # hooks take the pipeline's shell


def test_dry_run_says_the_condition_the_join_and_the_sensor(flow, tmp_path):
    f = write_project(tmp_path, BRANCH + """
    task inbox { wait file "in/*.csv"  every 30s  timeout 2h }
    """)
    proc = flow("run", f, "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout
    assert 'load_full: sh "echo full > full.txt; echo full" — runs after extract succeed, if extract.mode == ' \
           '"full" and params.stage != "dev"' in out
    assert "publish" in out and "once load_full, load_incremental finish, if none failed" in out
    assert "inbox: wait file \"in/*.csv\" — runs at the start (checks every 30s until ready; timeout 2h for the " \
           "whole wait)" in out
    assert not (tmp_path / ".flow").exists()
