"""Python callables checked by reading their source, never by importing it.

`flow validate` must not run user code (it runs in CI and pre-commit hooks),
so a module is found on the pipeline's import path by file name and read
with `ast`. What the source cannot tell (a decorated function, a name
imported from elsewhere, a compiled module) is accepted, not guessed at.
"""

from __future__ import annotations

import _thread
import os
import sys

from .records import finish, record

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    import ast  # imported where a module is read: a file without `run` tasks never needs it (cold start)
    from typing import Dict, List, Optional, Set, Tuple, Union

OPAQUE = "opaque"  # exists, but its shape cannot be read


@record
class Signature:
    """The keyword arguments a callable takes."""

    accepted: Tuple[str, ...]  # may be passed by keyword
    required: Tuple[str, ...]  # must be passed
    any_keyword: bool  # has **kwargs
    positional: int  # how many may be passed positionally (for hooks); -1 for *args
    kind: str  # "function" or "class"
    has_run: bool = True  # for classes: defines run()


finish()


class ModuleSource:
    def __init__(self, path: str, names: Dict[str, Union[ast.AST, str]], any_attr: bool,
                 error: Optional[str] = None, data: bytes = b""):
        self.path = path
        self.names = names  # top-level name -> definition or OPAQUE
        self.any_attr = any_attr  # module __getattr__ or `import *`
        self.error = error
        # The bytes that were parsed: the definitions' line numbers are theirs,
        # whatever the file holds by the time a fingerprint reads it.
        self.data = data
        self._rows: Optional[List[str]] = None

    def rows(self) -> Optional[List[str]]:
        """The file's lines as the parser numbered them (line 1 at index 0); None if it cannot be decoded."""
        if self._rows is None:
            import io
            import tokenize

            try:
                encoding = tokenize.detect_encoding(io.BytesIO(self.data).readline)[0]  # a coding cookie, a BOM
                text = self.data.decode(encoding)
            except (SyntaxError, LookupError, UnicodeDecodeError):
                return None
            # The parser ends a line at \r\n, \r or \n only (str.splitlines also splits at \f, \v, \x85...)
            self._rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        return self._rows


class SourceIndex:
    """Finds and reads modules for one pipeline; each file is read once."""

    def __init__(self, pipeline_dirs: List[str]):
        self.pipeline_dirs = pipeline_dirs
        self._modules: Dict[str, Optional[Union[ModuleSource, str]]] = {}

    def paths(self) -> List[str]:
        """The module files read so far."""
        return [m.path for m in self._modules.values() if isinstance(m, ModuleSource)]

    def module(self, dotted: str) -> Optional[Union[ModuleSource, str]]:
        """The module's source, OPAQUE if it exists but cannot be read, None if not found."""
        if dotted not in self._modules:
            self._modules[dotted] = self._find(dotted)
        return self._modules[dotted]

    def _find(self, dotted: str) -> Optional[Union[ModuleSource, str]]:
        parts = dotted.split(".")
        for d in self.pipeline_dirs:
            base = os.path.join(d, *parts)
            for candidate in (base + ".py", os.path.join(base, "__init__.py")):
                if os.path.isfile(candidate):
                    return _read_module(candidate)
            if _compiled_exists(base):
                return OPAQUE
        # Outside the pipeline's own folders (the standard library, installed
        # packages), finding the top-level name is enough: such modules
        # re-export and alias freely (`os.path`), so they are not read.
        top = parts[0]
        if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
            return OPAQUE
        here = os.getcwd()
        for d in sys.path:
            # the current folder is not where a run imports from (its folder is the pipeline's)
            if not d or d == here or not os.path.isdir(d):
                continue
            base = os.path.join(d, top)
            if os.path.isfile(base + ".py") or os.path.isdir(base) or _compiled_exists(base):
                return OPAQUE
        return None


def _compiled_exists(base: str) -> bool:
    import importlib.machinery as m

    return any(os.path.isfile(base + s) for s in m.EXTENSION_SUFFIXES + [".pyc"])


# One ast.parse at a time: CPython before 3.11.8 and 3.12.1 counts the AST's recursion depth per interpreter,
# not per thread, so two threads parsing at once can fail ("AST constructor recursion depth mismatch").
_AST_PARSING = _thread.allocate_lock()


