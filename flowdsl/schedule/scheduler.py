"""What a pipeline's schedules say about a span of time: no clock, no files.

`flow tick`, `flow schedule` and `flow backfill` ask their questions here:

* `entries(pipeline)` turns the `schedule` statements of a checked program
  into rules (`slots.CronRule`, `EveryRule`, `AtRule`), each with the label
  it is reported under (`cron 0 5 * * 1-5`, `every 15m`, `at 2026-12-01T00:00`);
* `owned(...)` gives the slots of all of them in `(start, end]`, merged and
  oldest first; slots of two schedules on one instant are one slot;
* `by_catchup(...)` picks from the slots a tick owns those that fire.
"""

from __future__ import annotations

import datetime as dt
import heapq
from typing import AbstractSet, Iterator, List, NamedTuple, Optional, Tuple

from ..lang import ir
from ..lang.timeutil import parse_iso
from . import slots

GRACE = dt.timedelta(seconds=60)  # `catchup none` fires a slot this recent; a first tick owns this much
MAX_FIRE = 100  # runs one tick starts for one pipeline (`catchup all`): the next tick goes on from there
MAX_REPORT = 100  # slots dropped by `catchup` that a tick lists (the newest)
MAX_COUNT = 100_000  # slots counted one by one (cron) before "more than" is the answer


class ScheduleRule(NamedTuple):
    label: str  # the schedule as written: `cron 0 5 * * 1-5`
    zone: str  # the time zone its slots are shown (and logical dates given) in
    rule: object  # slots.CronRule | slots.EveryRule | slots.AtRule


class Due(NamedTuple):
    slot: slots.Slot
    entry: ScheduleRule


def entries(pipeline: ir.PipelineDecl) -> List[ScheduleRule]:
    """The pipeline's schedules as rules (the program is checked: every value is valid)."""
    out = []
    for s in pipeline.schedules:
        if s.kind == "cron":
            expr = s.expr.text
            tz = s.option.text if s.option is not None else "UTC"
            out.append(ScheduleRule(f"cron {expr}", tz, slots.CronRule(expr, tz)))
        elif s.kind == "every":
            anchor = parse_iso(s.option.text) if s.option is not None else None
            label = f"every {s.expr.text}" + (f" from {s.option.text}" if s.option is not None else "")
            out.append(ScheduleRule(label, "UTC", slots.EveryRule(dt.timedelta(seconds=s.expr.seconds), anchor)))
        else:
            when = parse_iso(s.expr.text)
            out.append(ScheduleRule(f"at {s.expr.text}", _zone_name(when), slots.AtRule(when)))
    return out


def _zone_name(when: dt.datetime) -> str:
    offset = when.utcoffset()
    if not offset:
        return "UTC"
    return when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]


def window(pipeline: ir.PipelineDecl) -> Optional[slots.Window]:
    w = pipeline.window
    if w is None:
        return None
    return parse_iso(w.start.text), (parse_iso(w.end.text) if w.end is not None else None)


def owned(schedule: List[ScheduleRule], start: dt.datetime, end: dt.datetime, win: Optional[slots.Window] = None,
          oldest: Optional[int] = None, newest: Optional[int] = None) -> List[Due]:
    """The slots in (start, end], oldest first; one slot per instant (the first schedule's).

    `oldest=N` keeps only the oldest N, `newest=N` only the newest N: either
    way a long span (a machine off for a year, `every 1m`) costs no more
    than N slots per schedule.
    """
    found = {}
    for entry in schedule:
        if newest is not None:
            got = slots.newest(entry.rule, start, end, win, newest)
        else:
            got = slots.between(entry.rule, start, end, win, oldest)
        for slot in got:
            found.setdefault(slot.at, Due(slot, entry))
    ordered = [found[at] for at in sorted(found)]
    if newest is not None:
        return ordered[-newest:]
    return ordered[:oldest] if oldest is not None else ordered


def stream(schedule: List[ScheduleRule], start: dt.datetime, end: dt.datetime, win: Optional[slots.Window] = None,
           exclude: AbstractSet[dt.datetime] = frozenset()) -> Iterator[Due]:
    """The slots in (start, end] one at a time, oldest first; one per instant (the first schedule's).

    Nothing is gathered: a backfill of `every 1m` over ten years holds one
    slot per schedule at a time. Instants in `exclude` are left out.
    """
    def of(i: int, entry: ScheduleRule):
        for slot in slots.stream(entry.rule, start, end, win):
            yield (slot.at, i), Due(slot, entry)

    merged = heapq.merge(*[of(i, entry) for i, entry in enumerate(schedule)], key=lambda pair: pair[0])
    last = None
    for (at, _), due in merged:
        if at != last and at not in exclude:
            yield due
        last = at


def count(schedule: List[ScheduleRule], start: dt.datetime, end: dt.datetime, win: Optional[slots.Window] = None,
          exclude: AbstractSet[dt.datetime] = frozenset(), cap: int = MAX_COUNT) -> Tuple[int, bool]:
    """(how many slots `stream` gives, exact?): by arithmetic for one interval, else counted up to `cap`."""
    if len(schedule) == 1:
        n = slots.count(schedule[0].rule, start, end, win)
        if n is not None:
            lo = max(start, win[0] - dt.timedelta(microseconds=1)) if win and win[0] else start
            hi = min(end, win[1]) if win and win[1] else end
            n -= sum(1 for at in exclude if lo < at <= hi and _is_slot(schedule[0].rule, at))
            return n, True
    n = 0
    for _ in stream(schedule, start, end, win, exclude):
        n += 1
        if n > cap:
            return cap, False
    return n, True


def _is_slot(rule, at: dt.datetime) -> bool:
    if isinstance(rule, slots.EveryRule):
        return slots._micros(at - rule.anchor) % rule.step == 0
    return isinstance(rule, slots.AtRule) and rule.when == at


def by_catchup(due: List[Due], mode: str, now: dt.datetime) -> Tuple[List[Due], List[Due]]:
    """(the slots that fire, the slots dropped): `all` fires each, `latest` the newest,
    `none` only one within GRACE before `now`."""
    if mode == "all" or not due:
        return due, []
    if mode == "latest":
        return due[-1:], due[:-1]
    recent = [d for d in due if d.slot.at > now - GRACE]
    return recent[-1:], [d for d in due if d not in recent[-1:]]


def catchup_mode(pipeline: ir.PipelineDecl) -> str:
    return pipeline.catchup.value if pipeline.catchup is not None else "latest"


def overlap_mode(pipeline: ir.PipelineDecl) -> str:
    return pipeline.overlap.value if pipeline.overlap is not None else "skip"
