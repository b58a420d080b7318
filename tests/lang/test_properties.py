"""Property: whatever a user's editor leaves in a .flow file, the front end answers with
diagnostics, never an exception, and every diagnostic points inside the file.

The inputs are the valid corpus, damaged: characters and tokens deleted, inserted,
replaced, duplicated and swapped; lines spliced in from other files; random
bytes. `flowdsl.check` runs in-process (no zipapp) to keep this fast, and so do
the renderings of `flow validate` and `flow graph`.
"""

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langkit import TEXTS, VALID, mutate, mutation

import flowdsl
from flowdsl.cli import drawing
from flowdsl.lang.diagnostics import CATALOGUE, render_github, render_json, render_sarif, render_text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A copy of the valid corpus (its task modules and included files), to write mutants into."""
    folder = tmp_path_factory.mktemp("mutants") / "valid"
    shutil.copytree(VALID, folder)
    return folder


def check_sane(path: Path, data: bytes):
    loaded = flowdsl.check(str(path))  # must not raise
    assert isinstance(loaded.diagnostics, list)
    for d in loaded.diagnostics:
        assert d.code in CATALOGUE, d
        s = d.span
        raw = data if Path(s.file) == path else Path(s.file).read_bytes()
        # bounds in bytes: a column counts characters, never more than the bytes of its line
        lines = raw.split(b"\n")
        assert 1 <= s.line <= len(lines), d
        assert 1 <= s.col <= len(lines[s.line - 1]) + 1, d
        assert (s.end_line, s.end_col) >= (s.line, s.col), d
        assert s.end_line <= len(lines), d
        assert s.end_col <= len(lines[s.end_line - 1]) + 2, d
        assert str(d).startswith(f"{s.file}:{s.line}:{s.col}: {d.code} ")
    # the renderings of `flow validate` must cope with whatever was found
    render_text(loaded.diagnostics, loaded.sources)
    render_text(loaded.diagnostics, loaded.sources, color=True)
    render_json(loaded.diagnostics, [str(path)])
    render_github(loaded.diagnostics)
    render_sarif(loaded.diagnostics, flowdsl.__version__)
    # and `flow graph` must draw whatever validates
    if loaded.program is not None and not any(d.severity == "error" for d in loaded.diagnostics):
        for fmt in ("ascii", "json", "dot", "mermaid"):
            assert drawing.render(loaded.program, fmt)
    return loaded


def test_corpus_is_there():
    assert len(TEXTS) >= 20


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(source=st.integers(0, len(TEXTS) - 1), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_corpus_gives_sane_diagnostics(workdir, source, ops):
    data = TEXTS[source]
    for op in ops:
        data = mutate(data, op)
    path = workdir / "mutant.flow"
    path.write_bytes(data)
    check_sane(path, data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_random_bytes_give_sane_diagnostics(workdir, data):
    path = workdir / "bytes.flow"
    path.write_bytes(data)
    check_sane(path, data)