def _read_module(path: str) -> ModuleSource:
    import ast

    try:
        with open(path, "rb") as f:
            data = f.read()
        with _AST_PARSING:
            tree = ast.parse(data, filename=path)
    except SyntaxError as e:
        where = f"{path}:{e.lineno}" if e.lineno else path
        return ModuleSource(path, {}, True, f"{where}: {e.msg}")
    except (OSError, ValueError) as e:
        return ModuleSource(path, {}, True, f"{path}: {e}")
    except (MemoryError, RecursionError):
        return ModuleSource(path, {}, True, f"{path}: too deeply nested or too large to read")
    names: Dict[str, Union[ast.AST, str]] = {}
    any_attr = False
    stack = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = node
            if node.name == "__getattr__":
                any_attr = True
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        names[n.id] = OPAQUE
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    any_attr = True
                else:
                    names[(alias.asname or alias.name).split(".")[0]] = OPAQUE
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            stack.extend(getattr(node, "body", []) + getattr(node, "orelse", []) + getattr(node, "finalbody", []))
            for h in getattr(node, "handlers", []):
                stack.extend(h.body)
    return ModuleSource(path, names, any_attr, data=data)


def lookup(source: ModuleSource, attr: str) -> Union[ast.AST, str, None]:
    """The definition of `attr` (dotted: `Class.method`), OPAQUE, or None."""
    import ast

    parts = attr.split(".")
    node = source.names.get(parts[0])
    if node is None:
        return OPAQUE if source.any_attr else None
    for part in parts[1:]:
        if not isinstance(node, ast.ClassDef):
            return OPAQUE
        inner = {n.name: n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
        if part not in inner:
            return OPAQUE if node.bases else None
        node = inner[part]
    return node


_BLANK = " \t\f"  # the whitespace Python skips between tokens


def definition_text(source: ModuleSource, node: ast.AST) -> Optional[str]:
    """The `def` or `class` as written, from its first decorator to its last line, without its layout.

    Comments, blank lines, trailing whitespace and the indentation common to
    its lines do not count; inside a string that spans lines all of it does
    (it is the string's value). Line numbers and decorators are the same on
    every Python from 3.9, so this text is too, where `ast.dump` is not.
    None when the file's lines cannot be had.
    """
    rows = source.rows()
    first, last = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    if rows is None or first is None or last is None or last > len(rows):
        return None
    decorators = getattr(node, "decorator_list", None)
    if decorators:
        first = decorators[0].lineno
        # A parenthesised decorator's first token may be lines below its `@`:
        # only brackets, comments and blank lines can stand between them.
        top = first - 1
        while top > 0 and not rows[top].lstrip(_BLANK).startswith("@"):
            top -= 1
        if rows[top].lstrip(_BLANK).startswith("@"):
            first = top + 1
    return without_layout(rows[first - 1:last])


def without_layout(rows: List[str]) -> str:
    """Lines of Python joined by newlines, without comments, blank lines, trailing whitespace and common indentation.

    Inside a string that spans lines nothing is left out. When the lines
    cannot be tokenized, they are taken as they are (no comment is cut).
    """
    comments: Dict[int, int] = {}  # line (from 1) -> the column its comment starts at
    starts_in_string: Set[int] = set()  # lines that begin inside a string: kept as they are
    ends_in_string: Set[int] = set()  # lines that end inside one: their trailing whitespace is the string's
    text = "\n".join(rows) + "\n"
    # Only a comment or a string over several lines needs the tokens: without
    # `#`, triple quotes or a backslash at a line's end there is neither, and
    # the lines alone give the same text (tokenize is slow before 3.12).
    if "#" in text or '"""' in text or "'''" in text or "\\\n" in text:
        import tokenize

        try:
            _comments_and_strings(text, comments, starts_in_string, ends_in_string)
        except (tokenize.TokenError, SyntaxError):
            comments.clear()
            starts_in_string.clear()
            ends_in_string.clear()
    kept: List[Tuple[str, bool]] = []  # (line, begins inside a string)
    for number, row in enumerate(rows, 1):
        if number in comments:
            row = row[:comments[number]]
        if number not in ends_in_string:
            row = row.rstrip(_BLANK)
        if number in starts_in_string:
            kept.append((row, True))
        elif row:
            kept.append((row, False))
    margin = os.path.commonprefix([row[:len(row) - len(row.lstrip(_BLANK))] for row, inside in kept if not inside])
    return "\n".join(row if inside else row[len(margin):] for row, inside in kept)


def _comments_and_strings(text: str, comments: Dict[int, int], starts_in_string: Set[int],
                          ends_in_string: Set[int]) -> None:
    """Where `text`'s comments begin, and which of its lines begin or end inside a string."""
    import io
    import tokenize

    # From 3.12 an f-string is many tokens (t-strings from 3.14): its literal
    # parts are *_MIDDLE. A triple-quoted one counts whole, as the one STRING
    # token that older Pythons make of it, so its text is the same on both.
    opening = {getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n)}
    closing = {getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n)}
    literal = {tokenize.STRING} | {getattr(tokenize, n) for n in ("FSTRING_MIDDLE", "TSTRING_MIDDLE")
                                   if hasattr(tokenize, n)}
    opened: List[Tuple[int, bool]] = []  # the f-strings being read: first line, triple-quoted
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        kind = tok.type
        first = last = 0
        if kind == tokenize.COMMENT:
            comments[tok.start[0]] = tok.start[1]
        elif kind in literal:
            first, last = tok.start[0], tok.end[0]
        elif kind in opening:
            opened.append((tok.start[0], tok.string.endswith(('"""', "'''"))))
        elif kind in closing and opened:
            line, triple = opened.pop()
            if triple:
                first, last = line, tok.end[0]
        if last > first:
            ends_in_string.update(range(first, last))
            starts_in_string.update(range(first + 1, last + 1))


