"""Diagnostics: one catalogue of codes, one record type, four renderings (text, JSON, GitHub, SARIF).

Every problem `flow validate` can report has a stable code here. Tests assert
codes, not prose, so wording can improve without breaking anyone's CI filter.
"""

from __future__ import annotations

from .ir import Span
from .records import finish, record

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, List, NoReturn, Optional, Sequence, Tuple, Type

ERROR = "error"
WARNING = "warning"

# code: (severity, what it means). The message of each diagnostic says the
# specifics; this table is the index users grep and `--format sarif` exports.
CATALOGUE: Dict[str, Tuple[str, str]] = {
    # reading and syntax
    "E001": (ERROR, "syntax error"),
    "E002": (ERROR, "unexpected character"),
    "E003": (ERROR, "unterminated string"),
    "E004": (ERROR, "unexpected end of file"),
    "E005": (ERROR, "file is not valid UTF-8 text"),
    "E006": (ERROR, "file defines no tasks"),
    "E007": (ERROR, "invalid escape sequence in a string"),
    "E008": (ERROR, "invalid interpolation in a string"),
    "E009": (ERROR, "nesting too deep"),
    "E010": (ERROR, "number out of range"),
    "E011": (ERROR, "file cannot be read"),
    "E012": (ERROR, "not a regular .flow file"),
    # values
    "E101": (ERROR, "wrong kind of value"),
    "E102": (ERROR, "value out of range"),
    "E103": (ERROR, "invalid cron expression"),
    "E104": (ERROR, "unknown time zone"),
    "E105": (ERROR, "invalid date or time"),
    "E106": (ERROR, "interpolation not allowed here"),
    "E107": (ERROR, "window ends before it starts"),
    "E108": (ERROR, "comparison of values of different kinds"),
    # names
    "E201": (ERROR, "unknown name"),
    "E202": (ERROR, "duplicate task"),
    "E203": (ERROR, "duplicate key"),
    "E204": (ERROR, "reserved name"),
    "E205": (ERROR, "unknown param"),
    "E206": (ERROR, "unknown run value"),
    "E207": (ERROR, "statement given twice"),
    "E208": (ERROR, "task has no action"),
    "E209": (ERROR, "task has more than one action"),
    "E210": (ERROR, "statement not allowed in defaults"),
    "E211": (ERROR, "more than one pipeline block"),
    "E212": (ERROR, "reference not allowed here"),
    # graph and files
    "E301": (ERROR, "dependency cycle"),
    "E302": (ERROR, "included, called or shipped file not found, or a called file with errors"),
    "E303": (ERROR, "include or call cycle"),
    "E304": (ERROR, "pipeline block in an included file"),
    # callables
    "E401": (ERROR, "module not found"),
    "E402": (ERROR, "callable not found in module"),
    "E403": (ERROR, "argument not accepted by the callable"),
    "E404": (ERROR, "required argument missing"),
    "E405": (ERROR, "module cannot be read"),
    # warnings
    "W101": (WARNING, "unused param"),
    "W102": (WARNING, "task not needed by any target"),
    "W103": (WARNING, "statement has no effect here"),
    "W104": (WARNING, "cron step does not divide its range"),
    "W105": (WARNING, "name shadows a task"),
    "W106": (WARNING, "module named like a standard module"),
}


class UsageError(Exception):
    """A wrong command line, or an input flow cannot use (a state folder others can write): one line, exit 2.

    Defined in the lowest stage, so that the stage that finds the problem
    raises it (the state folder's checks are in `store`); the CLI prints it.
    """


@record
class Diagnostic:
    code: str
    message: str
    span: Span
    hint: Optional[str] = None

    @property
    def severity(self) -> str:
        return CATALOGUE[self.code][0]

    def __str__(self) -> str:
        return f"{self.span}: {self.code} {self.message}"

    def sort_key(self) -> Tuple[str, int, int, str, str]:
        return (self.span.file, self.span.line, self.span.col, self.code, self.message)

    def to_json(self) -> Dict[str, Any]:
        s = self.span
        return {
            "severity": self.severity, "code": self.code, "message": self.message,
            "hint": self.hint, "file": s.file, "line": s.line, "column": s.col,
            "end_line": s.end_line, "end_column": s.end_col,
        }


finish()


class FlowSyntaxError(Exception):
    """The one exception the parser raises; it carries a Diagnostic."""

    def __init__(self, diagnostic: Diagnostic):
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic

    def __reduce__(self) -> Tuple[Type[FlowSyntaxError], Tuple[Diagnostic]]:
        return (FlowSyntaxError, (self.diagnostic,))


def fail(code: str, message: str, span: Span, hint: Optional[str] = None) -> NoReturn:
    """Raise the parser's syntax error; the only place that does."""
    raise FlowSyntaxError(Diagnostic(code, message, span, hint))


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


