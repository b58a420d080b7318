"""flow run, end to end: sh and exec tasks. Quoting of hostile values, `with` as
FLOW_ARG_* variables, no shell for exec, output modes, failures."""

import json
import sys

from runkit import explain, run_json, write_project

# Each piece would create a file named pwned* if it ever became shell code.
HOSTILE_PY = "up; touch pwned_up1 && $(touch pwned_up2) `touch pwned_up3` 'sq' \"dq\" * \\ $HOME\nsecond line"
HOSTILE_PARAM = 'p; touch pwned_p1 $(touch pwned_p2) `touch pwned_p3` "dq" \'sq\' * \\ $HOME\nsecond line'
HOSTILE_CLI = "c; touch pwned_c1 | $(touch pwned_c2) `touch pwned_c3` 'sq' * $HOME"

HOSTILE_MODULE = {
    "hostile.py": f"""
        def value():
            return {HOSTILE_PY!r}

        def as_dict():
            return {{"v": value()}}
    """,
}


def test_hostile_values_are_passed_literally(flow, tmp_path):
    f = write_project(tmp_path, r"""
        pipeline quoting {
            params {
                p = "p; touch pwned_p1 $(touch pwned_p2) `touch pwned_p3` \"dq\" 'sq' * \\ $HOME\nsecond line"
                c = "placeholder"
            }
        }
        task up { run hostile:value }
        task upd { run hostile:as_dict }
        task sh_params { sh "printf '%s|' {params.p} {params.c}" }
        task sh_upstream { sh "printf '%s|' {up} {upd.v}" }
        task sh_mixed { sh "printf '%s' prefix-{params.c}-suffix" }
        task exec_all { exec ["printf", "%s|", "{params.p}", "{params.c}", "{up}", "{upd.v}"] }
    """, HOSTILE_MODULE)
    (tmp_path / "decoy.txt").write_text("a file that `*` would expand to")
    proc, report = run_json(flow, f, "--param", f"c={HOSTILE_CLI}")
    assert proc.returncode == 0, explain(proc)
    tasks = report["tasks"]
    assert HOSTILE_PARAM == report["params"]["p"]
    assert HOSTILE_CLI == report["params"]["c"]
    hostile_py = HOSTILE_PY
    assert tasks["up"]["result"] == hostile_py
    # `text` output is stripped, so the last "|" stays.
    assert tasks["sh_params"]["result"] == f"{HOSTILE_PARAM}|{HOSTILE_CLI}|"
    assert tasks["sh_upstream"]["result"] == f"{hostile_py}|{hostile_py}|"
    assert tasks["sh_mixed"]["result"] == f"prefix-{HOSTILE_CLI}-suffix"
    assert tasks["exec_all"]["result"] == f"{HOSTILE_PARAM}|{HOSTILE_CLI}|{hostile_py}|{hostile_py}|"
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


PRINT_ARGS = ("import os, json; "
              "print(json.dumps(dict((k, v) for k, v in os.environ.items() if k.startswith('FLOW_ARG_'))))")


def test_with_is_exported_as_flow_arg_variables(flow, tmp_path):
    python = sys.executable
    f = write_project(tmp_path, f"""
        task up {{ run hostile:value }}
        task via_sh {{
            sh "{python} -c \\"{PRINT_ARGS}\\""
            with {{ text = up  num = 3  ratio = 2.5  flag = true  nothing = null  lst = [1, "a"]
                   m = {{ k = "v" }}  snake_key = "s"  mixedCase = "m" }}
            output json
        }}
        task via_exec {{
            exec ["{python}", "-c", "{PRINT_ARGS}"]
            with {{ text = up  num = 3  flag = false }}
            output json
        }}
    """, HOSTILE_MODULE)
    proc, report = run_json(flow, f)
    assert proc.returncode == 0, explain(proc)
    hostile_py = HOSTILE_PY
    env = report["tasks"]["via_sh"]["result"]
    assert env["FLOW_ARG_TEXT"] == hostile_py
    assert env["FLOW_ARG_NUM"] == "3"
    assert env["FLOW_ARG_RATIO"] == "2.5"
    assert env["FLOW_ARG_FLAG"] == "true"
    assert env["FLOW_ARG_NOTHING"] == "null"
    assert json.loads(env["FLOW_ARG_LST"]) == [1, "a"]
    assert json.loads(env["FLOW_ARG_M"]) == {"k": "v"}
    assert env["FLOW_ARG_SNAKE_KEY"] == "s"
    assert env["FLOW_ARG_MIXEDCASE"] == "m"
    assert len(env) == 9
    assert report["tasks"]["via_exec"]["result"] == {
        "FLOW_ARG_TEXT": hostile_py, "FLOW_ARG_NUM": "3", "FLOW_ARG_FLAG": "false"}
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []


def test_exec_runs_no_shell(flow, tmp_path):
    f = write_project(tmp_path, """
        task words { exec ["echo", "$HOME", "*", "a;b", "`touch pwned_e`", "$(touch pwned_f)", "x > pwned_g"] }
        task missing_program { exec ["no-such-program-e2e", "arg"] }
    """)
    (tmp_path / "decoy.txt").write_text("")
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["words"]["result"] == "$HOME * a;b `touch pwned_e` $(touch pwned_f) x > pwned_g"
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == []
    missing = tasks["missing_program"]
    assert missing["status"] == "failed"
    assert "no-such-program-e2e" in missing["error"]["message"]


def test_output_modes_and_failures(flow, tmp_path):
    f = write_project(tmp_path, r"""
        task text { sh "printf '  padded text  \n\n'" }
        task text_explicit { sh "echo hi"  output text }
        task as_json { sh "echo '{{\"a\": [1, 2.5, null], \"b\": \"x\"}}'"  output json }
        task as_lines { sh "printf 'one\ntwo\n\nfour\n'"  output lines }
        task empty { sh "true" }
        task empty_exec { exec ["true"] }
        task bad_json { sh "echo not-json"  output json }
        task nonzero {
            exec ["sh", "-c", "echo to-stdout; echo EARLY-STDERR >&2; seq 1000 | sed s/^/filler-/ >&2; exit 7",
                  "ignored"]
        }
        task nonzero_sh { sh "echo boom-message >&2; exit 3" }
        task killed { sh "kill -9 $$" }
    """)
    proc, report = run_json(flow, f)
    assert proc.returncode == 1, explain(proc)
    tasks = report["tasks"]
    assert tasks["text"]["result"] == "padded text"
    assert tasks["text_explicit"]["result"] == "hi"
    assert tasks["as_json"]["result"] == {"a": [1, 2.5, None], "b": "x"}
    assert tasks["as_lines"]["result"] == ["one", "two", "", "four"]
    assert (tasks["empty"]["status"], tasks["empty"]["result"]) == ("success", "")
    assert (tasks["empty_exec"]["status"], tasks["empty_exec"]["result"]) == ("success", "")
    assert tasks["bad_json"]["status"] == "failed"
    assert "json" in tasks["bad_json"]["error"]["message"].lower()
    err = tasks["nonzero"]["error"]
    assert tasks["nonzero"]["status"] == "failed"
    assert "7" in err["message"]
    assert "filler-1000" in err["message"]
    assert "EARLY-STDERR" not in err["message"], "the whole stderr, not its tail"
    assert len(err["message"]) < 5000
    err = tasks["nonzero_sh"]["error"]
    assert "3" in err["message"] and "boom-message" in err["message"]
    assert tasks["killed"]["status"] == "failed"
    assert "9" in tasks["killed"]["error"]["message"]
