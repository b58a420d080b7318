"""The parser's fast path: an LALR(1) driver and contextual lexer over plain tables.

The zipapp carries the grammar's tables twice: as lark serializes them (for
lark, which the error path and `flow fmt` use) and as plain lists and dicts
made by `export` at build time. A file that parses cleanly goes through the
plain ones: no lark to import and no table objects to rebuild, most of what a
`flow validate` of a small file used to cost.

The driver follows lark step for step, so the builder sees the same calls:
the lexer tries each parser state's terminals in lark's order and counts
lines as lark does; keywords come from the `unless` tables; a keyword where
only a name fits becomes the name (parser._keyword_as_name); reductions go
through the child filters of lark's tree builder. Anything else the tables
do not allow (a syntax error) raises Fallback: `parser.parse` then parses
the text again with lark, whose exceptions the diagnostics are written from.
tests/lang/test_fast_parser.py holds the two to the same results.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

    from lark import Token as LarkToken

    _Callback = Callable[[List[Any]], Any]  # a rule's builder method, wrapped: its children -> its value
    _Rule = Tuple[str, int, _Callback]  # origin symbol, how many children, the callback


class Fallback(Exception):
    """The fast path cannot go on: parse with lark instead."""


class _NoAction(Exception):
    """The table has nothing for this token in this state."""


class Token(str):
    """A token as the builder reads it (lark's Token has the same fields)."""

    __slots__ = ("type", "value", "start_pos", "line", "column", "end_line", "end_column", "end_pos")
    type: str
    value: str
    start_pos: int
    line: int
    column: int
    end_line: int
    end_column: int
    end_pos: int

    def __new__(cls, type_: str, value: str, start_pos: int, line: int, column: int, end_line: int,
                end_column: int, end_pos: int) -> Token:
        self = str.__new__(cls, value)
        self.type, self.value, self.start_pos = type_, value, start_pos
        self.line, self.column = line, column
        self.end_line, self.end_column, self.end_pos = end_line, end_column, end_pos
        return self

    def __repr__(self) -> str:
        return f"Token({self.type!r}, {self.value!r})"


class Tree:
    """What a rule without a builder method makes (an inlined `_rule`): its children, for the parent to take."""

    __slots__ = ("data", "children")

    def __init__(self, data: str, children: List[Any]) -> None:
        self.data, self.children = data, children


class _Lexer:
    """One parser state's lexer: its terminals as alternations, tried in lark's order."""

    __slots__ = ("patterns", "flags", "unless", "newline_types", "ignore_types", "compiled")

    def __init__(self, spec: Dict[str, Any]) -> None:
        self.patterns = spec["patterns"]
        self.flags = spec["flags"]
        self.unless = spec["unless"]  # terminal -> {literal value: keyword terminal}
        self.newline_types = frozenset(spec["newline_types"])
        self.ignore_types = frozenset(spec["ignore_types"])
        self.compiled: List[Any] = []  # the patterns compiled, once the parser first reaches a state of this lexer


class FastParser:
    """Parses text into what the builder's methods return, or raises Fallback."""

    def __init__(self, tables: Dict[str, Any], builder: Any, re_module: Any) -> None:
        symbols = tables["symbols"]  # the states name their symbols by index: the archive is smaller
        # each state: symbol -> action (>= 0: shift to that state; ~rule: reduce by that rule)
        self.states: List[Dict[str, int]] = [dict(zip([symbols[i] for i in keys], actions))
                                             for keys, actions in tables["states"]]
        self.start: int = tables["start"]
        self.end: int = tables["end"]
        self.lexer_of: List[int] = tables["lexer_of"]  # parser state -> index into lexers
        self.lexers = [_Lexer(spec) for spec in tables["lexers"]]
        self.re = re_module
        self.rules: List[_Rule] = [(origin, size, _callback(builder, name, chain))
                                   for origin, size, name, chain in tables["rules"]]

    def _scanner(self, state: int) -> _Lexer:
        lexer = self.lexers[self.lexer_of[state]]
        if not lexer.compiled:  # (a lexer without patterns: [] again, no different)
            lexer.compiled = [self.re.compile(p, lexer.flags) for p in lexer.patterns]
        return lexer

    def parse(self, text: str) -> Any:
        states, rules = self.states, self.rules
        state_stack: List[int] = [self.start]
        value_stack: List[Any] = []
        pos, line, line_start, n = 0, 1, 0, len(text)
        last: Optional[Token] = None
        while pos < n:
            lexer = self._scanner(state_stack[-1])
            token = None
            while pos < n:
                for mre in lexer.compiled:
                    m = mre.match(text, pos)
                    if m:
                        break
                else:
                    raise Fallback("no terminal matches here")
                value, type_ = m.group(0), m.lastgroup
                start, start_line, start_col = pos, line, pos - line_start + 1
                if type_ in lexer.newline_types:
                    count = value.count("\n")
                    if count:
                        line += count
                        line_start = pos + value.rindex("\n") + 1
                pos += len(value)
                if type_ in lexer.ignore_types:
                    continue
                keywords = lexer.unless.get(type_)
                if keywords is not None:
                    type_ = keywords.get(value, type_)
                token = Token(type_, value, start, start_line, start_col, line, pos - line_start + 1, pos)
                break
            if token is None:
                break  # only ignored text was left
            self._feed(token, state_stack, value_stack, states, rules)
            last = token
        if last is not None:
            end = Token("$END", "", last.start_pos, last.line, last.column, last.end_line, last.end_column,
                        last.end_pos)
        else:
            end = Token("$END", "", 0, 1, 1, 1, 1, 0)
        return self._feed(end, state_stack, value_stack, states, rules, is_end=True)

    def _feed(self, token: Token, state_stack: List[int], value_stack: List[Any], states: List[Dict[str, int]],
              rules: List[_Rule], is_end: bool = False) -> Any:
        try:
            return self._step(token, state_stack, value_stack, states, rules, is_end)
        except _NoAction:
            pass
        # parser._keyword_as_name: a keyword where the parser takes a NAME is that NAME
        if not may_be_name(token) or "NAME" not in states[state_stack[-1]]:
            raise Fallback(f"unexpected {token.type}") from None
        name = Token("NAME", token.value, token.start_pos, token.line, token.column, token.end_line, token.end_column,
                     token.end_pos)
        try:
            return self._step(name, state_stack, value_stack, states, rules, False)
        except _NoAction:
            raise Fallback("unexpected NAME") from None

    def _step(self, token: Token, state_stack: List[int], value_stack: List[Any], states: List[Dict[str, int]],
              rules: List[_Rule], is_end: bool) -> Any:
        """lark's ParserState.feed_token: reduce as long as the table says, then shift."""
        end = self.end
        while True:
            action = states[state_stack[-1]].get(token.type)
            if action is None:
                raise _NoAction
            if action >= 0:
                if is_end:
                    raise Fallback("shift at the end")
                state_stack.append(action)
                value_stack.append(token)
                return None
            origin, size, callback = rules[~action]
            if size:
                children = value_stack[-size:]
                del state_stack[-size:]
                del value_stack[-size:]
            else:
                children = []
            value = callback(children)
            new_state = states[state_stack[-1]][origin]
            state_stack.append(new_state)
            value_stack.append(value)
            if is_end and new_state == end:
                return value


_NOT_WORDS = frozenset({"NAME", "STRING", "LONG_STRING", "NUMBER", "DURATION", "CALLABLE", "$END"})


def may_be_name(token: Union[Token, LarkToken]) -> bool:
    """A token (this module's or lark's) that becomes a NAME where the parser takes one and not it:
    a keyword spelled like a name (parser._keyword_as_name, and FastParser the same way)."""
    return token.type not in _NOT_WORDS and isinstance(token.value, str) and token.value.isidentifier()


def _callback(builder: Any, name: str, chain: List[Any]) -> _Callback:
    """The builder's method for a rule, wrapped as lark's tree builder wraps it (the same steps, in order)."""
    f = getattr(builder, name, None)
    if f is None:
        def f(children: List[Any], name: str = name) -> Tree:
            return Tree(name, children)
    for step in chain:
        if step[0] == "expand1":
            f = _expand_single(f)
        else:
            f = _child_filter(f, [tuple(x) for x in step[1]], step[2])
    return f


def _expand_single(f: _Callback) -> _Callback:
    def expand_single(children: List[Any]) -> Any:
        return children[0] if len(children) == 1 else f(children)
    return expand_single


def _child_filter(f: _Callback, to_include: List[Tuple[int, bool, int]], append_none: int) -> _Callback:
    """lark's ChildFilterLALR: keep some children, splice inlined rules' children, add None placeholders."""
    def child_filter(children: List[Any]) -> Any:
        filtered: List[Any] = []
        for i, to_expand, add_none in to_include:
            if add_none:
                filtered += [None] * add_none
            if to_expand:
                if filtered:
                    filtered += children[i].children
                else:
                    filtered = children[i].children
            else:
                filtered.append(children[i])
        if append_none:
            filtered += [None] * append_none
        return f(filtered)
    return child_filter


# ---- made at build time, from lark -----------------------------------------------------------


def export(parser: Any, builder: Any) -> Dict[str, Any]:
    """The plain tables of a lark parser (parser="lalr", lexer="contextual"), for FastParser.

    Raises ValueError for anything FastParser does not do as lark would (a
    wrapper it does not know, a lexer callback, a rule whose tree would reach
    the builder): a grammar or lark change that needs the fast path reviewed.
    """
    from functools import partial

    from lark.parse_tree_builder import ChildFilterLALR, ChildFilterLALR_NoPlaceholders, ExpandSingleChild
    from lark.parsers.lalr_analysis import Shift

    frontend = parser.parser
    table = frontend.parser.parser.parse_table
    rule_specs: List[Tuple[str, int, str, List[Any]]] = []
    index: Dict[Any, int] = {}  # lark's rule -> its number
    inlined: Set[str] = set()
    for rule, chain in parser._parse_tree_builder.rule_builders:
        name = rule.alias or rule.options.template_source or rule.origin.name
        steps: List[Any] = []
        for w in chain:
            if w is ExpandSingleChild:
                steps.append(("expand1",))
            elif isinstance(w, partial) and w.func is ChildFilterLALR:
                steps.append(("filter", [list(t) for t in w.args[0]], w.args[1]))
                inlined.update(rule.expansion[i].name for i, to_expand, _ in w.args[0] if to_expand)
            elif isinstance(w, partial) and w.func is ChildFilterLALR_NoPlaceholders:
                steps.append(("filter", [[i, x, 0] for i, x in w.args[0]], 0))
                inlined.update(rule.expansion[i].name for i, to_expand in w.args[0] if to_expand)
            else:
                raise ValueError(f"rule {rule}: the fast parser does not know the wrapper {w!r}")
        index[rule] = len(rule_specs)
        rule_specs.append((rule.origin.name, len(rule.expansion), name, steps))
    for origin, _, name, _ in rule_specs:
        if getattr(builder, name, None) is None and origin not in inlined:
            raise ValueError(f"rule {origin}: no builder method `{name}`, and no rule inlines it")
    symbols = sorted({symbol for actions in table.states.values() for symbol in actions})
    number = {symbol: i for i, symbol in enumerate(symbols)}
    states: List[List[List[int]]] = []
    for state in range(len(table.states)):
        actions = table.states[state]
        states.append([[number[symbol] for symbol in actions],
                       [arg if action is Shift else ~index[arg] for action, arg in actions.values()]])
    lexer = frontend.lexer
    if parser.options.lexer_callbacks or not hasattr(lexer, "lexers"):
        raise ValueError("the fast parser needs lark's contextual lexer, without lexer callbacks")
    lexers: List[Dict[str, Any]] = []
    which: Dict[int, int] = {}
    lexer_of: List[int] = []
    for state in range(len(table.states)):
        basic = lexer.lexers[state]
        if id(basic) not in which:
            which[id(basic)] = len(lexers)
            lexers.append(_export_lexer(basic))
        lexer_of.append(which[id(basic)])
    return {"symbols": symbols, "states": states, "start": table.start_states["start"],
            "end": table.end_states["start"], "rules": rule_specs, "lexers": lexers, "lexer_of": lexer_of}


def _export_lexer(basic: Any) -> Dict[str, Any]:
    scanner = basic.scanner
    unless: Dict[str, Dict[str, str]] = {}
    for terminal, callback in basic.callback.items():
        types = getattr(callback, "types", None)  # the zipapp's lark: a dict already (build_zipapp.LARK_EDITS)
        if types is None:
            inner = getattr(callback, "scanner", None)  # lark's own UnlessCallback: a scanner of literals
            if inner is None or basic.g_regex_flags or basic.use_bytes:
                raise ValueError(f"the fast parser does not know the lexer callback {callback!r}")
            types = {}
            for t in inner.terminals:
                if t.pattern.type != "str" or t.pattern.flags:
                    raise ValueError(f"the fast parser does not know the lexer callback {callback!r}")
                types.setdefault(t.pattern.value, t.name)
        unless[terminal] = dict(types)
    return {"patterns": [mre.pattern for mre in scanner._mres], "flags": basic.g_regex_flags, "unless": unless,
            "newline_types": sorted(basic.newline_types), "ignore_types": sorted(basic.ignore_types)}
