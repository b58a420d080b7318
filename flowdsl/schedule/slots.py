"""Schedule slots: the instants a schedule fires at, computed without a clock.

Every function takes its times as arguments (aware datetimes), so that the
scheduler, `flow tick --now` and the tests all ask the same questions.

* `cron` is evaluated on the wall clock of its time zone. A wall time that
  a daylight-saving gap skips fires once, at the first instant after the
  gap; a wall time that a repeated hour shows twice fires once, at its first
  occurrence. Slots that land on the same instant fire once.
* `every D [from T]` is exact on the UTC time line: T + k*D (T defaults to
  the Unix epoch), whatever the clocks of any zone do.
* `at T` is one slot.
* A window `(start, end)` drops every slot outside it (both ends included).

The cron fields are read by `cronexpr` (the validator's reader), so what
`flow validate` accepts and what fires are one grammar; croniter then finds
the matching wall-clock times (imported only here, never by `flow validate`).
"""

from __future__ import annotations

import datetime as dt
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

from ..lang import cronexpr

UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
SHIFT = dt.timedelta(hours=3)  # more than any daylight-saving change moves a wall time
Window = Tuple[Optional[dt.datetime], Optional[dt.datetime]]


class Slot(NamedTuple):
    at: dt.datetime  # the instant, in UTC
    logical: dt.datetime  # the same instant in the schedule's time zone: run.logical_date
    moved: bool = False  # a cron wall time moved to the end of a DST gap


class CronRule:
    """A cron expression on the wall clock of a zone: croniter walks the wall clock, flow places it in time.

    croniter is given naive wall times, so it never applies a time zone itself;
    `resolve` then applies flow's daylight-saving rules to each wall time it finds.
    """

    def __init__(self, expr: str, tz: str = "UTC") -> None:
        from ..lang.timeutil import zone

        self.expr = expr
        self.zone = zone(tz)
        _croniter_form(expr)  # a bad expression fails here, not at the first walk

    def after(self, start: dt.datetime) -> Iterator[Slot]:
        """Slots after `start`, in order, forever (or until none can come)."""
        local = start.astimezone(self.zone).replace(tzinfo=None)
        # A gap can move an earlier wall time past `start`, but no offset change moves one by three hours.
        return self._walk(local - SHIFT, False, lambda at: at > start)

    def before(self, end: dt.datetime) -> Iterator[Slot]:
        """Slots at or before `end`, newest first, back to the year 1 (or eight empty years)."""
        local = end.astimezone(self.zone).replace(tzinfo=None)
        return self._walk(local + SHIFT, True, lambda at: at <= end)

    def _walk(self, wall: dt.datetime, backwards: bool, keep) -> Iterator[Slot]:
        """The slots `keep` accepts, from the wall time `wall` on (or back), in that order.

        Resolving is monotonic in wall time (every wall time of a gap lands on
        the gap's end, the first of a repeated hour is the one kept), so a slot
        equal to the one before it is the same slot reached from another wall
        time, never an earlier one. Raises OverflowError at the calendar's ends.
        """
        from croniter.croniter import CroniterBadDateError

        it = _croniter_at(self.expr, wall)
        step = it.get_prev if backwards else it.get_next
        last = None
        while True:
            try:
                found = step(dt.datetime)
            except CroniterBadDateError:
                return
            except (ValueError, OSError) as e:  # the calendar's ends, as croniter meets them
                raise OverflowError(str(e)) from e
            slot = self.resolve(found)
            if slot.at != last and keep(slot.at):
                last = slot.at
                yield slot

    def resolve(self, wall: dt.datetime) -> Slot:
        """The instant a wall-clock time of this zone fires at."""
        first = wall.replace(tzinfo=self.zone, fold=0)
        at = first.astimezone(UTC)
        if at.astimezone(self.zone).replace(tzinfo=None) == wall:
            return Slot(at, at.astimezone(self.zone))  # exists (fold=0: the first of a repeated hour)
        # In a gap: fold=0 reads it with the offset from before the gap, which lands
        # after the gap's end; fold=1 with the offset after, which lands before its
        # start. The end of the gap, the first instant after it, lies between them.
        low = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        high = at
        if low > high:
            low, high = high, low
        while high - low > dt.timedelta(seconds=1):
            mid = low + (high - low) / 2
            if _offset(mid, self.zone) == _offset(high, self.zone):
                high = mid
            else:
                low = mid
        high = high.replace(microsecond=0)
        return Slot(high, high.astimezone(self.zone), moved=True)

    def __repr__(self) -> str:
        return f"cron {self.expr!r} in {self.zone}"


