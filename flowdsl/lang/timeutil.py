"""Time values as the language writes them: ISO datetimes and time zones.

Aware datetimes everywhere, UTC inside; a naive ISO datetime means UTC.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:  # imported by the functions that need it: durations (every file has some) do not
    from datetime import datetime, tzinfo
    from typing import Dict, Optional

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


def parse_iso(text: str, tz: Optional[tzinfo] = None) -> datetime:
    """`2026-11-22`, `2026-11-22T05:00`, `...T05:00:00+01:00` or `...Z`; naive means `tz` (default UTC).

    Raises ValueError with a message a user can act on.
    """
    from datetime import datetime, timezone

    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"`{text}` is not an ISO date or datetime (like 2026-11-22T05:00:00+01:00)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc if tz is None else tz)
    return parsed


def zone(name: str) -> tzinfo:
    """The IANA time zone `name`; raises ValueError naming it if unknown.

    The system's database first (zoneinfo's own search); where there is none
    (Alpine, distroless and slim containers), the copy of tzdata inside flow.pyz.
    """
    from datetime import timezone

    if name.upper() == "UTC":
        return timezone.utc
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        found = _bundled_zone(name)
    except (ValueError, OSError):
        found = None
    if found is None:
        raise ValueError(f"unknown time zone `{name}`") from None
    return found


_BUNDLED: Optional[Dict[str, bytes]] = None  # {key: TZif bytes}, read from flow.pyz on first need
_BUNDLED_ZONES: Dict[str, tzinfo] = {}  # one object per key, as ZoneInfo(key) gives


def _bundled_zone(name: str) -> Optional[tzinfo]:
    if name not in _BUNDLED_ZONES:
        data = _bundled_data().get(name)
        if data is None:
            return None
        import io
        from zoneinfo import ZoneInfo

        _BUNDLED_ZONES[name] = ZoneInfo.from_file(io.BytesIO(data), key=name)
    return _BUNDLED_ZONES[name]


def _bundled_data() -> Dict[str, bytes]:
    """The zones of the tzdata copy that build_zipapp.py puts in flow.pyz (none outside it)."""
    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = {}
        from .bundled import marshalled, root

        archive = root(globals())  # the archive, or its bytecode cache
        if archive is not None:
            import os

            blob = marshalled(globals(), os.path.join(archive, "flowdsl", "lang", "_tzdata.marshal"))
            try:
                files = blob["files"]  # each TZif file once; a link's key names its zone's file
                _BUNDLED = {key: files[index] for key, index in blob["zones"].items()}
            except (TypeError, KeyError, IndexError, AttributeError):
                pass
    return _BUNDLED
