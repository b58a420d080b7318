"""Schedule slots: cron in a time zone across DST, intervals on the UTC line, `at`, windows.

The rules (language reference, "Schedule slots"): a cron slot in a DST gap
fires once, at the first instant after the gap; a slot in a repeated hour
fires once, at its first occurrence; `every` ignores DST.
"""

import datetime as dt
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowdsl.schedule import slots  # noqa: E402

UTC = dt.timezone.utc


def utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def between(rule, start, end):
    return [(s.at.isoformat(), s.logical.isoformat(), s.moved) for s in slots.between(rule, start, end)]


def cron(expr, tz="UTC"):
    return slots.CronRule(expr, tz)


def test_cron_in_utc_every_15_minutes():
    got = [s.at for s in slots.between(cron("*/15 * * * *"), utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 1, 0))]
    assert got == [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45), utc(2026, 1, 1, 1, 0)]


def test_the_interval_is_open_at_the_start_and_closed_at_the_end():
    rule = cron("0 * * * *")
    assert [s.at for s in slots.between(rule, utc(2026, 1, 1, 5), utc(2026, 1, 1, 6))] == [utc(2026, 1, 1, 6)]


def test_day_of_month_and_day_of_week_are_either_or_when_both_are_restricted():
    # cron's rule: the 13th of the month, or any Friday
    got = [s.at.date() for s in slots.between(cron("0 0 13 * 5"), utc(2026, 2, 1), utc(2026, 3, 31))]
    assert dt.date(2026, 2, 13) in got and dt.date(2026, 3, 13) in got
    assert dt.date(2026, 2, 6) in got and dt.date(2026, 3, 27) in got
    assert all(d.day == 13 or d.weekday() == 4 for d in got)
    # only one restricted: that one alone; Sunday is 0 and 7
    assert {d.weekday() for d in (s.at.date() for s in slots.between(cron("0 0 * * 7"), utc(2026, 1, 1),
                                                                          utc(2026, 2, 1)))} == {6}


def test_macros_and_names():
    got = slots.between(cron("@daily", "Europe/Berlin"), utc(2026, 6, 1), utc(2026, 6, 3))
    assert [s.logical.isoformat() for s in got] == ["2026-06-02T00:00:00+02:00", "2026-06-03T00:00:00+02:00"]
    assert got[0].at == utc(2026, 6, 1, 22)
    got = slots.between(cron("0 9 * jan mon"), utc(2026, 1, 1), utc(2026, 1, 31))
    assert [s.at.day for s in got] == [5, 12, 19, 26]


@pytest.mark.parametrize("zone, day, gap_start, after", [
    ("Europe/Berlin", (2026, 3, 29), "02:30", "2026-03-29T03:00:00+02:00"),
    ("America/New_York", (2026, 3, 8), "02:30", "2026-03-08T03:00:00-04:00"),
    ("Australia/Lord_Howe", (2026, 10, 4), "02:15", "2026-10-04T02:30:00+11:00"),  # a 30-minute shift
])
def test_a_slot_in_a_spring_forward_gap_fires_once_at_the_gap_end(zone, day, gap_start, after):
    h, m = map(int, gap_start.split(":"))
    rule = cron(f"{m} {h} * * *", zone)
    start = utc(*day) - dt.timedelta(days=1)
    got = slots.between(rule, start, start + dt.timedelta(days=3))
    on_day = [s for s in got if s.logical.date() == dt.date(*day)]
    assert len(on_day) == 1
    assert on_day[0].logical.isoformat() == after and on_day[0].moved
    assert len(got) == 3 and not any(s.moved for s in got if s is not on_day[0])


def test_every_minute_through_a_gap_skips_the_missing_minutes_and_fires_the_gap_end_once():
    rule = cron("* * * * *", "Europe/Berlin")
    got = slots.between(rule, utc(2026, 3, 29, 0, 58), utc(2026, 3, 29, 1, 2))  # 01:58 CET .. 03:02 CEST
    assert [s.logical.strftime("%H:%M%z") for s in got] == ["01:59+0100", "03:00+0200", "03:01+0200", "03:02+0200"]


