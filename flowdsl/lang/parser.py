"""The parser: `.flow` text to IR blocks, and syntax errors in plain words.

The LALR tables are built once: the zipapp carries them as the generated
module `flowdsl.lang._tables` (made by build_zipapp.py); a checkout or a wheel
builds them from `grammar/flow.lark` on first use and lets lark cache them.
The builder runs inside the parser, so no parse tree is ever made.

In the zipapp a file is first parsed by the fast path (lalr.py, over plain
tables exported from lark at build time), which never imports lark; text it
cannot parse goes to lark, whose errors the messages below are made from.
"""

from __future__ import annotations

import _thread
import os

from .diagnostics import Diagnostic, FlowSyntaxError, fail
from .ir import Module, Span

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

    from lark import Lark, ParseTree, Token
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    from .builder import Builder
    from .lalr import FastParser

GRAMMAR_FILE = "flow.lark"
_PARSER: Optional[Lark] = None
_BUILDER: Optional[Builder] = None
_FAST: List[Optional[FastParser]] = []  # [the fast parser, or None] once looked for
_LAYOUT_PARSER: Optional[Lark] = None
_COMMENT_SINK: Optional[Callable[[Token], object]] = None
_PARSING = _thread.allocate_lock()  # the shared builder (and lark's parsers) serve one parse at a time
_LARK_OPTIONS = dict(parser="lalr", lexer="contextual", maybe_placeholders=True, start="start")


def grammar_text() -> str:
    """The grammar, from the package (wheel, zipapp) or the checkout's grammar/."""
    here = os.path.dirname(os.path.dirname(__file__))  # the package: flowdsl/grammar/ is its data
    inside = os.path.join(here, "grammar", GRAMMAR_FILE)
    loader: Any = globals().get("__loader__")  # None, or a loader without get_data: AttributeError below
    try:
        data: bytes = loader.get_data(inside)  # works inside a zip too
        return data.decode("utf-8")
    except (OSError, AttributeError):
        pass
    with open(os.path.join(here, os.pardir, "grammar", GRAMMAR_FILE), encoding="utf-8") as f:
        return f.read()


def dump_tables() -> Dict[str, Any]:
    """The analysed grammar as plain data, for build_zipapp.py to freeze.

    The same for every run when PYTHONHASHSEED is fixed. lark keeps its LR(0)
    item sets in sets hashed by id(), so its state numbering would follow
    memory addresses; during the analysis they hash by their kernel instead,
    which is unique per item set.
    """
    from lark import Lark, __version__
    from lark.parsers.grammar_analysis import LR0ItemSet

    own_hash = LR0ItemSet.__dict__.get("__hash__")
    # a monkeypatch of lark's class, and its undoing: mypy refuses both (and types the lambda's self as object)
    LR0ItemSet.__hash__ = lambda self: hash(self.kernel)  # type: ignore[method-assign, attr-defined]
    try:
        lark = Lark(grammar_text(), **_LARK_OPTIONS)
    finally:
        if own_hash is None:
            del LR0ItemSet.__hash__
        else:
            LR0ItemSet.__hash__ = own_hash  # type: ignore[method-assign]
    data, memo = lark.memo_serialize([_terminal_def(), _rule()])
    from .builder import Builder
    from .lalr import export

    # as the zipapp loads them: the states numbered alike (lark leaves _load_from_dict unannotated)
    loaded = Lark._load_from_dict(data, memo)  # type: ignore[no-untyped-call]
    return {"lark": __version__, "data": data, "memo": memo, "fast": export(loaded, Builder)}


def _terminal_def() -> type[TerminalDef]:
    from lark.lexer import TerminalDef
    return TerminalDef


def _rule() -> type[Rule]:
    from lark.grammar import Rule
    return Rule


