"""`flowdsl.check()` and `flowdsl.load()` from several threads at once: the parser's shared builder serves
one parse at a time, so each thread gets what a parse alone gives (the valid corpus, the invalid one's
diagnostics, syntax errors included)."""

import sys
import threading
from pathlib import Path

import flowdsl
from flowdsl.lang.fmt import meaning

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = sorted((DATA / "valid").glob("*.flow")) + sorted((DATA / "invalid").glob("*.flow"))


def outcome(path):
    loaded = flowdsl.check(str(path))
    return (meaning(loaded.program) if loaded.program is not None else None,
            [(d.code, d.span.line, d.span.col) for d in loaded.diagnostics])


def test_checks_from_four_threads_agree_with_checks_one_at_a_time():
    alone = {p: outcome(p) for p in FILES}
    found, errors = {}, []

    def work(offset):
        try:
            for i in range(len(FILES) * 2):
                p = FILES[(i + offset * 7) % len(FILES)]
                got = outcome(p)
                if got != alone[p]:
                    found[p] = got
        except BaseException as e:  # noqa: BLE001 (a thread's failure is the test's)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns every few bytecodes: a shared builder would be seen
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert not found, sorted(found)