@pytest.mark.parametrize("zone, day, hour, first", [
    ("Europe/Berlin", (2026, 10, 25), 2, "2026-10-25T02:30:00+02:00"),
    ("America/New_York", (2026, 11, 1), 1, "2026-11-01T01:30:00-04:00"),
    ("Australia/Lord_Howe", (2026, 4, 5), 1, "2026-04-05T01:45:00+11:00"),
])
def test_a_slot_in_a_repeated_hour_fires_once_at_its_first_occurrence(zone, day, hour, first):
    minute = 45 if zone == "Australia/Lord_Howe" else 30
    rule = cron(f"{minute} {hour} * * *", zone)
    start = utc(*day) - dt.timedelta(days=1)
    got = [s for s in slots.between(rule, start, start + dt.timedelta(days=3)) if s.logical.date() == dt.date(*day)]
    assert [s.logical.isoformat() for s in got] == [first]


def test_hourly_across_fall_back_fires_each_wall_hour_once():
    rule = cron("0 * * * *", "Europe/Berlin")
    got = slots.between(rule, utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3, 30))
    # 01:00, 02:00 (first, CEST), 03:00, 04:00 local: the repeated 02:00 CET is not a second slot
    assert [s.logical.isoformat() for s in got] == [
        "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00"]


def test_every_is_exact_on_the_utc_line_across_dst():
    rule = slots.EveryRule(dt.timedelta(hours=6), None)
    got = [s.at for s in slots.between(rule, utc(2026, 3, 28, 23), utc(2026, 3, 29, 13))]
    assert got == [utc(2026, 3, 29, 0), utc(2026, 3, 29, 6), utc(2026, 3, 29, 12)]
    anchored = slots.EveryRule(dt.timedelta(minutes=90), utc(2026, 1, 1, 0, 10))
    got = [s.at for s in slots.between(anchored, utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 3, 10))]
    assert got == [utc(2026, 1, 1, 1, 40), utc(2026, 1, 1, 3, 10)]


def test_at_fires_once():
    rule = slots.AtRule(utc(2026, 12, 24, 18))
    assert [s.at for s in slots.between(rule, utc(2026, 12, 24), utc(2026, 12, 25))] == [utc(2026, 12, 24, 18)]
    assert slots.between(rule, utc(2026, 12, 24, 18), utc(2026, 12, 26)) == []


def test_a_window_bounds_every_rule():
    window = (utc(2026, 1, 1, 2), utc(2026, 1, 1, 4))
    rule = cron("0 * * * *")
    got = [s.at.hour for s in slots.between(rule, utc(2026, 1, 1), utc(2026, 1, 1, 8), window)]
    assert got == [2, 3, 4]
    open_ended = (utc(2026, 1, 1, 6), None)
    assert [s.at.hour for s in slots.between(rule, utc(2026, 1, 1), utc(2026, 1, 1, 8), open_ended)] == [6, 7, 8]


def test_next_slots_after_a_time():
    rule = cron("0 5 * * 1-5", "Europe/Berlin")
    got = slots.upcoming(rule, utc(2026, 11, 20, 12), 3)  # a Friday
    assert [s.logical.isoformat() for s in got] == [
        "2026-11-23T05:00:00+01:00", "2026-11-24T05:00:00+01:00", "2026-11-25T05:00:00+01:00"]
    assert slots.upcoming(slots.AtRule(utc(2020, 1, 1)), utc(2026, 1, 1), 3) == []
    assert slots.upcoming(cron("0 5 31 2 *"), utc(2026, 1, 1), 2) == [], "a date that never comes"


def test_agrees_with_croniter_in_utc():
    from croniter import croniter  # a dependency of the package: the oracle where no DST applies

    rng = random.Random(7)
    exprs = ["*/7 * * * *", "5,35 */3 * * *", "0 0 1,15 * *", "30 6 * * 1-5", "0 12 * 2 0", "15 10 10-20 * 3",
             "0 0 29 2 *", "*/10 8-10 * * *"]
    for expr in exprs:
        start = utc(2026, 1, 1) + dt.timedelta(minutes=rng.randrange(0, 400 * 24 * 60))
        it = croniter(expr, start.replace(tzinfo=None))
        expected = [it.get_next(dt.datetime).replace(tzinfo=UTC) for _ in range(20)]
        got = [s.at for s in slots.upcoming(cron(expr), start, 20)]
        assert got == expected, expr