# ---- rendering ---------------------------------------------------------------


def count(diagnostics: Sequence[Diagnostic]) -> Tuple[int, int]:
    errors = sum(1 for d in diagnostics if d.severity == ERROR)
    return errors, len(diagnostics) - errors


def render_text(diagnostics: Sequence[Diagnostic], sources: Dict[str, str], color: bool = False,
                included: Optional[Dict[str, Span]] = None) -> str:
    """`file:line:col: severity CODE message`, the source line, a caret, the hint; for a problem in an
    included file, where it is included from (`included`: an included file -> the include that read it)."""
    bold, red, yellow, cyan, reset = ("\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[0m") if color else ("",) * 5
    lines_of: Dict[str, List[str]] = {}
    includes = included or {}
    out = []
    for d in diagnostics:
        s = d.span
        tint = red if d.severity == ERROR else yellow
        where = f"{bold}{s.file}:{s.line}:{s.col}:{reset}"
        out.append(f"{where} {tint}{d.severity} {d.code}{reset} {bold}{d.message}{reset}")
        if s.file not in lines_of:
            text = sources.get(s.file, "")
            # as the lexer counts lines; nothing for a file not read (not a .flow file) or empty
            lines_of[s.file] = text.split("\n") if text else []
        lines = lines_of[s.file]
        if 0 < s.line <= len(lines):
            text = lines[s.line - 1].expandtabs(1)
            if len(text) > 200:  # a minified or binary line: show the part that matters
                start = max(0, s.col - 60)
                text, offset = text[start:start + 160], start
            else:
                offset = 0
            width = (s.end_col - s.col) if s.end_line == s.line else len(text) - (s.col - 1 - offset)
            width = max(1, min(width, len(text) - (s.col - 1 - offset)))
            gutter = f"{s.line:>5} | "
            out.append(f"{gutter}{text}")
            out.append(" " * (len(gutter) - 2) + "| " + " " * (s.col - 1 - offset) + f"{tint}{'^' * width}{reset}")
        if d.hint:
            out.append(f"      = {cyan}hint:{reset} {d.hint}")
        chain: List[str] = []
        at = includes.get(s.file)
        while at is not None and len(chain) < 20:
            chain.append(f"{at.file}:{at.line}:{at.col}")
            at = includes.get(at.file) if at.file != s.file else None
        if chain:
            out.append(f"      = {cyan}note:{reset} included from " + ", included from ".join(chain))
    return "\n".join(out)


def render_json(diagnostics: Sequence[Diagnostic], files: Sequence[str]) -> str:
    import json

    errors, warnings = count(diagnostics)
    return json.dumps({
        "files": list(files), "errors": errors, "warnings": warnings,
        "diagnostics": [d.to_json() for d in diagnostics],
    }, indent=2)


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _repo_path(file: str) -> str:
    """A path as GitHub matches it against the repository's files: `./a/b.flow` is `a/b.flow`."""
    import os

    return os.path.normpath(file).replace(os.sep, "/")


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """GitHub Actions workflow commands, one annotation per diagnostic."""
    out = []
    for d in diagnostics:
        s = d.span
        message = f"{d.code} {d.message}" + (f" ({d.hint})" if d.hint else "")
        out.append(
            f"::{d.severity} file={_gh_escape(_repo_path(s.file), True)},line={s.line},col={s.col},"
            f"endLine={s.end_line},endColumn={s.end_col},title={d.code}::{_gh_escape(message)}"
        )
    return "\n".join(out)


def render_sarif(diagnostics: Sequence[Diagnostic], version: str) -> str:
    """SARIF 2.1.0, for code-scanning dashboards."""
    import json
    from urllib.parse import quote

    used = sorted({d.code for d in diagnostics})
    rules = [{"id": c, "shortDescription": {"text": CATALOGUE[c][1]},
              "defaultConfiguration": {"level": CATALOGUE[c][0]}} for c in used]
    results = []
    for d in diagnostics:
        s = d.span
        text = d.message + (f" ({d.hint})" if d.hint else "")
        results.append({
            "ruleId": d.code, "ruleIndex": used.index(d.code), "level": d.severity,
            "message": {"text": text},
            "locations": [{"physicalLocation": {
                # a URI reference: `my pipeline.flow` is `my%20pipeline.flow` (code scanning maps it back)
                "artifactLocation": {"uri": quote(_repo_path(s.file))},
                "region": {"startLine": s.line, "startColumn": s.col,
                           "endLine": s.end_line, "endColumn": s.end_col},
            }}],
        })
    return json.dumps({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "flow", "version": version, "rules": rules}},
                  "results": results}],
    }, indent=2)
