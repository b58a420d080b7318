"""Hostile input through the CLI: every file gets a diagnostic and exit 1, never a traceback.

cli.md: "No verb ever ends with a Python traceback for bad input". The files are
made here (some are large or binary); all of them go through one
`flow validate --format json` call and one text-format call.
"""

import json
import random

import pytest

DEEP = 5000


def _garbage():
    rng = random.Random(20261125)
    return bytes(rng.randrange(256) for _ in range(4096))


def _long_line():
    return b'task a {\n    sh "' + b"x" * 200_000 + b'" $\n}\n'


def _big_list(tail):
    items = b", ".join(b"%d" % i for i in range(20_000))
    return b"task a {\n    sh \"x\"\n    with { items = [" + items + b"] " + tail + b"}\n}\n"


# name: (content, [(line, col, code)] expected, or a code alone when the position is
# not the point). Lines and columns count from 1.
CASES = {
    "empty": (b"", [(1, 1, "E006")]),
    "blank": (b"  \n\t\n\n", [(1, 1, "E006")]),
    "only_comments": (b"# nothing\n# here\n", [(1, 1, "E006")]),
    "only_bom": (b"\xef\xbb\xbf", [(1, 1, "E006")]),
    "garbage": (_garbage(), "E005"),
    "invalid_utf8": (b'task a {\n    sh "caf\xc3"\n}\n', [(2, 12, "E005")]),
    "utf16": ("task a { sh \"x\" }\n".encode("utf-16"), "E005"),
    "nul_byte": (b'task a {\x00 sh "x" }\n', [(1, 9, "E002")]),
    "nul_in_string": (b'task a { sh "x\x00y" $ }\n', [(1, 19, "E002")]),
    "control_chars": (b'task a { sh "x" }\n\x1b[31m\n', [(2, 1, "E002")]),
    "unknown_chars": (b'task a { sh "x" } ~ ` ; @\n', [(1, 19, "E002")]),
    "emoji_name": ('task \U0001F600 { sh "x" }\n'.encode(), [(1, 6, "E002")]),
    "lone_quote": (b'task a { sh "x" }\n"', [(2, 1, "E003")]),
    "unclosed_brace": (b'task a { sh "x" with { k = [1, {', [(1, 33, "E004")]),
    "big_number": (b"task a {\n    sh \"x\"\n    with { n = " + b"7" * 5000 + b" }\n}\n", [(3, 16, "E010")]),
    "big_negative": (b"task a {\n    sh \"x\"\n    with { n = -" + b"9" * 5000 + b" }\n}\n", [(3, 16, "E010")]),
    "big_index": (b'task a { sh "x" }\ntask b { sh "x" with { v = a[' + b"1" * 5000 + b"] } }\n", [(2, 30, "E101")]),
    "big_list_then_error": (_big_list(b"oops"), "E001"),
    "big_list_unknown_name": (_big_list(b"n = nowhere "), [(3, None, "E201")]),
    "long_line": (_long_line(), [(2, 200_011, "E002")]),
    "deep_list": (b'task a {\n    sh "x"\n    with { deep = ' + b"[" * DEEP + b"1" + b"]" * DEEP + b" }\n}\n",
                  [(3, None, "E009")]),
    "deep_map": (b'task a {\n    sh "x"\n    with { deep = ' + b"{ k = " * DEEP + b"1" + b" }" * DEEP + b" }\n}\n",
                 [(3, None, "E009")]),
    "deep_unclosed": (b'task a { sh "x" with { deep = ' + b"[" * DEEP, "E004"),
}

