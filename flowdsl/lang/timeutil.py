"""Time values as the language writes them: ISO datetimes and time zones.

Aware datetimes everywhere, UTC inside; a naive ISO datetime means UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from typing import Optional

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_PART = re.compile(r"(\d[\d_]*)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d[\d_]*(?:ms|s|m|h|d|w))+")


def parse_duration(text: str) -> float:
    """Seconds in a duration the grammar has already checked (`1h30m`)."""
    return sum(int(n.replace("_", "")) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def duration_arg(text: str) -> Optional[float]:
    """A duration typed on the command line (`7d`, `1h30m`), or None if it is not one."""
    value = text.strip()
    return parse_duration(value) if _DURATION.fullmatch(value) else None


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
