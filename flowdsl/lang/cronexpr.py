"""Cron expressions: the five fields checked without importing croniter.

`flow validate` checks every cron schedule, and importing croniter (with
dateutil) costs a fifth of a cold start; reading the syntax does not need
it. `fields` gives the values each field allows, for `slots` to compute
fire times with (so what validates and what fires are one reading).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import FrozenSet, List, Optional, Set, Tuple

MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# name, lowest, highest, names for values
FIELDS: Tuple[Tuple[str, int, int, Optional[List[str]]], ...] = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day-of-month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day-of-week", 0, 7, DAYS),  # 0 and 7 are both Sunday
)
_PART = re.compile(r"^(\*|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/([0-9]+))?$")


def expand(expr: str) -> str:
    """The expression with a macro replaced by its five fields."""
    text = expr.strip()
    return MACROS.get(text.lower(), text)


def problem(expr: str) -> Optional[str]:
    """Why `expr` is not a valid 5-field cron expression, or None if it is."""
    text = expand(expr)
    if text.startswith("@"):
        return f"unknown macro `{text}`; use one of " + ", ".join(sorted(set(MACROS) - {"@annually", "@midnight"}))
    fields = text.split()
    if len(fields) != 5:
        return ("a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
                f"this one has {len(fields)}")
    for value, (name, low, high, names) in zip(fields, FIELDS):
        for part in value.lower().split(","):
            why = _part_problem(part, low, high, names)
            if why:
                return f"{name} field `{value}`: {why}"
    return None


def _number(token: str, low: int, high: int, names: Optional[List[str]]) -> Tuple[Optional[int], Optional[str]]:
    if token.isdigit():
        n = int(token)
    elif names and token in names:
        n = names.index(token) + low
    else:
        allowed = f"{low}-{high}" + (f" or {names[0].upper()}-{names[-1].upper()}" if names else "")
        return None, f"`{token}` is not a value ({allowed})"
    if not low <= n <= high:
        return None, f"{n} is out of range {low}-{high}"
    return n, None


def _part_problem(part: str, low: int, high: int, names: Optional[List[str]]) -> Optional[str]:
    m = _PART.match(part)
    if not m:
        return f"`{part}` is not `*`, a value, a range `a-b` or a step `*/n`"
    base, step = m.group(1), m.group(2)
    if step is not None and int(step) == 0:
        return "a step of 0"
    if base == "*":
        return None
    first, _, last = base.partition("-")
    a, why = _number(first, low, high, names)
    if a is None:  # then `why` says why
        return why
    if last:
        b, why = _number(last, low, high, names)
        if b is None:
            return why
        if b < a:
            return f"the range {first}-{last} runs backwards"
    return None


def fields(expr: str) -> Tuple[Tuple[int, ...], Tuple[int, ...], FrozenSet[int], FrozenSet[int], FrozenSet[int],
                               bool, bool]:
    """(minutes, hours, days of month, months, weekdays 0-6 with 0 Sunday, day `*`, weekday `*`).

    Minutes and hours come sorted; a field written with a leading `*`
    (`*`, `*/2`) counts as unrestricted for cron's day-of-month/day-of-week
    either/or rule. Raises ValueError for an expression `problem` rejects.
    """
    why = problem(expr)
    if why:
        raise ValueError(why)
    parts = expand(expr).lower().split()
    values = []
    first: Optional[int]
    last: Optional[int]
    for value, (_, low, high, names) in zip(parts, FIELDS):
        allowed: Set[int] = set()
        for part in value.split(","):
            base, _, step_text = part.partition("/")
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = low, high
            else:
                a, _, b = base.partition("-")
                first = _number(a, low, high, names)[0]
                last = _number(b, low, high, names)[0] if b else (high if step_text else first)
                assert first is not None and last is not None  # problem() found none of the parts wrong
            allowed.update(range(first, last + 1, step))
        values.append(allowed)
    minutes, hours, days, months, weekdays = values
    weekdays = {d % 7 for d in weekdays}
    return (tuple(sorted(minutes)), tuple(sorted(hours)), frozenset(days), frozenset(months), frozenset(weekdays),
            parts[2].startswith("*"), parts[4].startswith("*"))