_FORMS: Dict[str, Tuple[str, bool]] = {}  # cron expression -> _croniter_form(expression)
_TEMPLATES: Dict[str, object] = {}  # cron expression -> a croniter with its fields expanded


def _croniter_at(expr: str, wall: dt.datetime):
    """A croniter for `expr` positioned at the wall time `wall`.

    Each expression is expanded once per process (a tick reads hundreds of
    pipelines, many with the same expression); a walk gets its own copy.
    """
    import copy

    template = _TEMPLATES.get(expr)
    if template is None:
        from croniter import croniter

        cron, day_or = _croniter_form(expr)
        # Eight years without a match (`0 0 31 2 *`) ends a walk: 29 February needs up to eight.
        template = _TEMPLATES[expr] = croniter(cron, wall, day_or=day_or, max_years_between_matches=8)
    it = copy.copy(template)
    it.set_current(wall, force=True)
    return it


def _croniter_form(expr: str) -> Tuple[str, bool]:
    """(the expression as croniter reads it, croniter's day_or) for flow's reading of `expr`.

    The fields are read once, by `cronexpr` (the validator's reader), and handed
    to croniter as plain lists of numbers, so croniter never reads flow's syntax
    on its own. Cron's rule that a field written with a leading `*` (`*`, `*/2`)
    does not restrict the days becomes croniter's day_or (croniter would count
    `*/2` as restricted).
    """
    if expr in _FORMS:
        return _FORMS[expr]
    minutes, hours, days, months, weekdays, day_star, weekday_star = cronexpr.fields(expr)

    def listed(values, full: int) -> str:
        return "*" if len(values) == full else ",".join(str(v) for v in sorted(values))

    day_or = not (day_star or weekday_star)
    # Under day_or a full list is not `*`: `1-31` with a weekday means every day, as in cron.
    day_field = ",".join(str(v) for v in sorted(days)) if day_or else listed(days, 31)
    weekday_field = ",".join(str(v) for v in sorted(weekdays)) if day_or else listed(weekdays, 7)
    form = " ".join([listed(minutes, 60), listed(hours, 24), day_field, listed(months, 12), weekday_field]), day_or
    _FORMS[expr] = form
    return form


def _offset(t: dt.datetime, zone) -> Optional[dt.timedelta]:
    return t.astimezone(zone).utcoffset()


class EveryRule:
    def __init__(self, interval: dt.timedelta, anchor: Optional[dt.datetime] = None) -> None:
        if interval <= dt.timedelta(0):
            raise ValueError("an interval must be positive")
        self.step = _micros(interval)
        self.anchor = anchor or EPOCH

    def after(self, start: dt.datetime) -> Iterator[Slot]:
        k = (_micros(start - self.anchor)) // self.step + 1  # the first k with anchor + k*step > start
        while True:
            at = (self.anchor + dt.timedelta(microseconds=k * self.step)).astimezone(UTC)
            yield Slot(at, at)
            k += 1

    def before(self, end: dt.datetime) -> Iterator[Slot]:
        k = _micros(end - self.anchor) // self.step  # the last k with anchor + k*step <= end
        while True:
            try:
                at = (self.anchor + dt.timedelta(microseconds=k * self.step)).astimezone(UTC)
            except OverflowError:
                return
            yield Slot(at, at)
            k -= 1


