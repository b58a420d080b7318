"""Where a run's Dask cluster comes from: the command line, FLOW_DASK_ADDRESS, the pipeline; the connect timeout;
how long a run waits for a lost scheduler and for a worker that can take an attempt.

`flow run` and the runs that `flow tick` and `flow backfill` start read them
the same way, so a crontab's FLOW_DASK_ADDRESS and FLOW_DASK_TIMEOUT mean
the same to both (FLOW_DASK_RECONNECT and FLOW_DASK_PLACEMENT_TIMEOUT are
read by the backend as it connects). Nothing here imports Dask.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

DEFAULT_TIMEOUT = 10.0  # seconds to reach the scheduler
MAX_TIMEOUT = 3600.0


def address_source(pipeline, flag: Optional[Tuple[str, str]] = None) -> Optional[Tuple[str, str]]:
    """(the address as written, where it was written), or None.

    `flag` is (address, flag name) from the command line; it comes first, then
    FLOW_DASK_ADDRESS (the crontab's way to name the cluster), then the
    pipeline's own `executor dask "..."`.
    """
    if flag is not None and flag[0]:
        return flag
    if os.environ.get("FLOW_DASK_ADDRESS"):
        return os.environ["FLOW_DASK_ADDRESS"], "FLOW_DASK_ADDRESS"
    executor = pipeline.executor
    if executor is not None and executor.address is not None:
        return executor.address.text, f"the pipeline {pipeline.name}"
    return None


def timeout(given: Optional[str] = None) -> float:
    """Seconds to reach the scheduler: `given` (--dask-timeout), else FLOW_DASK_TIMEOUT, else 10.

    Raises ValueError with a message for the user when the value is not a number of seconds.
    """
    text = given if given is not None else os.environ.get("FLOW_DASK_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan
        raise ValueError(f"the Dask connect timeout takes seconds (0 to {MAX_TIMEOUT:.0f}], not `{text}`")
    return value


DEFAULT_RECONNECT = 30.0  # seconds a run waits for a lost scheduler to come back
DEFAULT_PLACEMENT = 60.0  # seconds an attempt may wait for a worker that can take it


def reconnect_window() -> float:
    """Seconds to find a lost scheduler again before the run stops, interrupted: FLOW_DASK_RECONNECT, else 30.

    0 gives up at once. Raises ValueError with a message for the user when the value is not a number of seconds.
    """
    return _seconds("FLOW_DASK_RECONNECT", DEFAULT_RECONNECT, "the time to reconnect to a lost Dask scheduler",
                    zero=True)


def placement_timeout() -> float:
    """Seconds an attempt may wait in Dask's queue while no worker can take it (none offers the resources it
    asks for, or there is no worker): FLOW_DASK_PLACEMENT_TIMEOUT, else 60."""
    return _seconds("FLOW_DASK_PLACEMENT_TIMEOUT", DEFAULT_PLACEMENT,
                    "the time an attempt may wait for a Dask worker that can take it")


def _seconds(name: str, default: float, what: str, zero: bool = False) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 <= value if zero else 0 < value) or not value <= MAX_TIMEOUT:  # also refuses nan
        low = "[0" if zero else "(0"
        raise ValueError(f"{name}: {what} takes seconds, {low} to {MAX_TIMEOUT:.0f}], not `{text}`")
    return value
