"""Where an attempt's output goes: its log file, made on the first byte.

An attempt that prints nothing leaves no file (creating 10,000 empty files
was most of a 10,000-task run's system time). Output arrives three ways and
leaves one way, through a LazyLog that masks secrets a line at a time:

- a worker process (and the inline executor) points fds 1 and 2 at a pipe
  of the attempt's own while it runs (C code and child processes are caught
  too); one pump thread per process copies each pipe into its attempt's
  log as output comes, and the attempt's end drains what is left;
- the thread executor swaps sys.stdout and sys.stderr for streams that
  follow each thread's attempt (ThreadStreams);
- sh and exec commands are read through their own pipes (worker._pump).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
import time

from ..lang.values import mask

LONG_LINE = 1 << 20  # a line longer than this is masked and written in pieces
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, which Python names from 3.10 on


def open_log(path: str):
    """An attempt's log, appended to, private to its user like the state folder.

    Never through a link, and only a plain file: a link planted where a log
    goes (the next attempt's, say) would have its output appended to whatever
    it points at. O_NONBLOCK keeps a FIFO planted there from blocking the
    open (a plain file ignores it). Raises OSError, saying why.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        from ..store.state import Unsafe  # only now: a worker need not import it to write logs

        raise Unsafe.link(path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        from ..store.state import Unsafe

        raise Unsafe.special(path)
    return open(fd, "ab", buffering=0)


def _line_cut(pending: bytes) -> int:
    """How much of buffered output to mask and write now: up to its last line break, all past 1 MiB.

    Secrets are masked a line at a time, so one written in pieces is whole when it is masked.
    """
    cut = pending.rfind(b"\n") + 1
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
            cut = _line_cut(data)
            data, self.pending = data[:cut], data[cut:]
            data = self._masked(data)
        self._put(data)

    def close(self) -> None:
        if self.pending:
            rest, self.pending = self.pending, b""
            self._put(self._masked(rest))
        if self.file is not None:
            self.file.close()
            self.file = None

    def _put(self, data: bytes) -> None:
        if data:
            if self.file is None:
                self.file = open_log(self.path)
            self.file.write(data)

    def _masked(self, data: bytes) -> bytes:
        if not data or not self.secrets:
            return data
        return mask(data.decode("utf-8", "replace"), self.secrets).encode("utf-8", "replace")


class _Pump:
    """One thread per process: copies each attempt's pipe into that attempt's log until no writer is left.

    Reads happen only under `lock`, by this thread as output arrives or by
    an attempt's end draining its own pipe, so a byte is written once and
    in order. A pipe stays watched while a child the task left running
    still holds it: that child's output keeps going to its attempt's log.
    """

    def __init__(self) -> None:
        import select

        self.lock = threading.Lock()
        self.logs: dict = {}  # read end -> LazyLog
        self.heard: set = set()  # the read ends epoll listens to
        self.epoll = select.epoll() if hasattr(select, "epoll") else None
        threading.Thread(target=self._run, daemon=True, name="flow-output").start()

    def watch(self, fd: int, log: LazyLog) -> None:
        with self.lock:
            self.logs[fd] = log
            self._listen(fd, True)

    def _listen(self, fd: int, on: bool) -> None:
        """(the lock held) epoll listens to fd, or not; either may already be so."""
        if self.epoll is None or (fd in self.heard) == on:
            return
        if on:
            self.epoll.register(fd, 1)  # EPOLLIN (no writer left reads as EPOLLHUP)
            self.heard.add(fd)
        else:
            self.epoll.unregister(fd)
            self.heard.discard(fd)

    def drain(self, fd: int, finished: bool = False, wait: float = -1) -> None:
        """Copy what the pipe holds into its log.

        `finished`: the attempt's fds are back, so its last partial line is
        written too. The pipe then closes; or a child still holds it, or the
        next attempt will (FdCapture keeps it), and it is listened to, still
        this log's until then. `wait`: how long to wait for the lock (a dying
        process cannot wait for ever).
        """
        if not self.lock.acquire(timeout=wait):
            return
        try:
            log = self.logs.get(fd)
            if log is not None and self._drain(fd, log) and finished:
                log.close()  # its last partial line; a later write (a child's) opens the file again
                self._listen(fd, True)
        finally:
            self.lock.release()

    def pause(self, fd: int) -> None:
        """The attempt is ending: stop listening, so that its closing write end wakes nobody."""
        with self.lock:
            if fd in self.logs:
                self._listen(fd, False)

    def _drain(self, fd: int, log: LazyLog) -> bool:
        """(the lock held) False once every writer is gone: the pipe is closed and forgotten."""
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return True
            if data:
                log.write(data)
                continue
            del self.logs[fd]
            self._listen(fd, False)
            os.close(fd)
            log.close()
            return False

    def _run(self) -> None:
        import select

        while True:
            if self.epoll is not None:
                ready = [fd for fd, _ in self.epoll.poll()]
            else:  # no epoll: look every 50 ms
                with self.lock:
                    fds = list(self.logs)
                ready = select.select(fds, [], [], 0.05)[0] if fds else []
                if not fds:
                    time.sleep(0.05)
            for fd in ready:
                try:
                    self.drain(fd)
                except OSError:  # the log cannot be written (a full disk): the task's next write fails (EPIPE)
                    self.forget(fd)

    def forget(self, fd: int) -> None:
        with self.lock:
            if self.logs.pop(fd, None) is not None:
                self._listen(fd, False)
                os.close(fd)


_PUMP: list = []  # [the process's _Pump], made on first use
_CURRENT: list = []  # [the read end of the attempt whose output fds 1 and 2 carry now]
_SAVED: list = []  # [fd 1, fd 2] as they were before the first attempt (dups)
_SPARE: list = []  # [(read end, write end)] of a pipe only this process can write to, for the next attempt


def _the_pump() -> _Pump:
    if not _PUMP:
        _PUMP.append(_Pump())
    return _PUMP[0]


def _after_fork() -> None:
    """A forked child starts afresh: the pump's thread (and its epoll set) belong to the parent."""
    _PUMP.clear()
    _CURRENT.clear()
    _SAVED.clear()
    _SPARE.clear()


os.register_at_fork(after_in_child=_after_fork)


class FdCapture:
    """fds 1 and 2 of this process into a pipe of the attempt's own, for as long as it runs.

    C code and child processes are caught too. The attempt's end puts fds 1
    and 2 back and drains the pipe: every byte the attempt wrote is then in
    its log, before the next attempt's output can start. When the process
    has no child left (`_no_children`), nobody else can hold the pipe, and
    the next attempt takes it over instead of making a new one (a pipe and
    its set-up cost a worker about 15 µs an attempt).
    """

    def __init__(self, log: LazyLog) -> None:
        self.log = log

    def __enter__(self) -> FdCapture:
        pump = _the_pump()
        if not _SAVED:
            _SAVED.extend((os.dup(1), os.dup(2)))  # where fds 1 and 2 go between attempts, kept open
        _flush_std()  # what was buffered before goes where it was going
        _line_buffered()
        self.read_fd, self.write_fd = _SPARE.pop() if _SPARE else _new_pipe()
        pump.watch(self.read_fd, self.log)
        os.dup2(self.write_fd, 1)
        os.dup2(self.write_fd, 2)
        _CURRENT[:] = [self.read_fd]
        return self

    def __exit__(self, *exc) -> None:
        _flush_std()
        pump = _the_pump()
        keep = _no_children()
        if not keep:
            pump.pause(self.read_fd)  # so that closing its write end wakes nobody
        os.dup2(_SAVED[0], 1)
        os.dup2(_SAVED[1], 2)
        _CURRENT[:] = []
        if not keep:
            os.close(self.write_fd)  # a child may hold the pipe: it stays its attempt's until the child lets go
        pump.drain(self.read_fd, finished=True)
        if keep:
            _SPARE.append((self.read_fd, self.write_fd))


def _new_pipe():
    read_fd, write_fd = os.pipe()
    try:  # room for a burst from C code that writes while holding the GIL
        import fcntl

        fcntl.fcntl(write_fd, _F_SETPIPE_SZ, 1 << 20)
    except (ImportError, OSError):
        pass
    os.set_blocking(read_fd, False)
    return read_fd, write_fd


def _no_children() -> bool:
    """True if this process has no child, running or not yet waited for (one that could hold a pipe).

    `waitid` with WNOWAIT looks without reaping anything. A grandchild whose
    parent has exited belongs to init, and is not seen: a daemon that kept
    the task's stdout would write into later attempts' logs.
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    except (AttributeError, OSError):  # no waitid here: never share a pipe
        return False
    return False


def salvage() -> None:
    """The process is about to die (a timeout): write what the running attempt's pipe holds, if the lock comes soon."""
    if _PUMP and _CURRENT:
        _flush_std()
        try:
            _PUMP[0].drain(_CURRENT[0], finished=True, wait=0.5)
        except Exception:  # dying anyway: what could be saved was
            pass


def _line_buffered() -> None:
    """print() reaches the log a line at a time, in order with stderr: into a pipe, Python would
    keep stdout's text until 8 KiB gathered or the attempt ended (once per process; cheap after)."""
    for stream in (sys.stdout, sys.stderr):
        if not getattr(stream, "line_buffering", True):
            try:
                stream.reconfigure(line_buffering=True)
            except (AttributeError, ValueError, OSError):
                pass


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed or odd stream: nothing of ours to save
            pass


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
