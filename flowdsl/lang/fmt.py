"""The formatter: `.flow` text in, canonical `.flow` text out, comments kept.

The layout is rebuilt from the parse tree (statement order kept, one statement
a line, four spaces a level, single spaces between words, one blank line
between blocks), and the comments, which the lexer hands over on the side,
are put back between the pieces by their offsets in the source:

* a comment alone on its line stays alone on its line, before whatever
  followed it;
* a comment at the end of a line stays at the end of the line the piece
  before it now ends;
* a comment inside what now prints as one line (`retry 3  # why` then
  `delay 5s` on the next line) moves above that line.

Lists and maps that span lines in the source are printed one item a line;
those written on one line stay on one line. That choice is the author's, as
with black's magic trailing comma, and it keeps the formatter idempotent.
Strings, numbers and durations are printed exactly as written, so the
formatted file means what the original meant; `meaning()` is the check.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

from .diagnostics import FlowSyntaxError

INDENT = "    "
EXPRESSIONS = frozenset({"list", "map", "ref", "env_call", "secret_call",
                         "number", "duration", "true", "false", "null"})
COMMA_LISTS = frozenset({"after", "tags", "pythonpath", "retry_on", "ship"})
CONDITIONS = frozenset({"cond_or", "cond_and", "cond_not", "compare"})

class MeaningChanged(Exception):
    """The formatted text would mean something else: a bug in the formatter, never written out."""


def format_text(text: str, file: str = "<string>", check: bool = True) -> str:
    """The canonical layout of `text`.

    Raises FlowSyntaxError (the same error, in the same words, as `flow validate`) if it does not
    parse. With `check`, the result is parsed again and compared with the original, spans aside
    (as black does), and MeaningChanged is raised rather than a layout that means something else.
    """
    from .gcpause import paused
    from .parser import parse, parse_tree

    with paused():
        before = parse(text, file)[0]
        comments: List[Any] = []
        tree = parse_tree(text, comments.append)
        comments.sort(key=lambda t: t.start_pos)
        writer = _Writer(text, comments)
        _Printer(writer, text).file(tree)
        out = writer.result()
        if check and out != text:
            try:
                after = parse(out, file)[0]
            except FlowSyntaxError as e:
                raise MeaningChanged(f"the formatted text of {file} does not parse: {e.diagnostic}") from None
            if meaning(after) != meaning(before):
                raise MeaningChanged(f"the formatted text of {file} would mean something else")
        return out


_LAYOUT_ONLY = frozenset({("Condition", "text")})  # a condition's text is how it was written, not what it means


def meaning(node: Any) -> str:
    """The IR as text without its spans: what two layouts of one program share."""
    from .ir import shape_text

    return shape_text(node, _LAYOUT_ONLY)


def _skip_layout(text: str, pos: int) -> int:
    """The offset of the next character after `pos` that is neither white space nor in a comment."""
    n = len(text)
    while pos < n:
        ch = text[pos]
        if ch in " \t\f\r\n":
            pos += 1
        elif ch == "#":
            end = text.find("\n", pos)
            pos = n if end < 0 else end
        else:
            break
    return pos


class _Line:
    __slots__ = ("indent", "text", "comment", "trailing")

    def __init__(self, indent: int, text: str, comment: bool = False):
        self.indent = indent
        self.text = text
        self.comment = comment  # a line holding only a comment
        self.trailing = comment  # a line that ends in a comment: nothing more goes on it


class _Writer:
    """Output lines, with the source's comments let in before each piece by offset."""

    def __init__(self, text: str, comments: List[Any]):
        self.text = text
        self.comments = comments
        self.next_comment = 0
        self.lines: List[Optional[_Line]] = []  # None is a blank line
        self.current: Optional[_Line] = None  # the line being built; None when the next piece starts a line
        self.indent = 0
        self.prev_end = 0  # source offset just past the last piece or comment written
        self.blank = "keep"  # before the next line: "keep" the source's blank line, "none" or "force" one

    # ---- lines ---------------------------------------------------------------

    def newline(self) -> None:
        """The next piece starts a new line."""
        if self.current is not None:
            self.lines.append(self.current)
            self.current = None

    def _start_line(self, start: int, blank: Optional[str] = None) -> _Line:
        policy = blank or self.blank
        self.blank = "keep"
        wanted = policy == "force" or (policy == "keep" and self.text.count("\n", self.prev_end, start) >= 2)
        if wanted and self.lines and self.lines[-1] is not None:
            self.lines.append(None)
        return _Line(self.indent, "")

    def put(self, piece: str, start: int, end: int, sep: str = " ", blank: Optional[str] = None) -> None:
        """Write `piece` (source offsets start..end); `sep` goes before it unless it starts a line."""
        self.comments_before(start)
        if self.current is None:
            self.current = self._start_line(start, blank)
            self.current.text = piece
        else:
            self.current.text += sep + piece
        self.prev_end = max(self.prev_end, end)

    # ---- comments ------------------------------------------------------------

    def comments_before(self, offset: int) -> None:
        while self.next_comment < len(self.comments) and self.comments[self.next_comment].start_pos < offset:
            token = self.comments[self.next_comment]
            self.next_comment += 1
            self._comment(token.value.rstrip(), token.start_pos, token.end_pos)

    def _comment(self, comment: str, start: int, end: int) -> None:
        same_line = start >= self.prev_end and "\n" not in self.text[self.prev_end:start]
        if self.current is not None:
            # inside what prints as one line: the comment goes above that line
            self.lines.append(_Line(self.current.indent, comment, True))
        elif same_line and self.lines and self.lines[-1] is not None and not self.lines[-1].trailing:
            self.lines[-1].text += "  " + comment
            self.lines[-1].trailing = True
        else:
            line = self._start_line(start)
            line.text = comment
            line.comment = True
            self.lines.append(line)
        self.prev_end = max(self.prev_end, end)

    def result(self) -> str:
        self.newline()
        self.comments_before(len(self.text) + 1)
        while self.lines and self.lines[-1] is None:
            self.lines.pop()
        if not self.lines:
            return ""
        return "\n".join("" if line is None else INDENT * line.indent + line.text for line in self.lines) + "\n"


