"""Run ids: sorted by start time, safe as file names, never handed out twice by one process."""

import datetime as dt

from flowdsl.store.state import new_run_id


def test_one_process_never_repeats_a_run_id_within_a_millisecond():
    now = dt.datetime(2026, 12, 1, 10, 5, tzinfo=dt.timezone.utc)
    ids = [new_run_id("orders", now) for _ in range(5000)]  # 5,000 in one millisecond: 2 random bytes would repeat
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("orders-20261201T100500000-") for i in ids)


def test_names_are_safe_as_file_names_and_sort_by_time():
    early = new_run_id("a/b c", dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    late = new_run_id("a/b c", dt.datetime(2026, 1, 1, 0, 0, 0, 1000, tzinfo=dt.timezone.utc))
    assert early.startswith("a_b_c-") and "/" not in early and early < late
