"""`flow validate` as cli.md specifies it: the output formats, --strict and exit codes.

The corpus tests assert codes; these few tests pin the wording and the shapes
(like tomli's test_error.py), each on a small file written here.
"""

import json
import re
import textwrap

import pytest

from flowdsl.lang.diagnostics import CATALOGUE

PROBLEMS = textwrap.dedent("""\
    pipeline p {
        params { unused = 1 }
    }

    task extract { sh "echo x" }

    task transform {
    \tsh "echo {extrct.total}"
    }
""")

CYCLE = textwrap.dedent("""\
    task a { sh "echo {c}" }
    task b { sh "echo b" after a }
    task c { sh "echo {b}" }
""")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def clean(proc):
    """No traceback and no 'internal error', whatever the exit code."""
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in proc.stderr
    return proc


def test_text_format(flow, tmp_path):
    write(tmp_path, "problems.flow", PROBLEMS)
    proc = clean(flow("validate", "problems.flow", cwd=tmp_path))
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "problems.flow:2:14: warning W101 param `unused` is never used",
        "    2 |     params { unused = 1 }",
        "      |              ^^^^^^",
        "      = hint: refer to it as params.unused or remove it",
        # the tab before `sh` is shown as one space, so the caret stays under the name
        "problems.flow:8:12: error E201 unknown name `extrct`",
        '    8 |  sh "echo {extrct.total}"',
        "      |            ^^^^^^^^^^^^",
        "      = hint: did you mean `extract`?",
        "1 file: 1 error, 1 warning",
    ]


def test_text_format_clean_file(flow, tmp_path):
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    proc = clean(flow("validate", "ok.flow", cwd=tmp_path))
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "1 file checked: no problems", "")


def test_text_format_names_the_whole_cycle(flow, tmp_path):
    write(tmp_path, "cycle.flow", CYCLE)
    proc = clean(flow("validate", "cycle.flow", cwd=tmp_path))
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first.startswith("cycle.flow:1:20: error E301 ")
    assert "a → c → b → a" in first


def test_text_format_syntax_error_says_what_was_expected(flow, tmp_path):
    write(tmp_path, "syntax.flow", 'task a {\n    sh "echo a"\n    frobnicate 3\n}\n')
    proc = clean(flow("validate", "syntax.flow", cwd=tmp_path))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1
    assert lines[0] == "syntax.flow:3:5: error E001 unexpected name `frobnicate`"
    assert lines[1:3] == ["    3 |     frobnicate 3", "      |     ^^^^^^^^^^"]
    assert lines[3].startswith("      = hint: expected a task statement (`run`, `sh`, `exec`")


def test_text_format_shows_the_right_line_after_unusual_line_breaks(flow, tmp_path):
    write(tmp_path, "breaks.flow", '# a note\u2028with a line separator\ntask a { sh "x" } $\n')
    proc = clean(flow("validate", "breaks.flow", cwd=tmp_path))
    assert proc.stdout.splitlines()[1] == '    2 | task a { sh "x" } $'


def test_json_format_shape(flow, tmp_path):
    write(tmp_path, "problems.flow", PROBLEMS)
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    proc = clean(flow("validate", "--format", "json", "problems.flow", "ok.flow", cwd=tmp_path))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert set(report) == {"files", "errors", "warnings", "diagnostics"}
    assert report["files"] == ["problems.flow", "ok.flow"]
    assert (report["errors"], report["warnings"]) == (1, 1)
    warning, error = report["diagnostics"]
    assert error == {"severity": "error", "code": "E201", "message": "unknown name `extrct`",
                     "hint": "did you mean `extract`?", "file": "problems.flow",
                     "line": 8, "column": 12, "end_line": 8, "end_column": 24}
    assert warning["severity"] == "warning" and warning["code"] == "W101"
    assert set(warning) == set(error)


