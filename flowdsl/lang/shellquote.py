"""Placing interpolated values in a `sh` command, so that each arrives as one literal piece of text.

`shlex.quote` is right for a value that stands outside quotes and wrong
anywhere else: inside the author's own '...' its quotes cancel the author's,
and `echo 'v: {x}'` runs whatever x holds. So the command's static text is
read here as /bin/sh reads it, keeping its quoting state (a stack: '...',
"...", $'...', $(...), `...`, ${...}, $((...)), a comment, a here-document's
body), and each field is written for the state it stands in:

    where the field stands     a value is written                  a secret N is written
    outside quotes             '...' (a ' inside as '\\'')         "${N}"
    inside '...'               its ' as '\\''                      '"${N}"'
    inside "..."               \\ before \\ $ ` "                   ${N}
    inside $'...'              closed, '...', reopened: ' ... $'   '"${N}"$'
    a here-document, <<EOF     \\ before \\ $ `                     ${N}
    a here-document, <<'EOF'   as it is                            refused
    (<<-: no tab may start a line there: the shell would remove it)
    a comment                  left out                            left out
    $((...))                   an integer only, in parentheses     refused
    `...` or ${...}            refused                             refused

A secret never enters the command's text: the field refers to an environment
variable (FLOW_SECRET_1, ...) that only this command's process gets, so no
`ps` shows it. A static `$` right before a field is a literal dollar sign
(written `\\$`); a backslash right before a field is refused, since it would
escape the field's quoting. A field that cannot be placed safely raises
PlacementError: the task fails with the reason, and nothing runs.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union


class Value(NamedTuple):
    """A field's text, whether it holds a secret, and what names it in messages (`params.x`: shown `{params.x}`;
    made into text only for a message)."""

    text: str
    secret: bool = False
    label: Any = "..."

    @property
    def shown(self) -> str:
        return "{" + str(self.label) + "}"


class PlacementError(ValueError):
    """A field stands where no quoting can keep its value literal."""


# Frame kinds: the shell's quoting and nesting states.
TOP, CMD, SQ, DQ, DSQ, BQ, PARAM, ARITH, COMMENT, HEREDOC = (
    "top", "cmd", "sq", "dq", "dsq", "bq", "param", "arith", "comment", "heredoc")
NORMAL = (TOP, CMD)  # a command's text: outside any quotes
BLANKS = " \t"
OPERATORS = ";&|()<>"
# Words after which the next word is again in command position (so `case` there opens a case).
LEADING_WORDS = frozenset({"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time"})
SECRET_VAR = "FLOW_SECRET_"
INTEGER = re.compile(r"[+-]?[0-9]+\Z", re.ASCII)


class _Frame:
    __slots__ = ("kind", "depth", "case_depth", "word", "word_start", "command_position")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.depth = 0  # parentheses ($(...), $((...))) or braces (${...}) opened inside
        self.case_depth = 0  # `case` statements open inside a $(...): their `)` ends a pattern
        self.word: Optional[str] = ""  # the plain word being read; None once it holds quoting
        self.word_start = True  # a `#` here starts a comment
        self.command_position = True


class _HereDoc:
    __slots__ = ("delimiter", "strip_tabs", "quoted", "index", "line", "fielded")

    def __init__(self, delimiter: str, strip_tabs: bool, quoted: bool) -> None:
        self.delimiter = delimiter
        self.strip_tabs = strip_tabs
        self.quoted = quoted
        self.index = 0  # where its frame sits on the stack
        self.line = ""  # the body's current line, as the shell will read it
        self.fielded = False  # a field wrote on that line


def compose(parts: Sequence[Union[str, Value]]) -> Tuple[str, Dict[str, str]]:
    """(the command, the environment its secrets travel in) from static text and field values.

    Raises PlacementError for a field that stands where it cannot be made literal.
    """
    key: List[Optional[str]] = []
    values: List[Value] = []
    for p in parts:
        if isinstance(p, str):
            key.append(p)
        else:
            key.append(None)
            values.append(p)
    if not values:
        return "".join(parts), {}  # type: ignore[arg-type]  # no Value in them: the text as written
    # A template is read once: where its fields stand does not depend on their
    # values (reading it char by char cost 30 us a task; filling in its plan 4).
    plan = _PLANS.get(tuple(key), _UNREAD)
    if plan is _UNREAD:
        plan = _plan(parts)
        if len(_PLANS) >= _PLANS_KEPT:
            _PLANS.clear()
        _PLANS[tuple(key)] = plan
    if plan is None:  # a field in a here-document: its lines are checked with the values
        scanner = _Scanner(parts)
        scanner.run()
        return "".join(scanner.out), scanner.env  # type: ignore[arg-type]  # not planning: no _Slot in it
    if isinstance(plan, str):  # whatever the values, that template is refused
        raise PlacementError(_FIELD_MARK.sub(lambda m: values[int(m.group(1))].shown, plan))
    env: Dict[str, str] = {}
    out = []
    for x in plan:
        out.append(x if isinstance(x, str) else field_text(values[x.field], x.kind, env))
    return "".join(out), env


_UNREAD: Any = object()  # no plan yet (a sentinel, which no type tells from the plans)
_FIELD_MARK = re.compile("{\0([0-9]+)\0}")
_PLANS: Dict[Tuple[Optional[str], ...], Union[List[Union[str, _Slot]], str, None]] = {}
_PLANS_KEPT = 1024  # templates: a program has one per `sh` command


def _plan(parts: Sequence[Union[str, Value]]) -> Union[List[Union[str, _Slot]], str, None]:
    """The template read once: its text with a slot per field; the refusal's message; or None (read each time)."""
    marks: List[Union[str, Value]]
    marks, fields = [], 0  # each field named by a mark in a refusal's message, replaced when it is raised
    for p in parts:
        if isinstance(p, Value):
            marks.append(Value("0", False, f"\0{fields}\0"))
            fields += 1
        else:
            marks.append(p)
    scanner = _Scanner(marks, planning=True)
    try:
        scanner.run()
    except PlacementError as e:
        return str(e)
    except _Dynamic:
        return None
    plan: List[Union[str, _Slot]] = []
    for x in scanner.out:  # the text between the fields in one piece each
        if type(x) is str and plan and type(plan[-1]) is str:
            plan[-1] += x
        else:
            plan.append(x)
    return plan


