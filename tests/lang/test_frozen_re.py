"""The lexer's regular expressions compiled at build time (flowdsl.lang.frozen_re).

The zipapp's side (a table per bytecode tree, used by the parser, no pattern
compiled at run time, the same IR) is tested in tests/test_pyz.py; here the
table itself: what `record` writes gives patterns that behave as re.compile's.
"""

import marshal
import re
from pathlib import Path

from lark import Lark

from flowdsl.lang import frozen_re
from flowdsl.lang.parser import _LARK_OPTIONS, grammar_text

VALID = Path(__file__).resolve().parents[1] / "data" / "valid"


def table():
    data = marshal.loads(frozen_re.record(Lark(grammar_text(), **_LARK_OPTIONS)))
    assert data["signature"] == frozen_re._signature()
    return {(pattern, flags): tuple(args) for pattern, flags, args in data["patterns"]}


def test_recorded_patterns_behave_as_compiled_ones():
    patterns = table()
    assert len(patterns) >= 20  # one per lexer state's set of terminals, and the terminals' own
    frozen = frozen_re.FrozenRe(patterns)
    texts = [p.read_text(encoding="utf-8") for p in sorted(VALID.glob("*.flow"))]
    assert texts
    for (pattern, flags) in patterns:
        ours, theirs = frozen.compile(pattern, flags), re.compile(pattern, flags)
        assert (ours.pattern, ours.flags, ours.groups, ours.groupindex) == \
            (theirs.pattern, theirs.flags, theirs.groups, theirs.groupindex)
        for text in texts:
            for pos in range(0, len(text), 7):
                a, b = ours.match(text, pos), theirs.match(text, pos)
                assert (a and (a.group(0), a.lastgroup)) == (b and (b.group(0), b.lastgroup)), (pattern, pos)
    assert frozen.frozen == len(patterns)
    assert frozen.compile(*next(iter(patterns))) is frozen.compile(*next(iter(patterns)))  # compiled once


def test_a_table_that_does_not_fit_falls_back_to_compiling():
    pattern = r"(?P<NAME>[a-z_]+)|(?P<NUMBER>[0-9]+)"
    bad = frozen_re.FrozenRe({(pattern, 0): (pattern, 0, [1, 2, 3], 2, {"NAME": 1, "NUMBER": 2}, (None, "NAME",
                                                                                                     "NUMBER"))})
    compiled = bad.compile(pattern)
    assert bad.frozen == 0  # _sre.compile refused the code
    assert compiled.match("abc1").lastgroup == "NAME" and compiled.match("12x").group(0) == "12"
    assert bad.match(r"\d+", "42x").group(0) == "42"  # not in the table: compiled as usual
    assert bad.escape("a.b") == re.escape("a.b")  # the rest of the re module shows through
