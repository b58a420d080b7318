"""Regular expressions compiled at build time, for the parser's contextual lexer.

The lexer compiles one regular expression per parser state, the first time a
file reaches that state: about ten for a small file, thirty for a larger one,
most of the parse of a `flow validate` that starts cold. Python cannot save
a compiled pattern, but its compiler ends in one call of the C engine,
`_sre.compile(pattern, flags, code, groups, groupindex, indexgroup)`, whose
arguments are plain data. build_zipapp.py records them (`record`) with each
interpreter it ships bytecode for, for every pattern the lexer can ask for,
into that interpreter's tree as `_regexes.marshal` beside this module. Here
(`install`) they go to `_sre.compile` again, which checks the code before it
accepts it. A pattern not in the table, a table made by another interpreter
(it names the version and `_sre.MAGIC`), or no table at all (a checkout, an
interpreter without a tree): compiled as usual.
"""

from __future__ import annotations

import os
import re
import sys

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from re import Match, Pattern
    from typing import Any, Dict, List, Optional, Tuple

    _Table = Dict[Tuple[str, int], Tuple[Any, ...]]  # (pattern, flags) -> the arguments of _sre.compile

TABLE_FILE = "_regexes.marshal"


class FrozenRe:
    """Stands in for the `re` module in lark's lexers: compile() and match() take the table's patterns."""

    error = re.error

    def __init__(self, table: _Table) -> None:
        self.table = table  # (pattern, flags as lark gives them) -> the arguments of _sre.compile
        self.compiled: Dict[Tuple[str, int], Pattern[str]] = {}
        self.frozen = 0  # how many came from the table (for tests)

    def compile(self, pattern: str, flags: int = 0) -> Pattern[str]:
        key = (pattern, flags)
        found = self.compiled.get(key)
        if found is None:
            args = self.table.get(key)
            if args is not None:
                import _sre

                try:
                    found = _sre.compile(*args)
                    self.frozen += 1
                except Exception:  # a table that does not fit this interpreter after all
                    found = None
            if found is None:
                found = re.compile(pattern, flags)
            self.compiled[key] = found
        return found

    def match(self, pattern: str, string: str, flags: int = 0) -> Optional[Match[str]]:
        return self.compile(pattern, flags).match(string)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


def _lexers(parser: Any) -> List[Any]:
    """The distinct basic lexers of a lark parser's contextual lexer (none if it has another shape)."""
    lexer = getattr(getattr(parser, "parser", None), "lexer", None)
    states = getattr(lexer, "lexers", None)
    if not isinstance(states, dict):
        return []
    found = {id(x): x for x in states.values()}
    root = getattr(lexer, "root_lexer", None)
    if root is not None:
        found[id(root)] = root
    return [x for x in found.values() if hasattr(x, "re")]


def _signature() -> List[Any]:
    import _sre

    return [list(sys.version_info[:2]), _sre.MAGIC, _sre.CODESIZE]


_LOADED: List[Optional[FrozenRe]] = []  # [FrozenRe or None] once looked for


def load() -> Optional[FrozenRe]:
    """This interpreter's table, if its tree has one that fits (for lark's lexers and the fast parser)."""
    if _LOADED:
        return _LOADED[0]
    _LOADED.append(None)
    from .bundled import marshalled

    data = marshalled(globals(), os.path.join(os.path.dirname(__file__), TABLE_FILE))
    if data is None:
        return None
    try:
        if data["signature"] != _signature():
            return None
        table = {(pattern, flags): tuple(args) for pattern, flags, args in data["patterns"]}
    except (ValueError, TypeError, KeyError):
        return None
    _LOADED[0] = FrozenRe(table)
    return _LOADED[0]


def install(parser: Any) -> Optional[FrozenRe]:
    """Give a lark parser's lexers the table of this interpreter's tree, if there is one that fits."""
    frozen = load()
    if frozen is not None:
        for lexer in _lexers(parser):
            lexer.re = frozen
    return frozen


def record(parser: Any) -> bytes:
    """The table for this interpreter: what every lexer of `parser` compiles (for build_zipapp.py)."""
    import marshal

    try:
        from re import _compiler as compiler  # type: ignore[attr-defined]  # 3.11+, not in typeshed
    except ImportError:  # Python 3.9, 3.10
        import sre_compile as compiler

    recorded: _Table = {}
    real = compiler._sre

    class Spy:  # the C engine, noting what the compiler hands it
        def __init__(self) -> None:
            self.calls: List[Tuple[Any, ...]] = []

        def compile(self, *args: Any) -> Any:
            self.calls.append(args)
            return real.compile(*args)

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

    class Recorder(FrozenRe):
        def compile(self, pattern: str, flags: int = 0) -> Pattern[str]:
            spy = Spy()
            compiler._sre = spy
            try:  # compiler.compile, not re.compile: its cache would hide the call
                compiled: Pattern[str] = compiler.compile(pattern, flags)
            finally:
                compiler._sre = real
            pattern_, flags_, code, groups, groupindex, indexgroup = spy.calls[-1]
            # plain ints: the compiler's opcodes and flags are int subclasses, which marshal refuses
            recorded[(pattern, int(flags))] = (str(pattern_), int(flags_), [int(c) for c in code], int(groups),
                                               {str(k): int(v) for k, v in dict(groupindex).items()},
                                               tuple(indexgroup))
            return compiled

    recorder = Recorder({})
    lexers = _lexers(parser)
    if not lexers:
        raise RuntimeError("the parser has no contextual lexer to record")
    for lexer in lexers:
        lexer.re = recorder
        lexer._build_scanner()
    patterns = [[pattern, flags, list(args)] for (pattern, flags), args in sorted(recorded.items())]
    return marshal.dumps({"signature": _signature(), "patterns": patterns}, 2)