class _Scanner:
    def __init__(self, parts: Sequence[Union[str, Value]], planning: bool = False) -> None:
        self.planning = planning  # fields become slots of a plan (compose), not text
        self.fields = 0
        self.seq: List[Union[str, Value]] = []
        for p in parts:
            if isinstance(p, Value):
                self.seq.append(p)
            else:
                self.seq.extend(p)
        self.i = 0
        self.out: List[Union[str, _Slot]] = []  # _Slots only when planning
        self.stack = [_Frame(TOP)]
        self.env: Dict[str, str] = {}
        self.pending: List[_HereDoc] = []  # here-documents whose bodies start after this line
        self.heredoc: Optional[_HereDoc] = None  # the one whose body is being read
        self.unsure: Optional[str] = None  # a place after which shells disagree on the quoting

    # ---- reading -------------------------------------------------------------------------------

    def peek(self, k: int = 1) -> Union[str, Value, None]:
        j = self.i + k
        return self.seq[j] if j < len(self.seq) else None

    def run(self) -> None:
        while self.i < len(self.seq):
            item = self.seq[self.i]
            frame = self.stack[-1]
            if isinstance(item, Value):
                self.place(item, frame)
                self.i += 1
            else:
                getattr(self, "_" + frame.kind)(item, frame)

    def put(self, text: str, field: bool = False) -> None:
        self.out.append(text)
        h = self.heredoc
        if h is None or not text:
            if h is not None and field:
                h.fielded = True  # an empty value still joins what stands around it
            return
        for n, piece in enumerate(text.split("\n")):
            if n:
                self.line_done(h)
            if field and h.strip_tabs and piece.startswith("\t") and not h.line.strip("\t"):
                raise PlacementError("a value puts a tab at the start of a line of a `<<-` here-document, "
                                     "where the shell removes it; use `<<`")
            h.line += piece
            if field:
                h.fielded = True

    def push(self, kind: str, text: str, consumed: int) -> None:
        self.impure()
        self.stack.append(_Frame(kind))
        self.put(text)
        self.i += consumed

    def pop(self, text: str, consumed: int) -> None:
        self.stack.pop()
        self.put(text)
        self.i += consumed

    def impure(self) -> None:
        """What is read now belongs to a word of the enclosing command that is not a plain keyword."""
        frame = self.stack[-1]
        if frame.kind in NORMAL:
            frame.word = None
            frame.word_start = False

    def escape_pair(self, c: str) -> None:
        nxt = self.peek()
        if isinstance(nxt, Value):
            raise PlacementError(f"`{nxt.shown}` follows a backslash, which would escape the quoting that keeps "
                                 "the value literal; remove the backslash")
        self.impure()
        self.put(c + (nxt or ""))
        self.i += 2 if nxt is not None else 1

    def dollar(self, ansi_quotes: bool) -> None:
        """`$` and what it opens: $(...), $((...)), ${...}, and outside quotes $'...' and $"..."."""
        nxt = self.peek()
        if isinstance(nxt, Value):  # `${x}` in a template: a dollar sign, then the value
            self.impure()
            self.put("\\$")
            self.i += 1
        elif nxt == "(" and self.peek(2) == "(":
            self.push(ARITH, "$((", 3)
        elif nxt == "(":
            self.push(CMD, "$(", 2)
        elif nxt == "{":
            self.push(PARAM, "${", 2)
        elif nxt == "'" and ansi_quotes:
            self.push(DSQ, "$'", 2)
        elif nxt == '"' and ansi_quotes:
            self.push(DQ, '$"', 2)
        else:
            self.impure()
            self.put("$")
            self.i += 1

    # ---- one handler per state: `c` is the next static character ----------------------------------

    def opening(self, c: str) -> bool:
        """A backslash, a quote, a backtick or a `$` opens what it opens here (outside quotes and in
        `${...}` alike); False for any other character."""
        if c == "\\":
            self.escape_pair(c)
        elif c == "'":
            self.push(SQ, c, 1)
        elif c == '"':
            self.push(DQ, c, 1)
        elif c == "`":
            self.push(BQ, c, 1)
        elif c == "$":
            self.dollar(ansi_quotes=True)
        else:
            return False
        return True

    def _top(self, c: str, f: _Frame) -> None:
        nxt = self.peek()
        if self.opening(c):
            pass
        elif c == "#" and f.word_start:
            self.push(COMMENT, c, 1)
        elif c == "<" and nxt == "<" and self.peek(2) != "<":
            self.end_word(f)
            self.here_document()
        elif c in BLANKS or c == "\n" or c in OPERATORS:
            self.end_word(f)  # first: an `esac` before `)` closes its case
            if c == ")" and f.kind == CMD and f.depth == 0 and f.case_depth == 0:
                self.pop(c, 1)  # the end of this $(...)
                self.impure()
                return
            if c == "(":
                f.depth += 1
            elif c == ")":
                if f.depth:
                    f.depth -= 1  # else: a case pattern's end
            if c not in BLANKS and c not in "<>":
                f.command_position = True
            f.word, f.word_start = "", True
            self.copy(c)
            if c == "\n" and self.pending:
                self.start_here_document()
        else:
            if f.word is not None:
                f.word += c
            f.word_start = False
            self.copy(c)

    _cmd = _top

    def end_word(self, f: _Frame) -> None:
        """A plain word ends: `case` and `esac` in command position open and close a case statement."""
        word = f.word
        if not word:
            return
        if f.command_position:
            if word == "case":
                f.case_depth += 1
            elif word == "esac" and f.case_depth:
                f.case_depth -= 1
        f.command_position = f.command_position and word in LEADING_WORDS
        f.word = ""

    def _sq(self, c: str, f: _Frame) -> None:
        if c == "'":
            self.pop(c, 1)
        else:
            self.copy(c)

    def expanding(self, c: str) -> bool:
        """A backslash, a `$` or a backtick where the shell still expands (in "...", a here-document,
        `$((...))`) does what it does there; False for any other character."""
        if c == "\\":
            self.escape_pair(c)
        elif c == "$":
            self.dollar(ansi_quotes=False)
        elif c == "`":
            self.push(BQ, c, 1)
        else:
            return False
        return True

    def copy(self, c: str) -> None:
        """A character that means nothing here: it goes out as it is."""
        self.put(c)
        self.i += 1

    def _dq(self, c: str, f: _Frame) -> None:
        if c == '"':
            self.pop(c, 1)
        elif not self.expanding(c):
            self.copy(c)

    def _dsq(self, c: str, f: _Frame) -> None:
        if c == "'":
            self.pop(c, 1)
        elif c == "\\":
            if self.peek() == "'":
                # bash reads \' as a quote inside $'...'; a shell without $'...' (dash) ends the string here
                self.unsure = "a `\\'` inside `$'...'`"
            self.escape_pair(c)
        else:
            self.copy(c)

    def _bq(self, c: str, f: _Frame) -> None:
        if c == "`":
            self.pop(c, 1)
        elif c == "\\":
            nxt = self.peek()
            pair = c + nxt if isinstance(nxt, str) else c
            self.put(pair)
            self.i += len(pair)
        else:
            self.copy(c)

    def _param(self, c: str, f: _Frame) -> None:
        if c == "}" and f.depth == 0:
            self.pop(c, 1)
        elif self.opening(c):
            pass
        else:
            f.depth += (c == "{") - (c == "}")
            self.copy(c)

    def _arith(self, c: str, f: _Frame) -> None:
        if c == ")" and f.depth == 0 and self.peek() == ")":
            self.pop("))", 2)
        elif c == "$":
            self.dollar(ansi_quotes=False)
        elif c == "`":
            self.push(BQ, c, 1)
        else:
            f.depth += (c == "(") - (c == ")")
            self.copy(c)

    def _comment(self, c: str, f: _Frame) -> None:
        if c == "\n":
            self.stack.pop()  # the newline itself belongs to the command around the comment
        else:
            self.copy(c)

    def _heredoc(self, c: str, f: _Frame) -> None:
        if (self.heredoc is not None and self.heredoc.quoted) or not self.expanding(c):
            self.copy(c)  # a quoted delimiter (<<'EOF') leaves the body as it is

    # ---- here-documents ----------------------------------------------------------------------------

    def here_document(self) -> None:
        """`<<WORD` or `<<-WORD`: its body starts at the end of this line and ends at a line WORD."""
        self.put("<<")
        self.i += 2
        strip = self.peek(0) == "-"
        if strip:
            self.put("-")
            self.i += 1
        c = self.peek(0)
        while isinstance(c, str) and c in (" ", "\t"):
            self.put(c)
            self.i += 1
            c = self.peek(0)
        delimiter, quoted, quote = "", False, None
        while True:
            c = self.peek(0)
            if isinstance(c, Value):
                raise PlacementError(f"`{c.shown}` stands in a here-document's delimiter, which must be "
                                     "written out")
            if c is None or (quote is None and (c in BLANKS or c == "\n" or c in OPERATORS)):
                break
            self.copy(c)
            if quote is None and c in "'\"":
                quote, quoted = c, True
            elif quote is not None and c == quote:
                quote = None
            elif c == "\\" and quote != "'":
                quoted = True
                nxt = self.peek(0)
                if isinstance(nxt, str):
                    delimiter += nxt
                    self.put(nxt)
                    self.i += 1
            else:
                delimiter += c
        if delimiter or quoted:
            self.pending.append(_HereDoc(delimiter, strip, quoted))

    def start_here_document(self) -> None:
        h = self.pending.pop(0)
        h.index = len(self.stack)
        self.stack.append(_Frame(HEREDOC))
        self.heredoc = h

    def line_done(self, h: _HereDoc) -> None:
        line = h.line.lstrip("\t") if h.strip_tabs else h.line
        fielded = h.fielded
        h.line, h.fielded = "", False
        if line != h.delimiter:
            return
        if fielded:
            raise PlacementError(f"a value makes the line `{h.delimiter}` in a here-document, which would end it "
                                 "early and run the rest as commands")
        del self.stack[h.index:]  # the delimiter's line: the body ends
        self.heredoc = None
        if self.pending:
            self.start_here_document()

    # ---- placing a field ---------------------------------------------------------------------------

    def place(self, v: Value, frame: _Frame) -> None:
        kind = self.context(v, frame)
        if self.planning:
            if self.heredoc is not None:
                raise _Dynamic()  # its lines depend on the values: scanned anew each time
            self.out.append(_Slot(self.fields, kind))
        else:
            quoted = self.heredoc is not None and self.heredoc.quoted
            self.put(field_text(v, kind, self.env, quoted), field=True)
        self.fields += 1
        if kind in NORMAL:
            frame.word, frame.word_start = None, False

    def context(self, v: Value, frame: _Frame) -> str:
        """The state the field stands in; PlacementError where no value could be placed."""
        if BQ in [f.kind for f in self.stack]:
            raise PlacementError(f"`{v.shown}` stands inside backticks, where the shell undoes one level of "
                                 "backslashes before it reads the quoting; write $(...) instead")
        if self.unsure:
            raise PlacementError(f"`{v.shown}` comes after {self.unsure}, where shells disagree on what is "
                                 "quoted, so no quoting is safe for it")
        near = []  # the states from here out to the command (or here-document) it belongs to
        for f in reversed(self.stack):
            near.append(f.kind)
            if f.kind in NORMAL or f.kind == HEREDOC:
                break
        if PARAM in near:
            raise PlacementError(f"`{v.shown}` stands inside `${{...}}`, whose word the shell expands and may "
                                 "split; put the value in a variable first, or outside the braces")
        if ARITH in near and frame.kind != ARITH:
            raise PlacementError(f"`{v.shown}` stands inside `$((...))` within quotes; write it bare there")
        return frame.kind


