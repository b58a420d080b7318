"""Property: whatever a user's editor leaves in a .flow file, the front end answers with
diagnostics, never an exception, and every diagnostic points inside the file.

The inputs are the valid corpus, damaged: characters and tokens deleted, inserted,
replaced, duplicated and swapped; lines spliced in from other files; random
bytes. `flowdsl.check` runs in-process (no zipapp) to keep this fast, and so do
the renderings of `flow validate` and `flow graph`.
"""

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowdsl
from flowdsl.cli import drawing
from flowdsl.lang.diagnostics import CATALOGUE, render_github, render_json, render_sarif, render_text

VALID = Path(__file__).resolve().parents[1] / "data" / "valid"
SOURCES = sorted(VALID.rglob("*.flow"))
TEXTS = [p.read_bytes() for p in SOURCES]
TOKEN = re.compile(rb'\s+|"(?:[^"\\\n]|\\.)*"|[A-Za-z0-9_.:]+|.', re.S)

SNIPPETS = [
    b"{", b"}", b"[", b"]", b"(", b")", b'"', b'"""', b"#", b"\n", b"=", b",", b":", b".", b"\\", b"{{", b"}}",
    b"task", b"task x {", b"pipeline", b"pipeline p {", b"include", b'include "mutant.flow"',
    b'include "include/left.flow"', b"run", b"run tasks.basic:hello", b"sh", b'sh "x"', b"exec", b"with",
    b"with {", b"after", b"retry", b"delay", b"on", b"foreach", b"in", b"when", b"output", b"cache", b"tags",
    b"timeout", b"schedule cron", b"tz", b"every", b"window", b"params", b"defaults", b"concurrency",
    b"-1", b"0", b"2.5", b"1_000", b"1e999", b"9" * 30, b"500ms", b"1h30m", b"99999999999d", b"true", b"null",
    b"env(", b'env("X")', b'secret("S")', b"params.", b"run.", b"run.id", b"{run.date:%Y}", b"x[0]", b'x["k"]',
    b"\x00", b"\xff", b"\xc3", "é".encode(), "\u2028".encode(), b"\r", b"\r\n", b"\t", b"\xef\xbb\xbf",
    b"[" * 120, b"{a=" * 60,
]

position = st.integers(min_value=0, max_value=10**6)
snippet = st.one_of(st.sampled_from(SNIPPETS), st.binary(min_size=1, max_size=6),
                    st.text(min_size=1, max_size=6).map(lambda s: s.encode("utf-8", "surrogatepass")))
mutation = st.one_of(
    st.tuples(st.just("delete"), position, st.integers(1, 40)),
    st.tuples(st.just("insert"), position, snippet),
    st.tuples(st.just("replace"), position, st.integers(1, 10), snippet),
    st.tuples(st.just("drop_token"), position),
    st.tuples(st.just("dup_token"), position),
    st.tuples(st.just("swap_tokens"), position, position),
    st.tuples(st.just("splice"), st.integers(0, len(TEXTS) - 1), position, st.integers(1, 8), position),
)


def mutate(data: bytes, op) -> bytes:
    kind, *args = op
    n = len(data)
    if kind == "delete":
        i = args[0] % (n + 1)
        return data[:i] + data[i + args[1]:]
    if kind == "insert":
        i = args[0] % (n + 1)
        return data[:i] + args[1] + data[i:]
    if kind == "replace":
        i = args[0] % (n + 1)
        return data[:i] + args[2] + data[i + args[1]:]
    tokens = TOKEN.findall(data)
    if kind in ("drop_token", "dup_token", "swap_tokens"):
        if not tokens:
            return data
        i = args[0] % len(tokens)
        if kind == "drop_token":
            del tokens[i]
        elif kind == "dup_token":
            tokens.insert(i, tokens[i])
        else:
            j = args[1] % len(tokens)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        return b"".join(tokens)
    # splice: some lines of another corpus file, put in at a line boundary
    other = TEXTS[args[0]].split(b"\n")
    start = args[1] % len(other)
    piece = other[start:start + args[2]]
    lines = data.split(b"\n")
    at = args[3] % (len(lines) + 1)
    return b"\n".join(lines[:at] + piece + lines[at:])


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
