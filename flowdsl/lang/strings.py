"""String literals: escapes, `{field:format}` interpolation, triple-quote dedent.

A string token is scanned once, character by character, keeping the source
line and column of every field so that a diagnostic about `{extrct.total}`
points at the field, not at the whole string.
"""

from __future__ import annotations

import re

from .ir import Field, Ref, Span, Template

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Tuple, Union

ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}

# name(.name | [int] | ['key'] | ["key"])*, then an optional :format
_FIELD = re.compile(
    r"\s*([A-Za-z_][A-Za-z0-9_]*)"  # the name
    r"((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:\d+|'[^']*'|\"[^\"]*\")\s*\])*)"  # .key [0] ['key'] ["key"]
    r"\s*(?::(.*))?$",  # :format
    re.S)
_ACCESSOR = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:(\d+)|'([^']*)'|\"([^\"]*)\")\s*\]")

# A format's width and precision (`{n:>8}`, `{x:.2f}`, `{run.logical_date:%10Y}`) go up
# to this. Python pads and rounds to any size it is given: `{n:>999999999}` would
# make a string of a gigabyte when the task starts. No command needs a field wider
# than this, and up to it every date format works too (strftime gives up, with an
# empty string, past 256 times the format's length).
MAX_FORMAT_WIDTH = 1000
# An index (`{t[3]}`) is a whole number of at most 18 digits, as outside a string (builder.ref).
MAX_INDEX_DIGITS = 18

# Python's format mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[_,]?(?:\.(\d+))?[bcdeEfFgGnosxX%]?", re.S)
# a strftime directive, with glibc's flags and width (`%-d`, `%_10Y`), or `%%`
_STRFTIME = re.compile(r"%(?:%|[-_0^#]*(\d*))")

if TYPE_CHECKING:
    Report = Callable[[str, str, Span, Optional[str]], None]


def _dedent_plan(raw: str) -> Tuple[str, int, int]:
    """For a triple-quoted body: the text to scan, its offset in raw, the indent to drop."""
    start, end = 0, len(raw)
    if raw.startswith("\n"):
        start = 1
    elif raw.startswith("\r\n"):
        start = 2
    last_break = raw.rfind("\n", start)
    if last_break >= 0 and raw[last_break + 1:].strip(" \t") == "":
        end = last_break
        if end > start and raw[end - 1] == "\r":
            end -= 1
    body = raw[start:end]
    indents = [len(line) - len(line.lstrip(" \t")) for line in body.split("\n") if line.strip(" \t\r")]
    return body, start, min(indents) if indents else 0


def scan(token_text: str, line: int, col: int, file: str, report: Report) -> Template:
    """Turn a STRING or LONG_STRING token (quotes included) into a Template."""
    triple = token_text.startswith('"""')
    q = 3 if triple else 1
    raw = token_text[q:-q]
    nul = token_text.find("\0")
    if nul >= 0:
        # an argument, a command and an environment variable end at a NUL: a
        # string holding one could never be passed on as it is written
        nul_line = line + token_text.count("\n", 0, nul)
        nul_col = nul - token_text.rfind("\n", 0, nul) if nul_line != line else col + nul
        report("E002", "a string cannot hold a NUL character (U+0000)",
               Span(file, nul_line, nul_col, nul_line, nul_col + 1),
               "a NUL ends a command's arguments and environment variables; remove it")
    if triple:
        body, skip, indent = _dedent_plan(raw)
    else:
        body, skip, indent = raw, 0, 0
    # position of body[0] in the source
    cur_line, cur_col = line, col + q
    for ch in raw[:skip]:
        if ch == "\n":
            cur_line, cur_col = cur_line + 1, 1
        else:
            cur_col += 1

    parts: List[Union[str, Field]] = []
    text: List[str] = []
    i, n = 0, len(body)
    at_line_start = triple and skip > 0

    def here(offset_cols: int = 0) -> Tuple[int, int]:
        return cur_line, cur_col + offset_cols

    while i < n:
        if at_line_start and indent:
            # drop the common indentation of a triple-quoted string
            drop = 0
            while drop < indent and i < n and body[i] in " \t":
                i, drop, cur_col = i + 1, drop + 1, cur_col + 1
            at_line_start = False
            continue
        ch = body[i]
        if ch == "\n":
            text.append(ch)
            i, cur_line, cur_col = i + 1, cur_line + 1, 1
            at_line_start = True
            continue
        at_line_start = False
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < n else ""
            if nxt in ESCAPES:
                text.append(ESCAPES[nxt])
            elif nxt != "\0":  # a NUL is reported once, above
                report("E007", f"unknown escape `\\{nxt}`", Span(file, cur_line, cur_col, cur_line, cur_col + 2),
                       'write `\\\\` for a backslash; known escapes are \\" \\\\ \\n \\t')
            i, cur_col = i + 2, cur_col + 2
            continue
        if ch == "{":
            if body.startswith("{", i + 1):
                text.append("{")
                i, cur_col = i + 2, cur_col + 2
                continue
            close = body.find("}", i + 1)
            newline = body.find("\n", i + 1)
            if close < 0 or (0 <= newline < close):
                report("E008", "`{` opens a field that is never closed",
                       Span(file, cur_line, cur_col, cur_line, cur_col + 1), "write `{{` for a literal brace")
                text.append("{")
                i, cur_col = i + 1, cur_col + 1
                continue
            inner = body[i + 1:close]
            span = Span(file, cur_line, cur_col, cur_line, cur_col + close - i + 1)
            field = _field(inner, span, report)
            if field is not None:
                if text:
                    parts.append("".join(text))
                    text = []
                parts.append(field)
            cur_col += close - i + 1
            i = close + 1
            continue
        if ch == "}":
            if body.startswith("}", i + 1):
                text.append("}")
                i, cur_col = i + 2, cur_col + 2
                continue
            report("E008", "single `}` in a string", Span(file, cur_line, cur_col, cur_line, cur_col + 1),
                   "write `}}` for a literal brace")
            i, cur_col = i + 1, cur_col + 1
            continue
        text.append(ch)
        i, cur_col = i + 1, cur_col + 1
    if text or not parts:
        parts.append("".join(text))
    span = Span(file, line, col, line + token_text.count("\n"),
                (len(token_text) - token_text.rfind("\n")) if "\n" in token_text else col + len(token_text))
    return Template(tuple(parts), span)


