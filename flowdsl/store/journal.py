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

The writer holds an exclusive `flock` on the journal for as long as the
run lives; the kernel drops it when the process dies, however it dies, so
a reader tells a live run from a dead one by trying the lock (`is_live`).
A write that fails (a full disk, a file size limit) is cut back to the last
whole record, so the journal stays readable, and raises WriteError.

A journal is opened only in a run folder that `state.check_run_folder`
accepts and never through a link (`state.open_file`): one that is refused
raises JournalError, saying why.

Records (maps; `e` names the event):
  run    v, run_id, pipeline, file, fingerprint, params, overrides, logical_date, trigger, t, pid, targets
  resume t, pid, fingerprint, from (tasks forced to run again)   (a --resume continues here)
  start  task, n (attempt number), t, fp (the task's fingerprint)
  end    task, n, t, status (success | failed | interrupted | cached), result (bytes), error, retry_at
  reuse  task, status, n, started, finished, result, fp, run   (a --from run: kept from an earlier run)
  keep   tasks                    (a resumed session keeps these as the session before left them)
  skip   task, t, reason
  expand task, count                (a foreach task's instances)
  hook   event, status, error, t
  done   status, t, reason
"""

from __future__ import annotations

import fcntl
import os
import time
from typing import Any, Dict, Iterator, List, Set, Tuple

import msgpack

from . import packing, state

VERSION = 1
SYNC_INTERVAL = 0.1  # seconds between group-commit fsyncs


class JournalError(Exception):
    """A journal that cannot be read; the message names the file and what to do."""


class Busy(Exception):
    """Another live process holds the journal."""


class WriteError(Exception):
    """The journal could not be written (disk full, size limit); it was cut back to its last whole record."""

    def __init__(self, path: str, error: OSError) -> None:
        self.error = error
        super().__init__(f"cannot write the journal {path}: {error.strerror or error}")


# Journal descriptors this process holds: a forked worker closes them, so the
# lock dies with the runner and not with the last of its workers.
writer_fds: Set[int] = set()


def drop_inherited() -> None:
    """In a forked helper: let go of the runner's journals, so their locks die with the runner alone."""
    for fd in list(writer_fds):
        try:
            os.close(fd)
        except OSError:
            pass
    writer_fds.clear()


class Writer:
    """Appends records to a journal it holds locked; `create=False` continues an existing one."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT | os.O_EXCL if create else 0)
        # a run written again (a resume) must not meet a link anywhere in its folder: refuse it now
        self.fd = _open(path, flags, deep=not create)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise Busy(f"{path} is held by a live run") from None
        writer_fds.add(self.fd)
        self.size = os.fstat(self.fd).st_size  # the end of the last whole record
        self.pending: List[bytes] = []
        self.dirty = False
        self.last_sync = 0.0
        self.pack = packing.packer()  # msgpack.Packer(use_bin_type=True)'s bytes

    def truncate(self, size: int) -> None:
        """Cut a torn tail off before appending after it."""
        os.ftruncate(self.fd, size)
        self.size = size

    def append(self, record: Dict[str, Any], sync: bool = False) -> None:
        """Queue a record; `flush` writes what is queued in one call."""
        self.pending.append(self.pack(record))
        if sync:
            self.sync()

    def flush(self) -> None:
        """Write the queued records: one `write` for all, so they land whole or (the last) torn."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending = []
        try:
            written = os.write(self.fd, data)
            while written < len(data):  # a short write (rare): finish it
                written += os.write(self.fd, data[written:])
        except OSError as e:
            try:
                os.ftruncate(self.fd, self.size)  # no torn record is left behind
            except OSError:
                pass
            raise WriteError(self.path, e) from None
        self.size += len(data)
        self.dirty = True

    def sync(self) -> None:
        self.flush()
        if self.dirty:
            try:
                os.fsync(self.fd)
            except OSError as e:
                raise WriteError(self.path, e) from None
            self.dirty = False
            self.last_sync = time.monotonic()

    def group_commit(self) -> None:
        """Write what is queued; fsync it unless that was done less than SYNC_INTERVAL ago."""
        self.flush()
        if self.dirty and time.monotonic() - self.last_sync >= SYNC_INTERVAL:
            self.sync()

    def close(self) -> None:
        """Sync and let go (the lock goes with the descriptor)."""
        try:
            self.sync()
        finally:
            self.release()

    def release(self) -> None:
        """Close without writing (a parent that forked the run away, or a failed disk)."""
        if self.fd >= 0:
            writer_fds.discard(self.fd)
            os.close(self.fd)
            self.fd = -1


def _open(path: str, flags: int, deep: bool = False) -> int:
    """The journal's descriptor, in a run folder flow accepts, never through a link. Raises JournalError, OSError.

    A journal that is not there stays FileNotFoundError (a new journal: FileExistsError).
    """
    try:
        state.check_run_folder(os.path.dirname(path) or ".", deep)
        return state.open_file(path, flags)
    except state.Unsafe as e:
        raise JournalError(str(e)) from None


def is_live(path: str) -> bool:
    """Whether a live process holds this journal (its run is still going)."""
    try:
        fd = _open(path, os.O_RDONLY)
    except (OSError, JournalError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def head(path: str) -> Dict[str, Any]:
    """The run record alone (the first), without reading the rest of the journal."""
    for record, _ in _records(path, limit=1):
        return record
    raise JournalError(f"{path}: the journal is empty (the run never started)")


def read(path: str) -> List[Dict[str, Any]]:
    """Every complete record; a torn last record is left out."""
    return scan(path)[0]


def scan(path: str) -> Tuple[List[Dict[str, Any]], int]:
    """(every complete record, the offset just after the last of them)."""
    records: List[Dict[str, Any]] = []
    end = 0
    for record, offset in _records(path):
        records.append(record)
        end = offset
    return records, end


def iter_records(path: str) -> Iterator[Dict[str, Any]]:
    for record, _ in _records(path):
        yield record


def _records(path: str, limit: int = 0) -> Iterator[Tuple[Dict[str, Any], int]]:
    try:
        with os.fdopen(_open(path, os.O_RDONLY), "rb") as f:
            data = f.read(1 << 16) if limit else f.read()
            if limit and len(data) == 1 << 16:
                data += f.read()  # a run record that big is rare: read on
    except FileNotFoundError:
        raise JournalError(f"{path}: no journal here (was the run folder deleted?)") from None
    except OSError as e:
        raise JournalError(f"{path}: cannot read the journal: {e.strerror or e}") from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1 << 20))
    unpacker.feed(data)
    count = end = 0
    while True:
        try:
            record = unpacker.unpack()
        except msgpack.OutOfData:
            return  # the end, or a torn last record: both are fine
        except (msgpack.FormatError, msgpack.StackError, msgpack.ExtraData, ValueError, TypeError) as e:
            if count and not data[end:].strip(b"\0"):
                return  # zeros after the last record: a file system's torn append
            raise _garbage(path, count, f"{type(e).__name__}: {e}") from None
        if not isinstance(record, dict) or "e" not in record:
            if count and not data[end:].strip(b"\0"):
                return
            raise _garbage(path, count, "a record is not an event")
        if count == 0:
            if record.get("e") != "run" or record.get("v") != VERSION:
                raise _garbage(path, count, "it does not start with a run record of version 1")
            for key in ("run_id", "from_run"):  # ids that become paths: damage unless they are run ids
                if (key == "run_id" or record.get(key) is not None) and not state.is_run_id(record.get(key)):
                    raise _garbage(path, count, f"its {key} {state.shown(record.get(key))} is not a run id")
            folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
            if state.is_run_id(folder) and record["run_id"] != folder:  # in `runs/`: its own run, or damage
                raise _garbage(path, count, f"it names the run {record['run_id']}, not the run of its folder")
        count += 1
        end = unpacker.tell()
        yield record, end


def _garbage(path: str, good: int, why: str) -> JournalError:
    return JournalError(
        f"{path}: the journal is damaged after {good} good record{'s' * (good != 1)} ({why}). "
        f"The run cannot be resumed from it; delete its folder ({os.path.dirname(path) or '.'}) "
        f"or move it aside, and start the run again.")