def test_json_format_when_clean(flow, tmp_path):
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    proc = clean(flow("validate", "--format", "json", "ok.flow", cwd=tmp_path))
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"files": ["ok.flow"], "errors": 0, "warnings": 0, "diagnostics": []}


def test_json_hints_name_the_close_match(flow, tmp_path):
    """Section 6: unknown names come with a "did you mean" where one is close."""
    write(tmp_path, "names.flow", textwrap.dedent("""\
        pipeline p {
            params { region = "emea" }
        }
        task extract { sh "echo {params.regoin}" }
        task load { sh "echo" after extrct }
        task report { sh "echo {run.dat}" }
    """))
    proc = clean(flow("validate", "--format", "json", "names.flow", cwd=tmp_path))
    hints = {d["code"]: d["hint"] for d in json.loads(proc.stdout)["diagnostics"]}
    assert hints == {"E205": "did you mean `region`?", "E201": "did you mean `extract`?",
                     "E206": "did you mean `date`?", "W101": hints.get("W101")}


def test_github_format(flow, tmp_path):
    write(tmp_path, "problems.flow", PROBLEMS)
    proc = clean(flow("validate", "--format", "github", "problems.flow", cwd=tmp_path))
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    pattern = re.compile(r"^::(error|warning) file=([^,]+),line=(\d+),col=(\d+)(,[^:]*)?::(.+)$")
    parsed = [pattern.match(line) for line in lines]
    assert all(parsed), lines
    assert [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in parsed] == [
        ("warning", "problems.flow", "2", "14"), ("error", "problems.flow", "8", "12")]
    assert "unknown name `extrct`" in parsed[1].group(6)


def test_github_format_escapes_its_separators(flow, tmp_path):
    folder = tmp_path / "a,b:c"
    folder.mkdir()
    write(folder, "x.flow", 'task a { sh "echo {nope}" }\n')
    proc = clean(flow("validate", "--format", "github", "a,b:c/x.flow", cwd=tmp_path))
    line, = proc.stdout.splitlines()
    assert line.startswith("::error file=a%2Cb%3Ac/x.flow,line=1,col=20")


