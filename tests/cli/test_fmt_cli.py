"""`flow fmt` through the zipapp, as a user runs it: rewriting files, --check, --diff, stdin,
folders, and files it must not touch (syntax errors, bad bytes)."""

import os
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"

MESSY = 'task b {sh "echo {a}"   # uses a\n}\ntask a { sh "echo a" }\n'
CANONICAL = 'task b {\n    sh "echo {a}"  # uses a\n}\n\ntask a {\n    sh "echo a"\n}\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_fmt_rewrites_a_file_and_names_it(flow, tmp_path):
    f = write(tmp_path / "p.flow", MESSY)
    os.chmod(f, 0o640)
    proc = flow("fmt", f)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(f)]
    assert f.read_text(encoding="utf-8") == CANONICAL
    assert f.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["p.flow"]  # no temporary file left behind
    # formatted already: nothing printed, the file not even rewritten
    before = f.stat().st_mtime_ns
    proc = flow("fmt", f)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert f.stat().st_mtime_ns == before


def test_check_names_the_files_that_would_change_and_writes_nothing(flow, tmp_path):
    messy = write(tmp_path / "messy.flow", MESSY)
    clean = write(tmp_path / "clean.flow", CANONICAL)
    proc = flow("fmt", "--check", messy, clean)
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [str(messy)]
    assert messy.read_text(encoding="utf-8") == MESSY
    proc = flow("fmt", "--check", clean)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_diff_prints_a_unified_diff_and_writes_nothing(flow, tmp_path):
    f = write(tmp_path / "p.flow", MESSY)
    proc = flow("fmt", "--diff", f)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f"--- {f} (original)" and lines[1] == f"+++ {f} (formatted)"
    assert '-task b {sh "echo {a}"   # uses a' in lines
    assert '+    sh "echo {a}"  # uses a' in lines
    assert f.read_text(encoding="utf-8") == MESSY
    assert flow("fmt", "--diff", write(tmp_path / "c.flow", CANONICAL)).stdout == ""


def test_stdin_to_stdout(flow):
    proc = flow("fmt", "-", input=MESSY)
    assert (proc.returncode, proc.stdout) == (0, CANONICAL)
    proc = flow("fmt", "--check", "-", input=MESSY)
    assert (proc.returncode, proc.stdout) == (1, "<stdin>\n")
    proc = flow("fmt", "--check", "-", input=CANONICAL)
    assert (proc.returncode, proc.stdout) == (0, "")


def test_a_file_with_a_syntax_error_is_not_touched(flow, tmp_path):
    bad = write(tmp_path / "bad.flow", 'task a {\n    sh "x"\n    after\n}\n')
    good = write(tmp_path / "good.flow", MESSY)
    proc = flow("fmt", bad, good)
    assert proc.returncode == 1
    assert f"{bad}:4:1: error E001" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert bad.read_text(encoding="utf-8") == 'task a {\n    sh "x"\n    after\n}\n'
    assert good.read_text(encoding="utf-8") == CANONICAL  # the others are still formatted
    proc = flow("fmt", "-", input='task a { sh "x"')
    assert proc.returncode == 1 and "<stdin>:1:" in proc.stderr and "E004" in proc.stderr and proc.stdout == ""


def test_bytes_that_are_not_utf8(flow, tmp_path):
    f = tmp_path / "latin.flow"
    f.write_bytes(b'task a { sh "caf\xe9" }\n')
    proc = flow("fmt", f)
    assert proc.returncode == 1 and "E005" in proc.stderr and "Traceback" not in proc.stderr
    assert f.read_bytes() == b'task a { sh "caf\xe9" }\n'


def test_bom_and_crlf_are_normalised(flow, tmp_path):
    f = tmp_path / "win.flow"
    f.write_bytes(b'\xef\xbb\xbftask a {\r\n    sh "x"\r\n}\r\n')
    assert flow("fmt", "--check", f).returncode == 1
    assert flow("fmt", f).returncode == 0
    assert f.read_bytes() == b'task a {\n    sh "x"\n}\n'


def test_a_folder_formats_every_flow_file_below(flow, tmp_path):
    corpus = tmp_path / "valid"
    shutil.copytree(DATA / "valid", corpus)
    before = {p: p.read_bytes() for p in corpus.rglob("*.flow")}
    proc = flow("fmt", corpus)
    assert proc.returncode == 0, proc.stderr
    changed = {Path(line) for line in proc.stdout.splitlines()}
    assert changed and changed <= set(before)
    assert changed == {p for p in before if p.read_bytes() != before[p]}
    assert flow("fmt", "--check", corpus).returncode == 0  # idempotent, file by file
    # the formatted corpus checks exactly as before: same diagnostics, same graph
    for name in ("spec_example.flow", "include_main.flow", "comments.flow"):
        ours = flow("graph", corpus / name, "--format", "json")
        theirs = flow("graph", DATA / "valid" / name, "--format", "json")
        assert ours.returncode == theirs.returncode == 0
        assert ours.stdout == theirs.stdout


def test_usage_errors(flow, tmp_path):
    assert flow("fmt", tmp_path / "missing.flow").returncode == 2
    assert flow("fmt").returncode == 2
    proc = flow("fmt", "-", write(tmp_path / "a.flow", CANONICAL))
    assert proc.returncode == 2 and "standard input" in proc.stderr


def test_a_symlink_is_followed(flow, tmp_path):
    target = write(tmp_path / "real.flow", MESSY)
    link = tmp_path / "link.flow"
    link.symlink_to(target)
    assert flow("fmt", link).returncode == 0
    assert link.is_symlink() and target.read_text(encoding="utf-8") == CANONICAL


def test_a_failed_write_is_an_error_and_leaves_the_file(pyz, tmp_path):
    """A full disk, made with RLIMIT_FSIZE (SIGXFSZ ignored, so the write fails with EFBIG)."""
    import resource
    import signal
    import subprocess
    import sys

    f = write(tmp_path / "p.flow", MESSY)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))

    proc = subprocess.run([sys.executable, str(pyz), "fmt", str(f)], capture_output=True, text=True,
                          preexec_fn=small_files, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert f"{f}: cannot write: File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert f.read_text(encoding="utf-8") == MESSY
    assert [p.name for p in tmp_path.iterdir()] == ["p.flow"]  # the temporary file is gone


def test_the_examples_are_in_canonical_layout(flow):
    from runkit import ROOT

    proc = flow("fmt", "--check", ROOT / "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_fmt_never_opens_what_is_not_a_regular_flow_file(flow, tmp_path):
    fifo = tmp_path / "pipe.flow"
    os.mkfifo(fifo)  # opening it would block for ever
    device = tmp_path / "zero.flow"
    device.symlink_to("/dev/zero")  # reading it would never end
    for path in (fifo, device, tmp_path):
        proc = flow("fmt", "--check", path, cwd=tmp_path, timeout=20)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (path, proc.stderr)
        assert "not a .flow file" in proc.stderr or "folder" in proc.stderr or "no .flow" in proc.stderr, proc.stderr
