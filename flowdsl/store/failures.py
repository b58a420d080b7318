"""The failures flow itself records: an error record's `type` when flow, not the task, ends an attempt.

An error record is `{"type", "message", "traceback"}`. A task's own
exception gives its class name and its traceback; these kinds are flow's,
with the message saying it all (no traceback). `run.daskhost` runs on a
Dask worker importing only the standard library, so it writes these names
as text; tests/test_layout.py holds it to this catalogue.
"""

from __future__ import annotations

from typing import Dict

TIMEOUT = "Timeout"  # the attempt ran past its `timeout`, or a sensor waited past it
INTERRUPTED = "Interrupted"  # the run stopped it (a signal, a stopping run): not a failure, a resume runs it
WORKER_DIED = "WorkerDied"  # the process (or Dask worker) that ran it died
NOT_YET = "NotYet"  # a sensor's check found its condition not true yet: never a failure
EVAL_ERROR = "EvalError"  # its expressions could not be evaluated (a missing key, an unset variable)
RESULT_TYPE = "ResultTypeError"  # its result is of a type `results msgpack` cannot carry
CHILD_RUN_FAILED = "ChildRunFailed"  # a `call` task's child run did not succeed
INSTANCE_FAILED = "InstanceFailed"  # a foreach task, when one of its instances failed
MARKED = "Marked"  # set failed by hand with `flow mark`

KINDS = frozenset((TIMEOUT, INTERRUPTED, WORKER_DIED, NOT_YET, EVAL_ERROR, RESULT_TYPE, CHILD_RUN_FAILED,
                   INSTANCE_FAILED, MARKED))


def error(kind: str, message: str) -> Dict[str, str]:
    """An error record of one of flow's own kinds."""
    return {"type": kind, "message": message, "traceback": ""}