def _load(**options: Any) -> Tuple[Lark, bool]:
    """(a Lark parser, whether it came from the zipapp's frozen tables); else built from the grammar (cached)."""
    from lark import Lark, __version__

    try:
        from . import _tables  # type: ignore[attr-defined]  # generated: only in the zipapp
    except ImportError:
        _tables = None
    tables = _tables.load("lark") if _tables is not None else None
    if tables is not None and tables["lark"] == __version__:
        # (lark leaves _load_from_dict unannotated)
        parser = Lark._load_from_dict(tables["data"], tables["memo"], **options)  # type: ignore[no-untyped-call]
        from .frozen_re import install

        install(parser)  # the lexer's regular expressions, compiled at build time
        return parser, True
    return Lark(grammar_text(), cache=True, **options, **_LARK_OPTIONS), False


def _builder() -> Builder:
    global _BUILDER
    if _BUILDER is None:
        from .builder import Builder

        _BUILDER = Builder()
    return _BUILDER


def _fast_parser() -> Optional[FastParser]:
    """The fast path's parser, where the zipapp has its tables (else None)."""
    if not _FAST:
        _FAST.append(None)
        try:
            from . import _tables  # type: ignore[attr-defined]  # generated: only in the zipapp
        except ImportError:
            return None
        tables = _tables.load("fast")
        if tables is not None:
            import re

            from .frozen_re import load
            from .lalr import FastParser

            _FAST[0] = FastParser(tables, _builder(), load() or re)
    return _FAST[0]


def _parser() -> Tuple[Lark, Builder]:
    global _PARSER
    builder = _builder()
    if _PARSER is None:
        import gc

        from .gcpause import paused

        # The frozen tables make tens of thousands of objects that live as long
        # as the process, and no garbage: collections would only walk them again
        # and again, at exit too (about 12 ms of a cold start). So they are made
        # with the collector off, then frozen out of its reach. Only in the
        # zipapp, whose process is the `flow` command: a program that imports
        # flowdsl from a checkout keeps its own objects collectable.
        with paused():
            _PARSER, frozen = _load(transformer=builder)
            if frozen:
                gc.freeze()
    return _PARSER, builder


def _comment(token: Token) -> None:
    if _COMMENT_SINK is not None:
        _COMMENT_SINK(token)


def layout_parser() -> Lark:
    """A second parser over the same tables, for `flow fmt`: it builds a parse tree
    (the builder's IR drops layout) and hands every comment token to the sink of
    `parse_tree`.

    lark's lexer skips `%ignore`d terminals but still calls their callbacks, so
    comments come for free; `flow validate` never makes this parser, so its
    parse pays nothing for them.
    """
    global _LAYOUT_PARSER
    if _LAYOUT_PARSER is None:
        _LAYOUT_PARSER = _load(lexer_callbacks={"COMMENT": _comment})[0]
    return _LAYOUT_PARSER


def parse(text: str, file: str) -> Tuple[Module, List[Diagnostic]]:
    """Parse one file's text. Raises FlowSyntaxError; returns the builder's findings.

    The builder and the parsers are made once and shared: one parse at a time (`flowdsl.check()` and
    `flowdsl.load()` may be called from several threads).
    """
    with _PARSING:
        return _parse(text, file)


def parse_tree(text: str, on_comment: Optional[Callable[[Token], object]] = None) -> ParseTree:
    """The parse tree of text that `parse` accepted (keywords used as names resolved the same way);
    `on_comment` gets each comment token, in order."""
    global _COMMENT_SINK
    with _PARSING:
        parser = layout_parser()
        _COMMENT_SINK = on_comment
        try:
            return parser.parse(text, on_error=_keyword_as_name)
        finally:
            _COMMENT_SINK = None


def _parse(text: str, file: str) -> Tuple[Module, List[Diagnostic]]:
    from .builder import split_blocks

    fast = _fast_parser()
    if fast is not None:
        from .lalr import Fallback

        builder = _builder()
        builder.begin(file, text)
        try:
            blocks = fast.parse(text)
        except Fallback:
            pass  # a syntax error: lark says which
        else:
            pipeline, tasks, includes, more = split_blocks(file, blocks)
            return Module(file, pipeline, tasks, includes), builder.diagnostics + more
    return _parse_with_lark(text, file)


