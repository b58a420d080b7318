"""What the language tests share: the valid corpus and its mutations (test_properties, test_fmt,
test_fast_parser), generated layouts of .flow files (test_fmt, test_fast_parser) and generated
conditions (test_conditions, test_fast_parser)."""

import hashlib
import re
from pathlib import Path

from hypothesis import strategies as st

# ---- the corpus and its mutations ----------------------------------------------------------

VALID = Path(__file__).resolve().parents[1] / "data" / "valid"
SOURCES = sorted(VALID.rglob("*.flow"))
TEXTS = [p.read_bytes() for p in SOURCES]
TOKEN = re.compile(rb'\s+|"(?:[^"\\\n]|\\.)*"|[A-Za-z0-9_.:]+|.', re.S)

SNIPPETS = [
    b"{", b"}", b"[", b"]", b"(", b")", b'"', b'"""', b"#", b"\n", b"=", b",", b":", b".", b"\\", b"{{", b"}}",
    b"task", b"task x {", b"pipeline", b"pipeline p {", b"include", b'include "mutant.flow"',
    b'include "include/left.flow"', b"run", b"run tasks.basic:hello", b"sh", b'sh "x"', b"exec", b"with",
    b"with {", b"after", b"retry", b"delay", b"on", b"foreach", b"in", b"when", b"output", b"cache", b"tags",
    b"timeout", b"schedule cron", b"tz", b"every", b"window", b"params", b"defaults", b"concurrency",
    b"-1", b"0", b"2.5", b"1_000", b"1e999", b"9" * 30, b"500ms", b"1h30m", b"99999999999d", b"true", b"null",
    b"env(", b'env("X")', b'secret("S")', b"params.", b"run.", b"run.id", b"{run.date:%Y}", b"x[0]", b'x["k"]',
    b"\x00", b"\xff", b"\xc3", "é".encode(), "\u2028".encode(), b"\r", b"\r\n", b"\t", b"\xef\xbb\xbf",
    b"[" * 120, b"{a=" * 60,
]

position = st.integers(min_value=0, max_value=10**6)
snippet = st.one_of(st.sampled_from(SNIPPETS), st.binary(min_size=1, max_size=6),
                    st.text(min_size=1, max_size=6).map(lambda s: s.encode("utf-8", "surrogatepass")))
mutation = st.one_of(
    st.tuples(st.just("delete"), position, st.integers(1, 40)),
    st.tuples(st.just("insert"), position, snippet),
    st.tuples(st.just("replace"), position, st.integers(1, 10), snippet),
    st.tuples(st.just("drop_token"), position),
    st.tuples(st.just("dup_token"), position),
    st.tuples(st.just("swap_tokens"), position, position),
    st.tuples(st.just("splice"), st.integers(0, len(TEXTS) - 1), position, st.integers(1, 8), position),
)


def mutate(data: bytes, op) -> bytes:
    kind, *args = op
    n = len(data)
    if kind == "delete":
        i = args[0] % (n + 1)
        return data[:i] + data[i + args[1]:]
    if kind == "insert":
        i = args[0] % (n + 1)
        return data[:i] + args[1] + data[i:]
    if kind == "replace":
        i = args[0] % (n + 1)
        return data[:i] + args[2] + data[i + args[1]:]
    tokens = TOKEN.findall(data)
    if kind in ("drop_token", "dup_token", "swap_tokens"):
        if not tokens:
            return data
        i = args[0] % len(tokens)
        if kind == "drop_token":
            del tokens[i]
        elif kind == "dup_token":
            tokens.insert(i, tokens[i])
        else:
            j = args[1] % len(tokens)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        return b"".join(tokens)
    # splice: some lines of another corpus file, put in at a line boundary
    other = TEXTS[args[0]].split(b"\n")
    start = args[1] % len(other)
    piece = other[start:start + args[2]]
    lines = data.split(b"\n")
    at = args[3] % (len(lines) + 1)
    return b"\n".join(lines[:at] + piece + lines[at:])

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CORPUS = sorted(VALID.rglob("*.flow")) + sorted(EXAMPLES.rglob("*.flow"))


