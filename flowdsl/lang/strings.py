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
            else:
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
    path: List[Union[str, int]] = []
    for a in _ACCESSOR.finditer(accessors):
        attr, index, key1, key2 = a.groups()
        if attr is not None:
            path.append(attr)
        elif index is not None:
            path.append(int(index) if len(index) <= 18 else 0)
        else:
            path.append(key1 if key1 is not None else key2)
    start = where[m.start(1)]
    ref_span = Span(span.file, span.line, span.col + 1 + start, span.line, span.col + 1 + where[m.end(2)])
    return Field(Ref(name, tuple(path), ref_span), fmt, span)


def _cut(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