def _parse_with_lark(text: str, file: str) -> Tuple[Module, List[Diagnostic]]:
    from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

    from .builder import split_blocks

    parser, builder = _parser()
    builder.begin(file, text)
    try:
        # the builder is the parser's transformer: parse returns what `Builder.start` does, not the Tree lark says
        blocks: List[Any] = parser.parse(text, on_error=_keyword_as_name)  # type: ignore[assignment]
    except UnexpectedCharacters as e:
        _unexpected_character(e, text, file, parser)
    except UnexpectedToken as e:
        _unexpected_token(e, text, file, parser)
    except UnexpectedInput as e:  # any other lark complaint, still with a position
        fail("E001", str(e).splitlines()[0], Span(file, e.line, e.column, e.line, e.column + 1))
    pipeline, tasks, includes, more = split_blocks(file, blocks)
    return Module(file, pipeline, tasks, includes), builder.diagnostics + more


def _keyword_as_name(e: UnexpectedInput) -> bool:
    """A keyword where only a name fits is that name: `{ a = 1  cache = 2 }`.

    The contextual lexer picks a keyword whenever one could follow, and after a
    value LALR's merged lookaheads include the statement keywords; so a map
    key or task name spelled like a keyword can arrive as the keyword. When the
    parser then has no use for the keyword but takes a NAME, it gets the NAME.
    """
    from lark import Token
    from lark.exceptions import UnexpectedToken

    from .lalr import may_be_name

    if not isinstance(e, UnexpectedToken) or not may_be_name(e.token) or "NAME" not in e.accepts:
        return False
    e.interactive_parser.feed_token(Token.new_borrow_pos("NAME", e.token.value, e.token))
    return True


# ---- friendly syntax errors --------------------------------------------------

_TOKEN_WORDS = {"NAME": "name", "STRING": "string", "LONG_STRING": "string", "NUMBER": "number",
                "DURATION": "duration", "CALLABLE": "callable"}
_WORDS = {
    "NAME": "a name", "STRING": "a string", "LONG_STRING": "a string", "NUMBER": "a number",
    "DURATION": "a duration", "CALLABLE": "`module:function`", "$END": "the end of the file",
}
_TASK_STATEMENTS = frozenset({"RUN", "SH", "EXEC", "WITH", "AFTER", "RETRY", "TIMEOUT", "WHEN",
                              "FOREACH", "OUTPUT", "CACHE", "TAGS", "DESCRIPTION", "RESOURCES"})
_PIPELINE_STATEMENTS = frozenset({"SCHEDULE", "WINDOW", "CATCHUP", "OVERLAP", "CONCURRENCY", "EXECUTOR",
                                  "TIMEOUT", "PYTHONPATH", "PARAMS", "DEFAULTS", "RESULTS", "ON", "DESCRIPTION"})
_VALUE_STARTS = frozenset({"STRING", "LONG_STRING", "NUMBER", "DURATION", "TRUE", "FALSE", "NULL",
                           "LSQB", "LBRACE", "NAME", "ENV", "SECRET"})