def _oracle(expr: str, tz: str, start: dt.datetime, end: dt.datetime) -> list:
    """The rules applied the slow way: every UTC minute of the range, read on the zone's wall clock."""
    from zoneinfo import ZoneInfo

    from flowdsl.lang import cronexpr

    zone = ZoneInfo(tz)
    minutes, hours, days, months, weekdays, day_star, weekday_star = cronexpr.fields(expr)

    def matches(wall: dt.datetime) -> bool:
        if wall.minute not in minutes or wall.hour not in hours or wall.month not in months:
            return False
        dom, dow = wall.day in days, (wall.isoweekday() % 7) in weekdays
        return (dom and dow) if (day_star or weekday_star) else (dom or dow)

    fired, seen_walls = [], set()
    t = start - dt.timedelta(hours=3)
    previous_wall = None
    while t <= end + dt.timedelta(hours=3):
        wall = t.astimezone(zone).replace(tzinfo=None)
        if previous_wall is not None and wall - previous_wall > dt.timedelta(minutes=1):
            # clocks jumped forward: every skipped wall minute that matches fires now, once
            skipped = previous_wall + dt.timedelta(minutes=1)
            while skipped < wall:
                if matches(skipped):
                    fired.append(t)
                    break
                skipped += dt.timedelta(minutes=1)
        if matches(wall) and wall not in seen_walls:  # a repeated wall minute fires the first time only
            fired.append(t)
        seen_walls.add(wall)
        previous_wall = wall
        t += dt.timedelta(minutes=1)
    return sorted({f for f in fired if start < f <= end})


@pytest.mark.parametrize("tz, around", [
    ("Europe/Berlin", utc(2026, 3, 29, 1)), ("Europe/Berlin", utc(2026, 10, 25, 1)),
    ("America/New_York", utc(2026, 3, 8, 7)), ("America/New_York", utc(2026, 11, 1, 6)),
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)), ("Australia/Lord_Howe", utc(2026, 4, 4, 15)),
])
def test_matches_a_minute_by_minute_oracle_around_transitions(tz, around):
    rng = random.Random(tz + around.isoformat())
    exprs = ["* * * * *", "*/5 * * * *", "30 * * * *", "15,45 1-3 * * *", "0 2 * * *", "59 1 * * *",
             "*/7 2 * * 0", "10 */2 * * *"]
    exprs += [f"{rng.randrange(60)} {rng.randrange(24)} * * *" for _ in range(6)]
    start, end = around - dt.timedelta(hours=6), around + dt.timedelta(hours=6)
    for expr in exprs:
        got = [s.at for s in slots.between(cron(expr, tz), start, end)]
        assert got == _oracle(expr, tz, start, end), (expr, tz)


def test_newest_walks_back_from_the_end_and_agrees_with_between():
    rules = [cron("*/7 3-5 * * 1-5", "Europe/Berlin"), cron("30 2 * * *", "Europe/Berlin"),
             cron("45 1 * * *", "Australia/Lord_Howe"), slots.EveryRule(dt.timedelta(minutes=90)),
             slots.AtRule(utc(2026, 3, 29, 1, 30))]
    start, end = utc(2026, 3, 20), utc(2026, 4, 10)
    window = (utc(2026, 3, 22), utc(2026, 4, 8))
    for rule in rules:
        for win in (None, window):
            every = slots.between(rule, start, end, win)
            for count in (1, 3, 50, 10_000):
                assert slots.newest(rule, start, end, win, count) == every[-count:], (rule, win, count)
            assert slots.between(rule, start, end, win, limit=5) == every[:5]


def test_a_year_of_every_second_is_bounded():
    rule = slots.EveryRule(dt.timedelta(seconds=1))
    got = slots.newest(rule, utc(2025, 1, 1), utc(2026, 1, 1), None, 3)
    assert [s.at for s in got] == [utc(2025, 12, 31, 23, 59, 58), utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1)]
    assert len(slots.between(rule, utc(2025, 1, 1), utc(2026, 1, 1), None, limit=101)) == 101


@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
def test_day_fields_read_as_cron_reads_them_against_the_oracle(tz):
    # croniter walks the wall clock; flow hands it the fields as cronexpr reads them. A leading `*`
    # (`*/2`) leaves the days unrestricted (both restricted: either one matches); `1-31` is restricted.
    exprs = ["0 12 */2 * 1", "0 12 1-31 * 1", "0 12 13 * 0-6", "30 4 */10 * */3", "0 0 29 2 *", "15 3 1,15 * 5",
             "0 6 * 2-3 sun", "45 23 31 * *"]
    start, end = utc(2028, 1, 20), utc(2028, 3, 12)
    for expr in exprs:
        got = [s.at for s in slots.between(cron(expr, tz), start, end)]
        assert got == _oracle(expr, tz, start, end), (expr, tz)
        assert got, expr
