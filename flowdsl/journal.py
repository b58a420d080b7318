"""The journal: one msgpack record per event, appended, never rewritten.

It is the checkpoint: the run report is derived from it and a resume
replays it. The runner writes the records of each turn of its loop with one
`write` call before it waits again, so a killed runner (even by SIGKILL)
loses at most the turn it was in (attempts it had just started, which a
resume starts again): the kernel has every byte written, and a crash
mid-write leaves at most one torn record, the last.
Against power loss, task ends are fsynced by group commit: at most one fsync
per SYNC_INTERVAL, covering every end written since, plus one at the start
and at the end of the run. A power cut can so lose the last SYNC_INTERVAL
of task ends; a resume runs those tasks again. Cost per record does not
depend on the journal's size.

Records (maps; `e` names the event):
  run    v, run_id, pipeline, file, fingerprint, params, logical_date, trigger, t, pid, targets
  start  task, n (attempt number), t
  end    task, n, t, status (success | failed | interrupted), result (bytes), error, retry_at
  skip   task, t, reason
  expand task, count                (a foreach task's instances)
  hook   event, status, error, t
  done   status, t, reason
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, Iterator, List

import msgpack

VERSION = 1
SYNC_INTERVAL = 0.1  # seconds between group-commit fsyncs


class JournalError(Exception):
    """A journal that cannot be read; the message names the file and what to do."""


class Writer:
    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.pending: List[bytes] = []
        self.dirty = False
        self.last_sync = 0.0
        self.packer = msgpack.Packer(use_bin_type=True)

    def append(self, record: Dict[str, Any], sync: bool = False) -> None:
        """Queue a record; `flush` writes what is queued in one call."""
        self.pending.append(self.packer.pack(record))
        if sync:
            self.sync()

    def flush(self) -> None:
        """Write the queued records: one `write` for all, so they land whole or (the last) torn."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending = []
        written = os.write(self.fd, data)
        while written < len(data):  # a short write (rare): finish it
            written += os.write(self.fd, data[written:])
        self.dirty = True

    def sync(self) -> None:
        self.flush()
        if self.dirty:
            os.fsync(self.fd)
            self.dirty = False
            self.last_sync = time.monotonic()

    def group_commit(self) -> None:
        """Write what is queued; fsync it unless that was done less than SYNC_INTERVAL ago."""
        self.flush()
        if self.dirty and time.monotonic() - self.last_sync >= SYNC_INTERVAL:
            self.sync()

    def close(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self.fd)


def read(path: str) -> List[Dict[str, Any]]:
    """Every complete record; a torn last record is left out."""
    return list(iter_records(path))


def iter_records(path: str) -> Iterator[Dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise JournalError(f"{path}: no journal here (was the run folder deleted?)") from None
    except OSError as e:
        raise JournalError(f"{path}: cannot read the journal: {e.strerror or e}") from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    count = 0
    while True:
        try:
            record = unpacker.unpack()
        except msgpack.OutOfData:
            return  # the end, or a torn last record: both are fine
        except (msgpack.FormatError, msgpack.StackError, msgpack.ExtraData, ValueError, TypeError) as e:
            raise _garbage(path, count, f"{type(e).__name__}: {e}") from None
        if not isinstance(record, dict) or "e" not in record:
            raise _garbage(path, count, "a record is not an event")
        if count == 0 and (record.get("e") != "run" or record.get("v") != VERSION):
            raise _garbage(path, count, "it does not start with a run record of version 1")
        count += 1
        yield record


def _garbage(path: str, good: int, why: str) -> JournalError:
    return JournalError(
        f"{path}: the journal is damaged after {good} good record{'s' * (good != 1)} ({why}). "
        f"The run cannot be resumed from it; delete its folder ({os.path.dirname(path) or '.'}) "
        f"or move it aside, and start the run again.")