class AtRule:
    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def after(self, start: dt.datetime) -> Iterator[Slot]:
        if self.when > start:
            at = self.when.astimezone(UTC)
            yield Slot(at, self.when)

    def before(self, end: dt.datetime) -> Iterator[Slot]:
        if self.when <= end:
            yield Slot(self.when.astimezone(UTC), self.when)


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _inside(slot: Slot, window: Optional[Window]) -> bool:
    if window is None:
        return True
    start, end = window
    return (start is None or slot.at >= start) and (end is None or slot.at <= end)


def between(rule, start: dt.datetime, end: dt.datetime, window: Optional[Window] = None,
            limit: Optional[int] = None) -> List[Slot]:
    """The slots in (start, end], oldest first; with `limit`, only the oldest `limit` of them."""
    if window is not None and window[0] is not None and window[0] > start:
        start = window[0] - dt.timedelta(microseconds=1)
    if window is not None and window[1] is not None and window[1] < end:
        end = window[1]
    out: List[Slot] = []
    for slot in _safely(rule.after(start)):
        if slot.at > end or limit is not None and len(out) >= limit:
            break
        if _inside(slot, window):
            out.append(slot)
    return out


def newest(rule, start: dt.datetime, end: dt.datetime, window: Optional[Window] = None,
           count: int = 1) -> List[Slot]:
    """The newest `count` slots in (start, end], oldest first (without walking the whole span)."""
    if window is not None and window[1] is not None and window[1] < end:
        end = window[1]
    out: List[Slot] = []
    for slot in _safely(rule.before(end)):
        if slot.at <= start or len(out) >= count:
            break
        if _inside(slot, window):
            out.append(slot)
        elif window is not None and window[0] is not None and slot.at < window[0]:
            break
    return out[::-1]


def stream(rule, start: dt.datetime, end: dt.datetime, window: Optional[Window] = None) -> Iterator[Slot]:
    """The slots in (start, end], oldest first, one at a time: a span of millions costs no memory."""
    if window is not None and window[0] is not None and window[0] > start:
        start = window[0] - dt.timedelta(microseconds=1)
    if window is not None and window[1] is not None and window[1] < end:
        end = window[1]
    for slot in _safely(rule.after(start)):
        if slot.at > end:
            return
        if _inside(slot, window):
            yield slot


def count(rule, start: dt.datetime, end: dt.datetime, window: Optional[Window] = None) -> Optional[int]:
    """How many slots (start, end] holds, by arithmetic; None if only a walk can tell (cron)."""
    if window is not None and window[0] is not None and window[0] > start:
        start = window[0] - dt.timedelta(microseconds=1)
    if window is not None and window[1] is not None and window[1] < end:
        end = window[1]
    if end <= start:
        return 0
    if isinstance(rule, EveryRule):
        return max(0, _micros(end - rule.anchor) // rule.step - _micros(start - rule.anchor) // rule.step)
    if isinstance(rule, AtRule):
        return int(start < rule.when <= end)
    return None


def _safely(found: Iterator[Slot]) -> Iterator[Slot]:
    """The slots until the calendar ends (year 1 or 9999)."""
    try:
        yield from found
    except OverflowError:
        return


def upcoming(rule, after: dt.datetime, count: int, window: Optional[Window] = None) -> List[Slot]:
    """The next `count` slots after `after` (fewer if the rule or the window ends)."""
    if window is not None and window[0] is not None and window[0] > after:
        after = window[0] - dt.timedelta(microseconds=1)  # jump to the window: never walk up to it slot by slot
    out: List[Slot] = []
    for slot in _safely(rule.after(after)):
        if window is not None and window[1] is not None and slot.at > window[1]:
            break
        if _inside(slot, window):
            out.append(slot)
            if len(out) == count:
                break
    return out