class _Slot(NamedTuple):
    """Where a template's field goes in its cached plan, and the state it stands in there."""

    field: int  # its number: the index of its value
    kind: str


class _Dynamic(Exception):
    """A template that cannot be planned once for all values (a field in a here-document)."""


def field_text(v: Value, kind: str, env: Dict[str, str], quoted_heredoc: bool = False) -> str:
    """What stands in the command for the field `v` in state `kind`; a secret's variable goes into `env`."""
    if kind == ARITH:
        if v.secret or not INTEGER.match(v.text):
            what = "a secret" if v.secret else f"`{v.text[:40]}`"
            raise PlacementError(f"`{v.shown}` stands inside `$((...))`, which evaluates it: only an integer "
                                 f"may stand there, not {what}")
        return "(" + v.text + ")"
    if kind == COMMENT:
        return ""  # the shell ignores it; its newlines would end the comment
    if v.secret:
        if kind == HEREDOC and quoted_heredoc:
            raise PlacementError(f"`{v.shown}` holds a secret and stands in a quoted here-document (<<'EOF'), "
                                 "which expands nothing; use an unquoted delimiter (<<EOF)")
        name = next((k for k, t in env.items() if t == v.text), None)
        if name is None:
            name = f"{SECRET_VAR}{len(env) + 1}"
            env[name] = v.text
        ref = "${" + name + "}"
        return {TOP: f'"{ref}"', CMD: f'"{ref}"', SQ: f"'\"{ref}\"'", DSQ: f"'\"{ref}\"$'"}.get(kind, ref)
    text = v.text
    if kind in NORMAL:
        return "'" + text.replace("'", "'\\''") + "'"
    if kind == SQ:
        return text.replace("'", "'\\''")
    if kind == DQ:
        return _DQ_SPECIAL.sub(r"\\\1", text)
    if kind == DSQ:  # closed, quoted plainly, reopened: literal whether or not the shell knows $'...'
        return "''" + text.replace("'", "'\\''") + "'$'"
    # a here-document's body
    return text if quoted_heredoc else _HEREDOC_SPECIAL.sub(r"\\\1", text)


_DQ_SPECIAL = re.compile(r'([\\$`"])')
_HEREDOC_SPECIAL = re.compile(r"([\\$`])")