# A message for a parser state, found by parsing these examples until one
# fails in the same state as the user's file (lark's match_examples). The
# table doubles as a test: tests/lang/test_errors.py parses every example.
EXAMPLES: Dict[str, List[str]] = {
    "a file holds `pipeline`, `task` and `include` blocks": ["foo", "task a { run m:f } 3", "{"],
    "expected a task name after `task`": ["task {", "task 1 {", 'task "a" {'],
    "expected `{` after the task's name": ["task a run m:f", "task a ( run m:f )"],
    "expected a pipeline name after `pipeline`": ["pipeline {"],
    "expected a task statement": ["task a { foo", "task a { run m:f foo", "task a { run m:f 3 }"],
    "expected a pipeline statement": ["pipeline p { foo", "pipeline p { concurrency 2 foo"],
    "`run` takes `module:function`": ["task a { run foo }", 'task a { run "m:f" }', "task a { run m.f }"],
    "expected a value": ["task a { with { x = } }", "task a { with { x = , } }", "task a { timeout }"],
    "expected `=` after the key": ["task a { with { x 1 } }", 'task a { with { x "y" } }'],
    "expected `,` or `]` between list items": ['task a { exec ["a" "b"] }'],
    "expected a map `{ key = value }`": ["task a { with x }", "task a { with [1] }", "pipeline p { params 3 }"],
    "`after` takes task names": ["task a { after }", 'task a { after "b" }'],
    "`when` takes `success`, `failure` or `always`": ["task a { when sometimes }"],
    "`output` takes `text`, `json` or `lines`": ["task a { output csv }"],
    "`catchup` takes `none`, `latest` or `all`": ["pipeline p { catchup some }"],
    "`overlap` takes `skip`, `queue`, `allow` or `replace`": ["pipeline p { overlap wait }"],
    "`schedule` takes `cron \"...\"`, `every DURATION` or `at \"...\"`": ["pipeline p { schedule daily }",
                                                                       'pipeline p { schedule "0 5 * * *" }'],
    "`executor` takes `process`, `thread`, `inline` or `dask [\"tcp://host:port\"]`": ["pipeline p { executor ray }"],
    "expected `success`, `failure` or `finish` after `on`": ["pipeline p { on error run m:f }"],
    "expected `foreach NAME in LIST`": ["task a { foreach x [1] }", "task a { foreach [1] }"],
}


def _describe(names: Iterable[str], parser: Lark) -> str:
    names = set(names)
    groups = []
    if len(names & _TASK_STATEMENTS) >= 6:
        names -= _TASK_STATEMENTS
        groups.append("a task statement (`run`, `sh`, `exec`, `with`, `after`, `retry`, ...)")
    if len(names & _PIPELINE_STATEMENTS) >= 6:
        names -= _PIPELINE_STATEMENTS
        groups.append("a pipeline statement (`schedule`, `params`, `defaults`, `concurrency`, ...)")
    if len(names & _VALUE_STARTS) >= 8:
        names -= _VALUE_STARTS
        groups.append("a value (a string, number, duration, list, map or reference)")
    words = []
    terminals = {t.name: t for t in parser.terminals}
    for name in sorted(names):
        if name in _WORDS:
            word = _WORDS[name]
        elif name in terminals and terminals[name].pattern.type == "str":
            word = f"`{terminals[name].pattern.value}`"
        else:
            word = name.lower()
        if word not in words:
            words.append(word)
    items = groups + words
    if not items:
        return "nothing more"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def _example_message(e: UnexpectedInput, parser: Lark, builder: Builder) -> Optional[str]:
    """The label of the first example that fails in the same parser state.

    States are compared by the LALR state on top of the stack and what it
    accepts, not by stack depth (as lark's match_examples does), so an error
    inside the tenth task matches an example written with one.
    """
    from lark.exceptions import UnexpectedInput

    position = getattr(getattr(e, "state", None), "position", None)
    if position is None:
        return None
    file = builder.file
    try:
        for label, examples in EXAMPLES.items():
            for example in examples:
                try:
                    parser.parse(example)
                except UnexpectedInput as ut:
                    other = getattr(getattr(ut, "state", None), "position", None)
                    if type(ut) is type(e) and other == position:
                        return label
                except FlowSyntaxError:
                    pass
    finally:
        builder.begin(file)
    return None


def _unexpected_token(e: UnexpectedToken, text: str, file: str, parser: Lark) -> None:
    tok = e.token
    builder = _builder()  # (made by _parser before any parse)
    if tok.type == "$END":
        line, col = _end_position(text)
        span = Span(file, line, col, line, col + 1)
        fail("E004", "unexpected end of file", span, f"expected {_describe(e.accepts or e.expected, parser)}")
    span = Span(file, tok.line, tok.column, tok.end_line or tok.line, tok.end_column or tok.column + 1)
    kind = _TOKEN_WORDS.get(tok.type)
    shown = tok.value if len(tok.value) <= 30 else tok.value[:30] + "..."
    what = f"unexpected {kind} `{shown}`" if kind else f"unexpected `{shown}`"  # (the end of the file: above)
    expected = f"expected {_describe(e.accepts or e.expected, parser)}"
    if tok.type == "NAME":
        guess = _statement_guess(tok.value, e.accepts or e.expected)
        if guess:
            expected = f"did you mean `{guess}`? ({expected})"
    specific = _example_message(e, parser, builder)
    if specific:
        fail("E001", f"{what}: {specific}", span, expected)
    fail("E001", what, span, expected)