def _unescape(raw: str) -> Tuple[str, List[int]]:
    """A field's text with `\\"` and `\\\\` undone, and each character's offset in `raw`."""
    out, where, i = [], [], 0
    while i < len(raw):
        if raw[i] == "\\" and i + 1 < len(raw) and raw[i + 1] in '"\\':
            out.append(raw[i + 1])
            where.append(i)
            i += 2
        else:
            out.append(raw[i])
            where.append(i)
            i += 1
    where.append(len(raw))
    return "".join(out), where


def _field(raw: str, span: Span, report: Report) -> Optional[Field]:
    inner, where = _unescape(raw)
    m = _FIELD.match(inner)
    if not m:
        what = "an empty field `{}`" if not inner.strip() else f"`{{{_cut(inner)}}}` is not a reference"
        report("E008", what, span, "a field holds a reference such as {run.date} or {extract.total}, "
                                   "optionally with a format: {run.logical_date:%Y-%m}; write {{ for a literal brace")
        return None
    name, accessors, fmt = m.group(1), m.group(2), m.group(3)

    def part_span(start: int, end: int) -> Span:
        """The span of inner[start:end] in the source (a field is on one line)."""
        return Span(span.file, span.line, span.col + 1 + where[start], span.line, span.col + 1 + where[end])

    path: List[Union[str, int]] = []
    for a in _ACCESSOR.finditer(accessors):
        attr, index, key1, key2 = a.groups()
        if attr is not None:
            path.append(attr)
        elif index is not None:
            if len(index) > MAX_INDEX_DIGITS:  # as outside a string (builder.ref)
                offset = m.start(2) + a.start(2)
                report("E101", f"index `{_cut(index, 24)}` is not a whole number from 0",
                       part_span(offset, offset + len(index)), None)
                path.append(0)
            else:
                path.append(int(index))
        else:
            path.append(key1 if key1 is not None else key2)
    if fmt:
        _check_format(fmt, m.start(3), part_span, report)
    start = where[m.start(1)]
    ref_span = Span(span.file, span.line, span.col + 1 + start, span.line, span.col + 1 + where[m.end(2)])
    return Field(Ref(name, tuple(path), ref_span), fmt, span)


def _check_format(fmt: str, at: int, part_span: Callable[[int, int], Span], report: Report) -> None:
    """A field's format: Python's format mini-language or a date format, with no absurd width or precision.

    `at` is the format's offset in the field's text. Which of the two applies
    depends on the value (a date takes strftime's `%Y-%m`, the rest `>8` or
    `.2f`), known only at run time; a format that is neither is always wrong.
    """
    spec = _SPEC.fullmatch(fmt)
    if spec is not None:
        numbers = [(spec.start(i), spec.group(i), what) for i, what in ((1, "width"), (2, "precision"))
                   if spec.group(i)]
    elif "%" in fmt:
        numbers = [(d.start(1), d.group(1), "width") for d in _STRFTIME.finditer(fmt) if d.group(1)]
    else:
        report("E008", f"`{_cut(fmt)}` is not a format", part_span(at, at + len(fmt)),
               "a number's format is like >8, 05d or .2f; a date's like %Y-%m-%d")
        return
    for offset, digits, what in numbers:
        significant = digits.lstrip("0")
        if len(significant) > len(str(MAX_FORMAT_WIDTH)) or int(significant or "0") > MAX_FORMAT_WIDTH:
            report("E010", f"format {what} `{_cut(digits, 24)}` is out of range",
                   part_span(at + offset, at + offset + len(digits)),
                   f"a format's width and precision go up to {MAX_FORMAT_WIDTH}")


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