def _end(node: Any, text: str) -> int:
    """The source offset just past a tree, counting the punctuation the tree leaves out (`}`, `)`, `]`)."""
    from lark import Token

    if isinstance(node, Token):
        assert node.end_pos is not None  # lark types it Optional; a token from the lexer has its end
        return node.end_pos
    children = [c for c in node.children if c is not None]
    last = _end(children[-1], text)
    if node.data == "defaults" and len(children) == 1:
        last = _skip_layout(text, last) + 1  # past `{`
    closes = node.data in ("defaults", "env_call", "secret_call") or (
        node.data == "ref" and len(children) > 1 and children[-1].type in ("NUMBER", "STRING"))
    return _skip_layout(text, last) + 1 if closes else last


class _Printer:
    """Walks the parse tree and writes it through a _Writer."""

    def __init__(self, writer: _Writer, text: str):
        self.w = writer
        self.text = text

    def token(self, tok: Any, sep: str = " ", text: Optional[str] = None) -> None:
        self.w.put(tok.value if text is None else text, tok.start_pos, tok.end_pos, sep)

    # ---- blocks ----------------------------------------------------------------

    def file(self, tree: Any) -> None:
        previous = None
        for block in tree.children:
            kind = block.data
            if previous is not None:
                self.w.blank = "keep" if kind == previous == "include" else "force"
            if kind == "include":
                self.token(block.children[0])
                self.token(block.children[1])
            else:  # pipeline, task
                keyword, name, *statements = block.children
                self.token(keyword)
                self.token(name)
                self.body(name.end_pos, statements)
            self.w.newline()
            previous = kind

    def body(self, after: int, statements: List[Any]) -> None:
        """`{ statements }`, the brace found in the source after offset `after`."""
        opening = _skip_layout(self.text, after)
        closing = _skip_layout(self.text, _end(statements[-1], self.text) if statements else opening + 1)
        self.w.put("{", opening, opening + 1)
        if not statements and not self._has_comment(opening, closing):
            self.w.put("}", closing, closing + 1, sep="")
            return
        self.w.newline()
        self.w.blank = "none"
        self.w.indent += 1
        for statement in statements:
            self.w.newline()
            self.statement(statement)
        self.w.newline()
        self.w.comments_before(closing)
        self.w.indent -= 1
        self.w.put("}", closing, closing + 1, blank="none")

    def _has_comment(self, start: int, end: int) -> bool:
        return any(start < c.start_pos < end for c in self.w.comments)

    # ---- statements ------------------------------------------------------------

    def statement(self, node: Any) -> None:
        """A statement's words on one line (a map or list inside may still break it)."""
        from lark import Token

        if node.data in COMMA_LISTS:
            keyword, *items = node.children
            self.token(keyword)
            for i, item in enumerate(items):
                if i:
                    self.w.put(",", self.w.prev_end, self.w.prev_end, sep="")
                self.part(item)
            return
        if node.data == "defaults":
            self.token(node.children[0])
            self.body(node.children[0].end_pos, node.children[1:])
            return
        if node.data == "foreach" and node.children[2] is not None:  # foreach key, value in MAP
            keyword, key, value, *rest = node.children
            self.token(keyword)
            self.token(key)
            self.w.put(",", self.w.prev_end, self.w.prev_end, sep="")
            self.token(value)
            for child in rest:
                self.part(child)
            return
        for child in node.children:
            if child is None:
                continue
            if isinstance(child, Token):
                self.token(child)
            else:
                self.part(child)

    def part(self, node: Any, sep: str = " ") -> None:
        from lark import Token

        if isinstance(node, Token):
            self.token(node, sep)
        elif node.data in EXPRESSIONS:
            self.expr(node, sep)
        elif node.data == "paren":  # (a or b): no space inside the parentheses
            opening, inner, closing = node.children
            self.token(opening, sep)
            self.part(inner, "")
            self.token(closing, "")
        elif node.data in CONDITIONS:  # the first word keeps `sep`, the rest one space apart
            children = [c for c in node.children if c is not None]
            for i, child in enumerate(children):
                self.part(child, sep if i == 0 else " ")
        elif node.data == "dotted_name":  # word by word, so that a comment between them is seen in its place
            for i, tok in enumerate(node.children):
                self.token(tok, sep if i == 0 else "", tok.value if i == 0 else "." + tok.value)
        else:  # a statement inside a statement: a retry's options, a hook's action
            self.statement(node)

    # ---- values ------------------------------------------------------------------

    def expr(self, node: Any, sep: str = " ") -> None:
        from lark import Token

        if isinstance(node, Token):  # a string
            self.token(node, sep)
            return
        kind = node.data
        c = node.children
        if kind == "list":
            self.brackets(c[0], [x for x in c[1:-1] if x is not None], c[-1], sep, self._item)
        elif kind == "map":
            entries = [(c[i], c[i + 1]) for i in range(1, len(c) - 1, 2)]
            self.brackets(c[0], entries, c[-1], sep, self._entry)
        elif kind == "ref":
            self.token(c[0], sep)
            for tok in c[1:]:
                self.token(tok, "", "." + tok.value if tok.type == "NAME" else f"[{tok.value}]")
        elif kind in ("env_call", "secret_call"):
            self.token(c[0], sep)
            self.w.put("(", c[0].end_pos, c[0].end_pos, sep="")
            self.token(c[1], "")
            if kind == "env_call" and c[2] is not None:
                self.w.put(",", c[1].end_pos, c[1].end_pos, sep="")
                self.expr(c[2])
            self.w.put(")", self.w.prev_end, self.w.prev_end, sep="")
        else:  # number, duration, true, false, null: one token, as written
            self.token(c[0], sep)

    def brackets(self, opening: Any, items: Sequence[Any], closing: Any, sep: str,
                 write: Callable[..., Optional[_Line]]) -> None:
        """A list or a map: on one line as written there, else one item a line."""
        broken = opening.line != closing.line and (items or self._has_comment(opening.start_pos, closing.start_pos))
        self.token(opening, sep)
        if not broken:
            for i, item in enumerate(items):
                write(item, i, len(items), broken=False)
            self.token(closing, " " if items and opening.value == "{" else "")
            return
        self.w.newline()
        self.w.blank = "none"
        self.w.indent += 1
        keys = []  # (index of the entry's first line, its key's width, that line)
        for i, item in enumerate(items):
            self.w.newline()
            first = len(self.w.lines)
            line = write(item, i, len(items), broken=True)
            if line is not None:  # a map entry: its key's line
                self.w.newline()
                keys.append((self.w.lines.index(line, first), len(item[0].value), line))
        self.w.newline()
        self.w.comments_before(closing.start_pos)
        self.w.indent -= 1
        self.w.put(closing.value, closing.start_pos, closing.end_pos, blank="none")
        self._align(keys)

    def _align(self, keys: List[Tuple[int, int, _Line]]) -> None:
        """Line up the `=` of a map's entries that follow one another: a blank line or a comment ends a group."""
        lines = self.w.lines
        groups: List[List[Tuple[_Line, int]]] = []
        for k, (index, width, key) in enumerate(keys):
            if k and not any(line is None or (line.comment and line.indent == key.indent)
                             for line in lines[keys[k - 1][0] + 1:index]):
                groups[-1].append((key, width))
            else:
                groups.append([(key, width)])
        for group in groups:
            widest = max(width for _, width in group)
            for line, width in group:
                line.text = line.text[:width] + " " * (widest - width) + line.text[width:]

    def _item(self, item: Any, i: int, n: int, broken: bool) -> None:
        if broken:
            self.expr(item)
            self.w.put(",", self.w.prev_end, self.w.prev_end, sep="")
            return
        self.expr(item, "" if i == 0 else " ")
        if i < n - 1:
            self.w.put(",", self.w.prev_end, self.w.prev_end, sep="")

    def _entry(self, entry: Tuple[Any, Any], i: int, n: int, broken: bool) -> Optional[_Line]:
        key, value = entry
        # on one line, two spaces part the entries (commas are optional): { a = 1  b = 2 }
        self.token(key, " " if broken or i == 0 else "  ")
        line = self.w.current
        self.w.put("=", key.end_pos, key.end_pos)
        self.expr(value)
        return line