PENDING: dict = {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    for name, (content, _) in CASES.items():
        (folder / f"{name}.flow").write_bytes(content)
    return folder


@pytest.fixture(scope="module")
def json_run(flow, corpus):
    names = [f"{n}.flow" for n in CASES]
    proc = flow("validate", "--format", "json", *names, cwd=corpus)
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert report["files"] == names
    by_file = {}
    for d in report["diagnostics"]:
        by_file.setdefault(d["file"], []).append(d)
    return proc, by_file


@pytest.mark.parametrize("name", [
    pytest.param(n, id=n, marks=[pytest.mark.xfail(strict=True, reason=PENDING[n])] if n in PENDING else [])
    for n in CASES
])
def test_bad_input_gets_a_diagnostic(name, json_run, corpus):
    proc, by_file = json_run
    assert proc.returncode == 1
    got = by_file.get(f"{name}.flow", [])
    assert got, "no diagnostic"
    expected = CASES[name][1]
    if isinstance(expected, str):
        assert got[0]["code"] == expected
    else:
        rows = [(d["line"], d["column"] if col is not None else None, d["code"])
                for d, (_, col, _) in zip(got, expected)]
        assert rows == expected[:len(rows)] and len(got) == len(expected), got
    lines = (corpus / f"{name}.flow").read_bytes().split(b"\n")
    for d in got:
        assert d["severity"] == "error"
        assert 1 <= d["line"] <= len(lines)
        assert 1 <= d["column"] <= len(lines[d["line"] - 1]) + 1
        assert (d["end_line"], d["end_column"]) >= (d["line"], d["column"])
        assert len(d["message"]) < 300, "a message quotes too much of the input"


def test_text_format_survives_bad_input(flow, corpus):
    names = [f"{n}.flow" for n in CASES if n not in PENDING]
    proc = flow("validate", *names, cwd=corpus)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "internal error" not in proc.stderr
    # a 200,000-character line is shown cut around the caret, not whole
    assert max(len(line) for line in proc.stdout.splitlines()) < 1000
    assert f"{len(names)} files: {len(names)} errors, 0 warnings" in proc.stdout


def test_big_list_alone_is_fine(flow, tmp_path):
    (tmp_path / "list.flow").write_bytes(_big_list(b""))
    proc = flow("validate", "--format", "json", "list.flow", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    assert json.loads(proc.stdout)["diagnostics"] == []


def test_nesting_at_the_limit_is_fine(flow, tmp_path):
    """100 levels (builder.MAX_NESTING) are allowed; tests/data/invalid/E009_nesting.flow has 101."""
    (tmp_path / "deep.flow").write_text('task a {\n    sh "x"\n    with { deep = ' + "[" * 100 + "1" + "]" * 100
                                        + ' }\n}\n')
    proc = flow("validate", "--format", "json", "deep.flow", cwd=tmp_path)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["diagnostics"] == []


def test_graph_of_deep_nesting(flow, tmp_path):
    (tmp_path / "deep.flow").write_text('task a {\n    foreach x in ' + "[" * DEEP + "1" + "]" * DEEP
                                        + '\n    sh "echo {x}"\n}\n')
    proc = flow("graph", "deep.flow", cwd=tmp_path)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.returncode == 1
    assert "E009" in proc.stderr


@pytest.mark.parametrize("source", [
    pytest.param("x = " + "-" * 300_000 + "1\n", id="deep-unary"),
    pytest.param("x = " + "a." * 300_000 + "b\n", id="deep-attributes"),
])
def test_task_module_that_ast_cannot_parse(flow, tmp_path, source):
    (tmp_path / "deepmod.py").write_text(source)
    (tmp_path / "p.flow").write_text("task a {\n    run deepmod:f\n}\n")
    proc = flow("validate", "--format", "json", "p.flow", cwd=tmp_path)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.returncode == 1
    assert [d["code"] for d in json.loads(proc.stdout)["diagnostics"]] == ["E405"]


def test_task_module_with_null_bytes(flow, tmp_path):
    (tmp_path / "nulmod.py").write_bytes(b"def f():\x00\n    pass\n")
    (tmp_path / "p.flow").write_text("task a {\n    run nulmod:f\n}\n")
    proc = flow("validate", "--format", "json", "p.flow", cwd=tmp_path)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.returncode == 1
    assert [d["code"] for d in json.loads(proc.stdout)["diagnostics"]] == ["E405"]
