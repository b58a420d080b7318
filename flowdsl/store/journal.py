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
raises JournalError, saying why. So does a record whose fields are not of
the types flow writes (`misshapen`): every reader (`RunState.apply`, the
report, the HTML page, `flow logs`) may then trust them.

`flow prune` deletes a run only while it holds the journal's lock
(`holding`), and a writer that continues a journal checks, once it holds
the lock, that the file it locked is still the journal: a resume and a
prune never both believe they have the run.

Records (maps; `e` names the event):
  run    v, run_id, pipeline, file, fingerprint, params, overrides, logical_date, trigger, t, pid, targets
  resume t, pid, fingerprint, from (tasks forced to run again)   (a --resume continues here)
  start  task, n (attempt number), t, fp (the task's fingerprint)
  end    task, n, t, status (success | failed | interrupted | cached), result (bytes, codec's), rc (its crc32),
         error, retry_at
  reuse  task, status, n, started, finished, result, rc, fp, run   (a --from run: kept from an earlier run)
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
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Type

import msgpack

from . import packing, state

VERSION = 1
SYNC_INTERVAL = 0.1  # seconds between group-commit fsyncs


class JournalError(Exception):
    """A journal that cannot be read; the message names the file and what to do."""


class Busy(Exception):
    """Another live process holds the journal."""


class WriteError(OSError):
    """The journal could not be written (disk full, size limit); it was cut back to its last whole record.

    An OSError (its errno the write's), so that what starts a run reports a first
    record that cannot be written as any other failed write of the state folder.
    """

    strerror: str  # the message, always (OSError's may be None)

    def __init__(self, path: str, error: OSError) -> None:
        super().__init__(error.errno, f"cannot write the journal {path}: {error.strerror or error}")
        self.error = error
        self.path = path

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self) -> Tuple[Callable[[str, int, str], WriteError], Tuple[str, Optional[int], Optional[str]]]:
        return _write_error, (self.path, self.error.errno, self.error.strerror)


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
        if not create:
            _still_there(path, self.fd)
        self.created = create
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
            if self.created and self.size == 0:
                self._unmake()
            raise WriteError(self.path, e) from None
        self.size += len(data)
        self.dirty = True

    def _unmake(self) -> None:
        """A new run whose first record did not fit (a full disk): no run at all, rather than one that never
        started, which a `--resume` would choose and could not continue. Only what is empty goes."""
        folder = os.path.dirname(self.path) or "."
        try:
            if os.fstat(self.fd).st_size == 0:
                os.unlink(self.path)
                os.rmdir(os.path.join(folder, "logs"))
                os.rmdir(folder)
        except OSError:
            pass  # what stays is listed as a run that never started, which `flow prune` deletes

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


def _write_error(path: str, code: int, text: str) -> WriteError:
    return WriteError(path, OSError(code, text))


def _still_there(path: str, fd: int) -> None:
    """After locking: the journal locked is still the one at `path` (a prune deletes a run holding its lock,
    so one opened just before the deletion is locked only after it). Closes `fd` and raises JournalError if not."""
    try:
        here = os.lstat(path)
        mine = os.fstat(fd)
        same = (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino) and mine.st_nlink > 0
    except OSError:
        same = False
    if not same:
        os.close(fd)
        raise JournalError(f"{path}: the run was deleted (by `flow prune`?) as it was being resumed; "
                           f"start it again with `flow run`")


class holding:
    """`with holding(path) as fd:` the journal locked as its runner locks it, so no run can start on it meanwhile.

    Raises Busy when a live run holds it. `fd` is None when there is no journal
    (a run that never started: nothing to lock). The lock goes on leaving.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Optional[int]:
        try:
            self.fd = _open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            raise Busy(f"{self.path} is held by a live run") from None
        try:
            _still_there(self.path, self.fd)
        except JournalError:
            self.fd = -1
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
    raise never_started(path)


def never_started(path: str) -> JournalError:
    """A journal without its first record: the run never started (its first write failed), nothing to keep."""
    folder = os.path.dirname(path) or "."
    return JournalError(f"{path}: the journal is empty (the run never started: nothing in it to resume or show); "
                        f"delete its folder ({folder}), or let `flow prune` do it, and start the run again")


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
        raise JournalError(f"{path}: no journal here (the run never started, or its folder was deleted); "
                           f"delete its folder ({os.path.dirname(path) or '.'}) and start the run again") from None
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
        wrong = misshapen(record)
        if wrong:
            raise _garbage(path, count, wrong)
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


# What each field of each record must be, so that a damaged journal (a hand edit, a record of
# the right shape holding the wrong types) is one error here rather than a crash wherever the
# field is used: `RunState.apply`, the report, `flow status`, the HTML page. Fields not named
# here are not read as anything in particular. (types, required)
_NUM = (int, float)
_OPT_STR = (str, type(None))
_OPT_NUM = (int, float, type(None))
_OPT_INT = (int, type(None))
_OPT_LIST = (list, type(None))
_OPT_ERROR = (dict, type(None))
_FIELDS: Dict[str, Dict[str, Tuple[Tuple[Type[Any], ...], bool]]] = {
    "run": {"pipeline": ((str,), True), "file": (_OPT_STR, False), "t": (_OPT_NUM, False),
            "pid": ((int, type(None)), False), "trigger": (_OPT_STR, False), "logical_date": (_OPT_STR, False),
            "params": ((dict, type(None)), False), "tasks": (_OPT_LIST, False), "targets": (_OPT_LIST, False),
            "results": (_OPT_STR, False), "executor": (_OPT_STR, False), "fingerprint": (_OPT_STR, False),
            "forced": (_OPT_LIST, False), "overrides": ((bytes, str, type(None)), False)},
    "resume": {"t": (_OPT_NUM, False), "pid": ((int, type(None)), False), "tasks": (_OPT_LIST, False),
               "fingerprint": (_OPT_STR, False), "forced": (_OPT_LIST, False)},
    "start": {"task": ((str,), True), "n": ((int,), True), "t": (_NUM, True), "fp": (_OPT_STR, False),
              "child": (_OPT_STR, False)},
    "wait": {"task": ((str,), True), "t": (_NUM, True), "checks": ((int,), True)},
    "began": {"task": ((str,), True), "n": ((int,), True), "t": (_NUM, True), "w": (_OPT_STR, False)},
    "end": {"task": ((str,), True), "t": (_NUM, True), "status": ((str,), True), "n": ((int, type(None)), False),
            "result": ((bytes, type(None)), False), "error": (_OPT_ERROR, False), "retry_at": (_OPT_NUM, False),
            "cpu": (_OPT_NUM, False), "fp": (_OPT_STR, False), "w": (_OPT_STR, False), "rc": (_OPT_INT, False)},
    "skip": {"task": ((str,), True), "t": (_NUM, True), "reason": (_OPT_STR, False)},
    "expand": {"task": ((str,), True), "count": ((int,), True)},
    "reuse": {"task": ((str,), True), "status": ((str,), True), "n": ((int, type(None)), False),
              "started": (_OPT_NUM, False), "finished": (_OPT_NUM, False), "result": ((bytes, type(None)), False),
              "fp": (_OPT_STR, False), "run": (_OPT_STR, False), "rc": (_OPT_INT, False)},
    "keep": {"tasks": ((list,), True)},
    "hook": {"event": ((str,), True), "status": ((str,), True), "error": (_OPT_ERROR, False), "t": (_OPT_NUM, False)},
    "done": {"status": ((str,), True), "t": (_NUM, True), "reason": (_OPT_STR, False), "error": (_OPT_ERROR, False)},
    "mark": {"task": ((str,), True), "status": ((str,), True), "t": (_NUM, True),
             "result": ((bytes, type(None)), False), "rc": (_OPT_INT, False)},
}
_LISTS_OF_NAMES = ("tasks", "targets", "forced")
MAX_INSTANCES = 10_000_000  # an `expand` beyond this is damage, not a foreach (it would fill the memory)


def misshapen(record: Dict[str, Any]) -> str:
    """Why a record is not one flow writes (a field of the wrong type), or "" when it is whole."""
    e = record["e"]
    fields = _FIELDS.get(e) if isinstance(e, str) else None
    if fields is None:
        return f"a record of no known kind ({state.shown(e)})" if not isinstance(e, str) else ""
    for key, (types, required) in fields.items():
        if key not in record:
            if required:
                return f"the `{e}` record has no `{key}`"
            continue
        value = record[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"the `{key}` of the `{e}` record is {state.shown(value, 40)}"
        if key in _LISTS_OF_NAMES and value is not None and not all(isinstance(x, str) for x in value):
            return f"the `{key}` of the `{e}` record is not a list of names"
        if key == "error" and value is not None and \
                not all(isinstance(value.get(k), (str, type(None))) for k in ("type", "message", "traceback")):
            return f"the `error` of the `{e}` record is {state.shown(value, 40)}"
    if e == "expand" and not 0 <= record["count"] <= MAX_INSTANCES:
        return f"an `expand` record of {state.shown(record['count'])} instances"
    return ""


def _garbage(path: str, good: int, why: str) -> JournalError:
    return JournalError(
        f"{path}: the journal is damaged after {good} good record{'s' * (good != 1)} ({why}). "
        f"The run cannot be resumed from it; delete its folder ({os.path.dirname(path) or '.'}) "
        f"or move it aside, and start the run again.")