def signature(node: ast.AST, bound: bool = False) -> Optional[Signature]:
    """What the definition accepts; None when the source cannot say."""
    import ast

    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if node.decorator_list:  # a decorator may change the signature
            return None
        return _function_signature(node.args, skip_first=bound, kind="function")
    if isinstance(node, ast.ClassDef):
        body = {n.name: n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        real_bases = [b for b in node.bases if not (isinstance(b, ast.Name) and b.id == "object")]
        has_run = "run" in body or bool(real_bases)
        if _is_dataclass(node):
            return _dataclass_signature(node, has_run)
        init = body.get("__init__")
        if init is None:
            if real_bases or node.keywords or node.decorator_list:
                return None
            return Signature((), (), False, 0, "class", has_run)
        sig = _function_signature(init.args, skip_first=True, kind="class")
        return Signature(sig.accepted, sig.required, sig.any_keyword, sig.positional, "class", has_run)
    return None


def _function_signature(args: ast.arguments, skip_first: bool, kind: str) -> Signature:
    posonly = list(getattr(args, "posonlyargs", []))
    regular = list(args.args)
    positional_all = posonly + regular
    defaults_from = len(positional_all) - len(args.defaults)
    required: List[str] = []
    accepted: List[str] = []
    for i, a in enumerate(positional_all):
        if skip_first and i == 0:
            continue
        has_default = i >= defaults_from
        if a in posonly:
            if not has_default:
                required.append("/" + a.arg)  # positional-only: cannot come from `with`
            continue
        accepted.append(a.arg)
        if not has_default:
            required.append(a.arg)
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        accepted.append(a.arg)
        if d is None:
            required.append(a.arg)
    positional = -1 if args.vararg else len(positional_all) - (1 if skip_first else 0)
    return Signature(tuple(accepted), tuple(required), args.kwarg is not None, positional, kind)


def _is_dataclass(node: ast.ClassDef) -> bool:
    import ast

    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            if isinstance(d, ast.Call) and any(k.arg == "init" and isinstance(k.value, ast.Constant)
                                               and k.value.value is False for k in d.keywords):
                return False
            return True
    return False


def _dataclass_signature(node: ast.ClassDef, has_run: bool) -> Optional[Signature]:
    import ast

    if node.bases:
        return None  # inherited fields cannot be seen from here
    accepted, required = [], []
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if "ClassVar" in ast.dump(stmt.annotation):
                continue
            accepted.append(stmt.target.id)
            if stmt.value is None:
                required.append(stmt.target.id)
    return Signature(tuple(accepted), tuple(required), False, len(accepted), "class", has_run)