# Words of other tools' pipelines, and the statement each one means here.
_ALIASES = {"depends_on": "after", "depends": "after", "needs": "after", "requires": "after", "upstream": "after",
            "retries": "retry", "attempts": "retry", "command": "sh", "cmd": "sh", "script": "sh", "bash": "sh",
            "shell_command": "sh", "python": "run", "callable": "run", "call_function": "run", "args": "with",
            "kwargs": "with", "inputs": "with", "params": "with", "trigger_rule": "when", "condition": "when",
            "timeout_seconds": "timeout", "execution_timeout": "timeout", "loop": "foreach", "for_each": "foreach",
            "cron": "schedule", "schedule_interval": "schedule", "max_active_tasks": "concurrency",
            "parallelism": "concurrency", "on_failure": "on failure", "on_success": "on success"}


def _statement_guess(word: str, expected: Iterable[str]) -> Optional[str]:
    """The statement an unknown word most likely means, if statements were expected there."""
    from .diagnostics import did_you_mean

    statements = [n.lower() for n in expected if n in _TASK_STATEMENTS | _PIPELINE_STATEMENTS]
    if not statements:
        return None
    alias = _ALIASES.get(word.lower())
    if alias and alias.split()[0] in statements:
        return alias
    hint = did_you_mean(word, statements)  # "did you mean `retry`?"
    return hint[len("did you mean `"):-2] if hint and hint.startswith("did you mean `") else None


_WORD_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def _unexpected_character(e: UnexpectedCharacters, text: str, file: str, parser: Lark) -> None:
    pos: int = e.pos_in_stream  # type: ignore[assignment]  # lark's class says None; its lexer sets the index
    line, col = e.line, e.column
    ch = text[pos] if pos < len(text) else ""
    if ch == '"':
        if text.startswith('"""', pos):
            fail("E003", "triple-quoted string is never closed", Span(file, line, col, line, col + 3),
                 'close it with `"""`')
        eol = text.find("\n", pos)
        eol = len(text) if eol < 0 else eol
        fail("E003", "string is not closed on its line", Span(file, line, col, line, col + (eol - pos)),
             'close it with `"` before the end of the line; a triple-quoted string """...""" may span lines')
    if ch.isdigit() or (ch == "-" and text[pos + 1:pos + 2].isdigit()):
        end = pos + 1
        while end < len(text) and (text[end].isalnum() or text[end] in "_."):
            end += 1
        word = text[pos:end]
        fail("E001", f"`{word}` is neither a number nor a duration", Span(file, line, col, line, col + len(word)),
             "numbers look like 3, -2, 2.5, 1_000; durations like 500ms, 30s, 5m, 2h, 1d, 1w or 1h30m")
    shown = ch if ch.isprintable() and not ch.isspace() else f"U+{ord(ch):04X}"
    hint = "`#` starts a comment; strings go in double quotes"
    before, after = text[:pos], text[pos + 1:]
    left = len(before) - len(before.rstrip(_WORD_CHARS))
    if ch == "-" and left and after[:1].isalpha():  # `task extract-orders`
        word = before[len(before) - left:]
        rest = after[:len(after) - len(after.lstrip(_WORD_CHARS + "-"))]
        hint = f"names use `_`, not `-`: `{word}_{rest.replace('-', '_')}`"
    elif ch == ":" and before.rstrip()[-1:].isalnum() and "{" in before:  # `with { a: 1 }`
        hint = "a map entry is written `key = value`, not `key: value`"
    fail("E002", f"unexpected character `{shown}`", Span(file, line, col, line, col + 1), hint)


def _end_position(text: str) -> Tuple[int, int]:
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, col
