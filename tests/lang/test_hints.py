"""Syntax hints that fit the mistake (what users of other tools write), each pinned to its wording."""

from __future__ import annotations

import pytest

from flowdsl import check

CASES = [
    ('task extract-orders { sh "x" }', "E002", "names use `_`, not `-`: `extract_orders`"),
    ('task load-all-the-rows { sh "x" }', "E002", "`load_all_the_rows`"),
    ('task a { sh "x" with { a: 1 } }', "E002", "`key = value`, not `key: value`"),
    ('pipeline p { params { region: "emea" } }\ntask a { sh "x" }', "E002", "`key = value`"),
    ('task a { sh "x" retries 3 }', "E001", "did you mean `retry`?"),
    ('task a { sh "x" tmeout 3s }', "E001", "did you mean `timeout`?"),
    ('task b { sh "b" }\ntask a { sh "x" depends_on b }', "E001", "did you mean `after`?"),
    ('task b { sh "b" }\ntask a { sh "x" needs b }', "E001", "did you mean `after`?"),
    ('task a { command "x" }', "E001", "did you mean `sh`?"),
    ('pipeline p { parallelism 4 }\ntask a { sh "x" }', "E001", "did you mean `concurrency`?"),
    ('task a { sh "echo ${HOME}" }', "E201", "the shell's `$HOME` needs no braces here"),
    ('task a { sh "cd ${WORKDIR} && make" }', "E201", "`$WORKDIR`"),
]


@pytest.mark.parametrize("text, code, hint", CASES)
def test_a_hint_that_fits_the_mistake(tmp_path, text, code, hint):
    f = tmp_path / "h.flow"
    f.write_text(text + "\n")
    (d,) = [d for d in check(str(f)).diagnostics if d.severity == "error"]
    assert d.code == code and hint in (d.hint or ""), (d.code, d.message, d.hint)


def test_a_known_name_after_a_dollar_is_flows_own(tmp_path):
    f = tmp_path / "h.flow"
    f.write_text('task a { sh "echo x" }\ntask b { sh "echo ${a}" }\n')  # `$` then the task's result: valid
    assert [d for d in check(str(f)).diagnostics if d.severity == "error"] == []