def test_sarif_format(flow, tmp_path):
    write(tmp_path, "problems.flow", PROBLEMS)
    proc = clean(flow("validate", "--format", "sarif", "problems.flow", cwd=tmp_path))
    assert proc.returncode == 1
    sarif = json.loads(proc.stdout)
    assert sarif["version"] == "2.1.0"
    run, = sarif["runs"]
    assert run["tool"]["driver"]["name"] == "flow"
    rules = run["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} == {"E201", "W101"}
    for r in rules:
        assert r["shortDescription"]["text"] == CATALOGUE[r["id"]][1]
    results = run["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [("W101", "warning"), ("E201", "error")]
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
        loc, = r["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == "problems.flow"
    region = results[1]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 8, "startColumn": 12, "endLine": 8, "endColumn": 24}
    assert "extrct" in results[1]["message"]["text"]


def test_strict_makes_warnings_fail(flow, tmp_path):
    write(tmp_path, "warn.flow", 'pipeline p { params { unused = 1 } }\ntask a { sh "echo a" }\n')
    assert clean(flow("validate", "warn.flow", cwd=tmp_path)).returncode == 0
    assert clean(flow("validate", "--strict", "warn.flow", cwd=tmp_path)).returncode == 1
    proc = clean(flow("validate", "--strict", "--format", "json", "warn.flow", cwd=tmp_path))
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["warnings"] == 1


def test_strict_without_warnings_passes(flow, tmp_path):
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    assert clean(flow("validate", "--strict", "ok.flow", cwd=tmp_path)).returncode == 0


def test_target_warns_about_unneeded_tasks(flow, tmp_path):
    write(tmp_path, "t.flow", 'task a { sh "x" }\ntask b { sh "{a}" }\ntask c { sh "x" }\n')
    proc = clean(flow("validate", "--format", "json", "--target", "b", "t.flow", cwd=tmp_path))
    report = json.loads(proc.stdout)
    assert [(d["code"], d["line"]) for d in report["diagnostics"]] == [("W102", 3)]
    assert proc.returncode == 0
    proc = clean(flow("validate", "--strict", "--target", "b", "t.flow", cwd=tmp_path))
    assert proc.returncode == 1


@pytest.mark.parametrize("args, message", [
    pytest.param(["validate", "missing.flow"], "missing.flow", id="missing-file"),
    pytest.param(["validate", "ok.flow", "missing_dir/"], "missing_dir", id="missing-among-others"),
    pytest.param(["validate", "--target", "nope", "ok.flow"], "nope", id="unknown-target"),
    pytest.param(["validate", "--format", "xml", "ok.flow"], "xml", id="unknown-format"),
    pytest.param(["validate"], "PATH", id="no-path"),
    pytest.param(["frobnicate"], "frobnicate", id="unknown-verb"),
    pytest.param(["graph", "missing.flow"], "missing.flow", id="graph-missing-file"),
    pytest.param(["graph", "ok.flow", "--format", "png"], "png", id="graph-unknown-format"),
])
def test_usage_errors_exit_2(flow, tmp_path, args, message):
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    proc = clean(flow(*args, cwd=tmp_path))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_exit_codes_0_and_1(flow, tmp_path):
    write(tmp_path, "ok.flow", 'task a { sh "echo a" }\n')
    write(tmp_path, "bad.flow", 'task a { sh "echo {b}" }\n')
    assert clean(flow("validate", "ok.flow", cwd=tmp_path)).returncode == 0
    assert clean(flow("validate", "bad.flow", cwd=tmp_path)).returncode == 1
    assert clean(flow("validate", "ok.flow", "bad.flow", cwd=tmp_path)).returncode == 1
    assert clean(flow("validate", ".", cwd=tmp_path)).returncode == 1


def test_version(flow):
    proc = clean(flow("--version"))
    assert proc.returncode == 0
    assert re.fullmatch(r"flow \d+\.\d+\.\d+\S*", proc.stdout.strip())


def test_folder_means_every_flow_file_below_it(flow, tmp_path):
    """cli.md: a folder means every *.flow below it (hidden folders such as the .flow/
    state folder aside, and files of other kinds ignored)."""
    write(tmp_path, "top.flow", 'task a { sh "echo a" }\n')
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write(tmp_path / "sub" / "deeper", "low.flow", 'task b { sh "echo {nope}" }\n')
    write(tmp_path / "sub", "notes.txt", "task ???\n")
    (tmp_path / ".flow").mkdir()
    write(tmp_path / ".flow", "hidden.flow", "this is not checked\n")
    proc = clean(flow("validate", "--format", "json", ".", cwd=tmp_path))
    report = json.loads(proc.stdout)
    assert sorted(report["files"]) == ["./sub/deeper/low.flow", "./top.flow"]
    assert [(d["file"], d["code"]) for d in report["diagnostics"]] == [("./sub/deeper/low.flow", "E201")]
    assert proc.returncode == 1


def test_a_problem_in_an_included_file_names_where_it_is_included_from(flow, tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "main.flow").write_text('task a { sh "x" }\ninclude "lib/parts.flow"\n')
    (tmp_path / "lib" / "parts.flow").write_text('include "deeper.flow"\ntask b { sh "{nope}" }\n')
    (tmp_path / "lib" / "deeper.flow").write_text('task d { sh "x" after qq }\n')
    for verb in (("validate",), ("run",)):
        proc = flow(*verb, "main.flow", cwd=tmp_path)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        assert "lib/parts.flow:2:15: error E201 unknown name `nope`" in out
        assert "= note: included from main.flow:2:1" in out
        assert "= note: included from lib/parts.flow:1:1, included from main.flow:2:1" in out
