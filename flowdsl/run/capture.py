"""Where an attempt's output goes: its log file, made on the first byte.

An attempt that prints nothing leaves no file (creating 10,000 empty files
was most of a 10,000-task run's system time). Output arrives three ways and
leaves one way, through a LazyLog that masks secrets a line at a time:

- a worker process catches fds 1 and 2 (C code and child processes too) in
  one pipe for its whole life; a pump thread copies what arrives into the
  current attempt's log, and the attempt's end drains what is left;
- the inline executor does the same for one attempt at a time;
- the thread executor swaps sys.stdout and sys.stderr for streams that
  follow each thread's attempt (ThreadStreams);
- sh and exec commands are read through their own pipes (worker._pump).
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Optional

from .values import mask

LONG_LINE = 1 << 20  # a line longer than this is masked and written in pieces
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python names from 3.10 on


def open_log(path: str):
    """An attempt's log, appended to, private to its user like the state folder."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab", buffering=0)


def line_cut(pending):
    """How much of buffered output (bytes or str) to mask and write now: up to its last line break, all past 1 MiB.

    Secrets are masked a line at a time, so one written in pieces is whole when it is masked.
    """
    cut = pending.rfind(b"\n" if isinstance(pending, bytes) else "\n") + 1
    return cut or (len(pending) if len(pending) > LONG_LINE else 0)


class LazyLog:
    """One attempt's log file: created by the first byte written, secrets masked line by line.

    `close` writes a last line that has no newline and closes the file; a
    later write (a child the task left running) opens it again and appends.
    """

    def __init__(self, path: str, secrets=()) -> None:
        self.path = path
        self.secrets = tuple(secrets)
        self.file = None
        self.pending = b""  # with secrets: the part of a line not yet masked

    def write(self, data: bytes) -> None:
        if self.secrets:
            data = self.pending + data
            cut = line_cut(data)
            data, self.pending = data[:cut], data[cut:]
            data = self._masked(data)
        if data:
            if self.file is None:
                self.file = open_log(self.path)
            self.file.write(data)

    def close(self) -> None:
        if self.pending:
            rest, self.pending = self.pending, b""
            rest = self._masked(rest)
            if self.file is None:
                self.file = open_log(self.path)
            self.file.write(rest)
        if self.file is not None:
            self.file.close()
            self.file = None

    def _masked(self, data: bytes) -> bytes:
        if not data or not self.secrets:
            return data
        return mask(data.decode("utf-8", "replace"), self.secrets).encode("utf-8", "replace")


class FdCapture:
    """fds 1 and 2 into a pipe; a pump thread copies what arrives into the current LazyLog.

    The pump reads, and the attempt's end drains, only under `lock`: so once
    `end` returns, every byte the attempt wrote is in its log, and a byte
    written later (by a child it left running) goes to the same log until
    the next attempt begins.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        try:  # room for a burst from C code that writes while holding the GIL
            import fcntl

            fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, 1 << 20)
        except (ImportError, OSError):
            pass
        os.set_blocking(self.read_fd, False)
        self.lock = threading.Lock()
        self.sink: Optional[LazyLog] = None
        self.saved = None
        self.thread = threading.Thread(target=self._pump, daemon=True, name="flow-output")
        self.thread.start()

    def redirect(self) -> FdCapture:
        """fds 1 and 2 now write into the pipe (what was buffered before goes where it was going)."""
        _flush_std()
        self.saved = (os.dup(1), os.dup(2))
        os.dup2(self.write_fd, 1)
        os.dup2(self.write_fd, 2)
        return self

    def restore(self) -> None:
        """fds 1 and 2 back; the pump goes on until no child holds the pipe, then closes the log."""
        _flush_std()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)
        os.close(self.saved[0])
        os.close(self.saved[1])
        os.close(self.write_fd)

    def begin(self, log: LazyLog) -> None:
        _flush_std()
        with self.lock:
            self._drain()  # late output still belongs to the attempt before
            if self.sink is not None:
                self.sink.close()
            self.sink = log

    def end(self) -> None:
        _flush_std()
        with self.lock:
            self._drain()
            if self.sink is not None:
                self.sink.close()

    def salvage(self) -> None:
        """The process is about to die (a timeout): write what is in the pipe, if the lock comes soon."""
        if self.lock.acquire(timeout=0.5):
            try:
                _flush_std()
                self._drain()
                if self.sink is not None:
                    self.sink.close()
            except Exception:
                pass
            finally:
                self.lock.release()

    def _drain(self) -> bool:
        """Copy what the pipe holds into the sink (the lock held); False once every writer is gone."""
        while True:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return True
            if not data:
                return False
            if self.sink is not None:
                self.sink.write(data)

    def _pump(self) -> None:
        import select

        open_ = True
        while open_:
            select.select([self.read_fd], [], [])
            with self.lock:
                open_ = self._drain()
        with self.lock:
            if self.sink is not None:
                self.sink.close()
            os.close(self.read_fd)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or odd stream: nothing of ours to save
            pass


_process_capture: Optional[FdCapture] = None


def capture_process() -> None:
    """A worker process: its fds 1 and 2 go to the current attempt's log for the rest of its life."""
    global _process_capture
    _process_capture = FdCapture().redirect()


def process_capture() -> Optional[FdCapture]:
    return _process_capture


class ThreadStreams:
    """sys.stdout/sys.stderr replacements that send each thread's writes to its attempt's LazyLog."""

    local = threading.local()
    installed = False

    class Stream:
        def __init__(self, original):
            self.original = original

        def write(self, text):
            target = getattr(ThreadStreams.local, "target", None)
            if target is None:
                return self.original.write(text)
            target.write(text.encode("utf-8", "replace"))
            return len(text)

        def flush(self):
            if getattr(ThreadStreams.local, "target", None) is None:
                self.original.flush()

        def __getattr__(self, name):
            return getattr(self.original, name)

    @classmethod
    def begin(cls, log: LazyLog) -> None:
        if not cls.installed:
            sys.stdout = cls.Stream(sys.stdout)
            sys.stderr = cls.Stream(sys.stderr)
            cls.installed = True
        cls.local.target = log

    @classmethod
    def end(cls) -> None:
        log, cls.local.target = getattr(cls.local, "target", None), None
        if log is not None:
            log.close()