# ---- generated layouts -----------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "extract", "load_2", "_x", "output", "cache", "when", "tags", "with"])
KEYS = st.one_of(NAMES, st.sampled_from(['"quoted key"', '"content-type"']))
STRINGS = st.sampled_from(['"x"', '""', '"echo {a.b}"', '"{run.logical_date:%Y-%m}"', '"a # b"', '"q \\" e"',
                           '"{{lit}}"', '"""\n    one\n      two\n    """', '"""inline"""'])
SCALARS = st.one_of(
    st.sampled_from(["3", "-2", "2.5", "1_000", "1e3", "0", "5m", "1h30m", "500ms", "true", "false", "null"]),
    STRINGS.map(lambda s: [s]),
    st.tuples(NAMES, st.lists(st.one_of(NAMES.map(lambda n: [".", n]),
                                        st.sampled_from([["[", "0", "]"], ["[", '"k"', "]"]])), max_size=3)),
    st.just(["env", "(", '"HOME"', ")"]),
    st.just(["env", "(", '"N"', ",", "4", ")"]),
    st.just(["secret", "(", '"S"', ")"]),
)


def _flat(x):
    if isinstance(x, str):
        return [x]
    out = []
    for item in x:
        out.extend(_flat(item))
    return out


def _list_of(inner):
    def build(items_comma):
        items, trailing = items_comma
        out = ["["]
        for i, item in enumerate(items):
            if i:
                out.append(",")
            out.extend(_flat(item))
        if items and trailing:
            out.append(",")
        return out + ["]"]
    return st.tuples(st.lists(inner, max_size=4), st.booleans()).map(build)


def _map_of(inner):
    def build(entries):
        out = ["{"]
        for key, value, comma in entries:
            out += [key, "="] + _flat(value) + ([","] if comma else [])
        return out + ["}"]
    return st.lists(st.tuples(KEYS, inner, st.booleans()), max_size=4, unique_by=lambda e: e[0]).map(build)


VALUES = st.recursive(SCALARS.map(_flat), lambda inner: st.one_of(_list_of(inner), _map_of(inner)), max_leaves=8)
MAPS = _map_of(VALUES)
LISTS = _list_of(VALUES)
DURATIONS = st.sampled_from(["1s", "5m", "2h"])

TASK_STATEMENTS = st.one_of(
    st.just(["run", "pkg.mod:fn"]),
    STRINGS.map(lambda s: ["sh", s]),
    LISTS.map(lambda v: ["exec"] + v),
    MAPS.map(lambda v: ["with"] + v),
    st.lists(NAMES, min_size=1, max_size=3).map(lambda ns: ["after"] + _flat([[",", n] if i else n
                                                                              for i, n in enumerate(ns)])),
    st.tuples(st.sampled_from(["0", "3"]), st.booleans(), st.booleans(), st.booleans()).map(
        lambda r: ["retry", r[0]] + (["delay", "1s"] if r[1] else []) + (["backoff", "2"] if r[2] else [])
        + (["on", "OSError", ",", "pkg", ".", "Busy"] if r[3] else [])),
    DURATIONS.map(lambda d: ["timeout", d]),
    st.sampled_from(["success", "failure", "always"]).map(lambda w: ["when", w]),
    LISTS.map(lambda v: ["foreach", "item", "in"] + v),
    st.sampled_from(["text", "json", "lines"]).map(lambda o: ["output", o]),
    st.sampled_from([["cache"], ["cache", "1h"]]),
    st.just(["tags", "a", ",", '"b c"']),
    STRINGS.map(lambda s: ["description", s]),
)
PIPELINE_STATEMENTS = st.one_of(
    st.just(["schedule", "cron", '"0 5 * * 1-5"', "tz", '"Europe/Berlin"']),
    st.just(["schedule", "every", "6h", "from", '"2026-01-01"']),
    st.just(["schedule", "at", '"2026-12-24T18:00"']),
    st.just(["window", '"2026-01-01"', "to", '"2027-01-01"']),
    st.sampled_from([["catchup", "all"], ["overlap", "queue"], ["concurrency", "4"], ["executor", "thread"],
                     ["executor", "dask", '"tcp://h:1"'], ["results", "pickle"], ["timeout", "1h"]]),
    st.just(["pythonpath", '"src"', ",", '"lib"']),
    MAPS.map(lambda v: ["params"] + v),
    st.lists(st.sampled_from([["retry", "2"], ["timeout", "5m"], ["when", "always"]]), max_size=3).map(
        lambda ss: ["defaults", "{"] + _flat(ss) + ["}"]),
    st.sampled_from([["on", "failure", "run", "alerts:notify"], ["on", "finish", "sh", '"echo done"']]),
)

