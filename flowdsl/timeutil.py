"""Time values as the language writes them: ISO datetimes and time zones.

Aware datetimes everywhere, UTC inside; a naive ISO datetime means UTC.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo


def parse_iso(text: str, tz: tzinfo = timezone.utc) -> datetime:
    """`2026-11-22`, `2026-11-22T05:00`, `...T05:00:00+01:00` or `...Z`; naive means `tz`.

    Raises ValueError with a message a user can act on.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"`{text}` is not an ISO date or datetime (like 2026-11-22T05:00:00+01:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def zone(name: str) -> tzinfo:
    """The IANA time zone `name`; raises ValueError naming it if unknown."""
    if name.upper() == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone `{name}`") from None