TASKS = st.tuples(NAMES, st.lists(TASK_STATEMENTS, max_size=5)).map(
    lambda t: ["task", t[0], "{"] + _flat(t[1]) + ["}"])
PIPELINE = st.lists(PIPELINE_STATEMENTS, max_size=5).map(lambda ss: ["pipeline", "p", "{"] + _flat(ss) + ["}"])
INCLUDE = st.just(["include", '"other.flow"'])
SEPARATORS = st.sampled_from([" ", " ", " ", "  ", "\n", "\n", "\n\n", "\t", "\n\n\n    ", "COMMENT", "OWN_COMMENT"])


@st.composite
def layouts(draw):
    """A generated file's tokens, joined by random white space and comments (each comment unique)."""
    blocks = draw(st.lists(st.one_of(TASKS, INCLUDE), min_size=1, max_size=4))
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, len(blocks))), draw(PIPELINE))
    tokens = _flat(blocks)
    text, comments = "", []
    for i, token in enumerate(tokens):
        sep = draw(SEPARATORS) if i else draw(st.sampled_from(["", "OWN_COMMENT"]))
        if sep in ("COMMENT", "OWN_COMMENT"):
            comment = f"# c{len(comments)}"
            comments.append(comment)
            sep = (" " if sep == "COMMENT" else "\n") + comment + "\n"
        text += sep + token
    if draw(st.booleans()):
        comments.append(f"# c{len(comments)}")
        text += " " + comments[-1]
    return text, comments


# ---- generated conditions --------------------------------------------------------------------

scalars = st.one_of(st.booleans(), st.integers(-5, 5), st.sampled_from([0.5, -1.5, 2.0]),
                    st.sampled_from(["", "a", "ab", "full"]), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), scalars,
                                                                          max_size=2))


def literal_text(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, list):
        return "[" + ", ".join(literal_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + "  ".join(f"{k} = {literal_text(x)}" for k, x in v.items()) + " }"
    return repr(v)


@st.composite
def operands(draw):
    """A value written as a literal, or as a param holding it (a reference)."""
    v = draw(values)
    if draw(st.booleans()):
        name = "p" + hashlib.sha1(repr(v).encode()).hexdigest()[:8]  # one name, one value
        return (f"params.{name}", ("value", v), {name: v})
    return (literal_text(v), ("value", v), {})


def combine(children):
    ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"])
    return st.one_of(
        st.tuples(children, ops, children).map(
            lambda t: (f"{_wrap(t[0][0])} {t[1]} {_wrap(t[2][0])}", (t[1], t[0][1], t[2][1]), {**t[0][2], **t[2][2]})),
        st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=3)).map(
            lambda t: (f" {t[0]} ".join(_wrap(c[0]) for c in t[1]), (t[0],) + tuple(c[1] for c in t[1]),
                       {k: v for c in t[1] for k, v in c[2].items()})),
        children.map(lambda c: (f"not {_wrap(c[0])}", ("not", c[1]), c[2])),
    )


def _wrap(text):
    """Parentheses around anything but a single operand, so the text's tree is the generated one."""
    simple = not any(f" {w} " in f" {text} " for w in ("and", "or", "not", "in", "==", "!=", "<", "<=", ">", ">="))
    return text if simple else f"({text})"


expressions = st.recursive(operands(), combine, max_leaves=8)
