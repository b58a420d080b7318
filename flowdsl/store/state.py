"""The state folder and the run report, derived from the journal's records.

Layout (mode 0700, private to its user):

    <state>/runs/<run_id>/journal.msgpack   the checkpoint (held locked while the run lives)
    <state>/runs/<run_id>/summary.json      one line for `flow runs`, rewritten at start and end
    <state>/runs/<run_id>/report.json       the final report
    <state>/runs/<run_id>/snapshot.json     the state at the end of a session that did not succeed
    <state>/runs/<run_id>/output.log        a detached run's own output
    <state>/runs/<run_id>/logs/<task>.<n>.log  one file per attempt
    <state>/cache/<pipeline>/<fingerprint>.msgpack  results of `cache` tasks

`RunState.apply` is the one place that turns records into task states: the
live runner applies each record as it writes it, and `flow status` replays
a journal through the same method.

Each record is numbered by its place in the journal, and a task's final
state keeps the number of the record that set it (`seq`). A result may be
kept by a later session only if it is newer than every upstream result: that
rule, unlike one that remembers what a session did, holds at any point where
a session may have been cut off. A `resume` record therefore does not forget
what earlier sessions finished; it only puts back to pending what did not
succeed (it will run again).
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import secrets as _random
import stat
from typing import Any, Dict, List, Optional, Set, Tuple, Type

from ..lang.diagnostics import UsageError
from . import codec, failures

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeGuard  # Python 3.10's

    from ..lang.values import Secrets

STATE_ENV = "FLOW_STATE_DIR"
SNAPSHOT_VERSION = 3  # 2: task states carry their seq; 3: and their result's checksum, a big result by place
SNAPSHOT = "snapshot.json"
REPORT_RESULT_BYTES = 1 << 16  # report.json shows results up to this size; the journal holds every one
SNAPSHOT_RESULT_BYTES = 1 << 12  # a larger result is named in the snapshot by its place in the journal


def read_journal_bytes(path: str) -> bytes:
    with os.fdopen(open_file(path, os.O_RDONLY), "rb") as f:
        return f.read()


def journal_digest(data: bytes) -> str:
    """The journal's bytes, hashed: a snapshot is believed only for exactly the journal it was made from."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def read_snapshot(folder: str) -> Optional[RunState]:
    """The run state saved at its last session's end, if the journal has not changed since."""
    try:
        with os.fdopen(open_file(os.path.join(folder, SNAPSHOT), os.O_RDONLY), encoding="utf-8") as f:
            data = json.load(f)
        if data.get("v") not in (2, SNAPSHOT_VERSION):
            return None
        journal = read_journal_bytes(journal_path(folder))
        if data.get("journal") != journal_digest(journal):
            return None
        return RunState.from_snapshot(data, journal)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# ---- trust: the state folder is private, and nothing in it is followed elsewhere -------------
#
# flow creates its folders 0700 and its files 0600. A folder it did not create is used as it is
# (never chmod'ed: `--state-dir /tmp` must not lock others out of /tmp), provided it is ours and
# nobody else can write to it, as ssh demands of its keys; otherwise it is refused. Inside the
# state folder nothing is followed: a folder that is a symbolic link is refused, and every file
# is opened with O_NOFOLLOW, so a link planted there cannot make flow write (or append) elsewhere.


class Unsafe(OSError):
    """A file or folder of the state folder that flow will not use: a link, another user's, writable by others.

    An OSError, so that whatever writes the state folder reports it as it would a
    failed write ("cannot start the run ...: <this message>"); `str()` is the message alone.
    """

    strerror: str  # the message, always (OSError's may be None)

    def __init__(self, message: str, code: int = errno.EPERM) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self) -> Tuple[Type[Unsafe], Tuple[str, Optional[int]]]:
        return type(self), (self.strerror, self.errno)

    @classmethod
    def link(cls, path: str) -> Unsafe:
        return cls(f"{path} is a symbolic link: flow does not follow links inside its state folder; "
                   f"remove the link (or move it aside)", errno.ELOOP)

    @classmethod
    def special(cls, path: str) -> Unsafe:
        return cls(f"{path} is not a regular file: flow keeps only plain files in its state folder; "
                   f"remove it (or move it aside)")


class UnsafeStateDir(UsageError):
    """The state folder itself is refused: the command cannot go on (exit 2)."""


def shown(text: Any, width: int = 60) -> str:
    """A value read from a file, fit for one line of a message (NULs, newlines and length tamed)."""
    r = repr(text)
    return r if len(r) <= width else r[:width - 3] + "..."


# `<pipeline>-<UTC %Y%m%dT%H%M%S and milliseconds>-<4 hex>` (before 0.1, without the milliseconds)
_RUN_ID = re.compile(r"[\w-]+-[0-9]{8}T[0-9]{6}(?:[0-9]{3})?-[0-9a-f]{4}")
MAX_NAME = 255  # bytes in one file name, on every file system flow is meant for


def is_run_id(text: Any) -> TypeGuard[str]:
    """Whether `text` has the shape of the ids `new_run_id` makes: one file name, no `/`, `..` or NUL.

    Every run id that becomes a path passes this: those listed in `runs/` (which is how an id typed
    on the command line is checked: it must name one of them) and those read back from files (tick
    claims, journals, summaries), which are damage when they do not.
    """
    return (isinstance(text, str) and len(text) <= MAX_NAME and _RUN_ID.fullmatch(text) is not None
            and len(text.encode("utf-8", "surrogatepass")) <= MAX_NAME)


def check_run_id(run_id: Any) -> str:
    if not is_run_id(run_id):
        raise Unsafe(f"{shown(run_id)} is not a run id (like orders-20261122T050000123-3f9a): "
                     f"a file of the state folder is damaged")
    return run_id


def _owner(uid: int, me: bool = False) -> str:
    try:
        import pwd

        name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid {uid}"
    return f"{name}, uid {uid}" if me else f"{name} (uid {uid})"


def check_private_dir(path: str, what: str = "the folder") -> os.stat_result:
    """Refuse a folder flow must not use: a link, not a folder, another user's, writable by others. Raises Unsafe."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise Unsafe.link(f"{what} {path}")
    if not stat.S_ISDIR(st.st_mode):
        raise Unsafe(f"{what} {path} is not a folder", errno.ENOTDIR)
    me = os.geteuid()
    if st.st_uid != me:
        raise Unsafe(f"{what} {path} belongs to {_owner(st.st_uid)}, not to you ({_owner(me, me=True)}): flow "
                     f"keeps its state only in folders of its own user; use a folder of your own (--state-dir)")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(st.st_mode)
        fix = "use a folder of your own" if st.st_mode & stat.S_ISVTX else f"`chmod go-w {path}`, or use another"
        raise Unsafe(f"{what} {path} is writable by other users (mode {mode:o}): flow keeps its state only in "
                     f"folders nobody else can write to; {fix}")
    return st


def state_dir(flow_file: Optional[str], override: Optional[str] = None) -> str:
    """--state-dir, else $FLOW_STATE_DIR, else `.flow` beside the file (or here); refused if it is not private.

    Every verb that reads or writes state starts here, so a state folder (or its
    `runs/` and `cache/`) that is another user's or writable by others is refused
    before anything in it is read: UnsafeStateDir, exit 2. One that does not
    exist yet is fine: flow will create it, mode 0700. The state folder itself
    may be a link (put where there is room): the folder it leads to is the one
    checked and used; nothing inside it may be a link.
    """
    if override:
        path = os.path.abspath(override)
    elif os.environ.get(STATE_ENV):
        path = os.path.abspath(os.environ[STATE_ENV])
    else:
        base = os.path.dirname(os.path.abspath(flow_file)) if flow_file else os.getcwd()
        path = os.path.join(base, ".flow")
    if os.path.islink(path):
        path = os.path.realpath(path)
    try:
        if os.path.lexists(path):
            check_private_dir(path, "the state folder")
            for sub in ("runs", "cache"):
                inner = os.path.join(path, sub)
                if os.path.lexists(inner):
                    check_private_dir(inner)
    except Unsafe as e:
        raise UnsafeStateDir(str(e)) from None
    except OSError as e:
        raise UnsafeStateDir(f"cannot use the state folder {path}: {e.strerror or e}") from None
    return path


def ensure_private_dir(path: str) -> str:
    """The folder, created mode 0700 if it is not there; an existing one is checked, never chmod'ed. Raises Unsafe.

    Its parents are made as `makedirs` makes them: only the state folder and
    the folders inside it are flow's.
    """
    try:
        os.mkdir(path, 0o700)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return ensure_private_dir(path)
    except FileExistsError:
        check_private_dir(path)
        return path
    os.chmod(path, 0o700)  # ours: exactly 0700, whatever the umask
    return path


def open_file(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open for a file of the state folder: never through a link, only a regular file. Raises Unsafe, OSError.

    O_NONBLOCK keeps a FIFO planted there from blocking the open; a regular file ignores it.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Unsafe.link(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unsafe.special(path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomic(path: str, data: bytes, sync: bool = False) -> None:
    """Replace `path` by a file holding `data`, mode 0600: written aside under a name nobody can guess, renamed.

    The temporary file is created exclusively (O_EXCL, O_NOFOLLOW): nothing
    planted at a name known in advance is written through. A link at `path`
    is replaced, not followed. `sync`: fsynced before the rename.
    """
    folder, name = os.path.split(path)
    while True:
        tmp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_ISSUED: Set[str] = set()


def new_run_id(pipeline: str, now: dt.datetime) -> str:
    """`orders-20261122T050000123-3f9a` (UTC, to the millisecond): sorts by start time, safe as a file name."""
    safe = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in pipeline)
    utc = now.astimezone(dt.timezone.utc)
    while True:
        # a tick names a hundred runs in one millisecond: two random bytes alone would repeat
        # one in fourteen such ticks, so an id is never handed out twice by one process
        run_id = f"{safe}-{utc:%Y%m%dT%H%M%S}{utc.microsecond // 1000:03d}-{_random.token_hex(2)}"
        if run_id not in _ISSUED:
            _ISSUED.add(run_id)
            return run_id


def run_dir(state: str, run_id: str) -> str:
    """The run's folder. Raises Unsafe for an id that is not a run id (one read from a damaged file)."""
    return os.path.join(state, "runs", check_run_id(run_id))


def make_run_dir(state: str, run_id: str) -> str:
    """A new run's folder and its `logs/`, mode 0700; one that already exists is an error (FileExistsError)."""
    path = run_dir(state, run_id)
    ensure_private_dir(state)
    ensure_private_dir(os.path.join(state, "runs"))
    os.mkdir(path, 0o700)
    os.chmod(path, 0o700)
    os.mkdir(os.path.join(path, "logs"), 0o700)
    os.chmod(os.path.join(path, "logs"), 0o700)
    return path


def check_run_folder(folder: str, deep: bool = False) -> None:
    """Refuse a run's folder (or its `logs/`) that is a link, another user's or writable by others. Raises Unsafe.

    `deep`, for a run about to be written again (a resume): nothing in it or in
    `logs/` may be a link either (or a FIFO, a socket, a device), so the run
    refuses to start rather than fail halfway.
    """
    check_private_dir(folder, "the run's folder")
    logs = os.path.join(folder, "logs")
    if os.path.lexists(logs):
        check_private_dir(logs)
    if deep:
        for where in (folder, logs):
            try:
                entries = list(os.scandir(where))
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.is_symlink():
                    raise Unsafe.link(entry.path)
                if not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                    raise Unsafe.special(entry.path)


def journal_path(folder: str) -> str:
    return os.path.join(folder, "journal.msgpack")


def log_path(folder: str, key: str, attempt: int) -> str:
    """`logs/<task>.<n>.log`; always one file name inside `logs/`, whatever a damaged journal says the key is."""
    name = f"{key}.{attempt}.log"
    if "/" in name or "\0" in name:
        name = name.replace("/", "_").replace("\0", "_")
    return os.path.join(folder, "logs", name)


def iso(t: Optional[float]) -> Optional[str]:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds")


def write_json_atomic(path: str, data: Any) -> None:
    """Compact JSON through `dumps`, which uses the C encoder (`dump` and indenting do not); see `write_atomic`."""
    write_atomic(path, (json.dumps(data, separators=(",", ":")) + "\n").encode("utf-8"))


def read_json(path: str) -> Any:
    """A JSON file of the state folder (never through a link). Raises OSError (Unsafe), ValueError."""
    with os.fdopen(open_file(path, os.O_RDONLY), "rb") as f:
        return json.loads(f.read())


SUCCEEDED = ("success", "cached")
MARKED = "marked"  # the fingerprint of a task set by `flow mark`: a resume takes it as it is
_ENDED = frozenset(("success", "cached", "skipped"))


class TaskState:
    __slots__ = ("status", "attempts", "started", "finished", "error", "result", "reason", "fp", "reused", "seq",
                 "worker", "checks", "child", "skipped_as", "crc")

    def __init__(self) -> None:
        self.status = "pending"
        self.attempts = 0
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self.error: Optional[Dict[str, Any]] = None
        self.result: Optional[bytes] = None
        self.reason: Optional[str] = None
        self.fp: Optional[str] = None
        self.reused: Optional[str] = None  # the run it was kept from
        self.seq = -1  # the journal's record that set its final state (its place, counting from 0)
        self.worker: Optional[str] = None  # where its last attempt ran, when another machine (a Dask worker)
        self.checks = 0  # a sensor's checks that found its condition not yet true
        self.child: Optional[str] = None  # a `call` task's child run: its id, kept by a resume
        self.skipped_as: Optional[str] = None  # the reason it was skipped before a resume put it back
        self.crc: Optional[int] = None  # the result's checksum as written (None: a record of an older release)

    def intact(self) -> bool:
        """Its result's bytes are those its record was written with (as far as the record says)."""
        return codec.intact(self.result, self.crc)

    def notes(self) -> Dict[str, Any]:
        """What the report and its page say beside the status, where there is something to say."""
        out: Dict[str, Any] = {}
        for name, value in (("reason", self.reason), ("kept_from", self.reused), ("worker", self.worker),
                            ("checks", self.checks), ("child_run", self.child)):
            if value:
                out[name] = value
        return out


class RunState:
    """What the journal says so far: the run's record and each task's state."""

    def __init__(self) -> None:
        self.info: Dict[str, Any] = {}
        self.tasks: Dict[str, TaskState] = {}
        self.seq = 0  # records applied so far: the next one's place in the journal
        self.sessions = 1
        self.hook_records = 0  # in every session (a resume numbers its hook logs after them)
        self.instances: Dict[str, List[str]] = {}  # foreach task -> instance keys
        self.hooks: List[Dict[str, Any]] = []
        self.status = "running"
        self.finished: Optional[float] = None
        self.reason: Optional[str] = None
        self.error: Optional[Dict[str, Any]] = None  # the run's own: it could not start

    def task(self, key: str) -> TaskState:
        state = self.tasks.get(key)
        if state is None:
            state = self.tasks[key] = TaskState()
        return state

    def apply(self, r: Dict[str, Any]) -> None:
        e = r["e"]
        seq = self.seq
        self.seq = seq + 1
        if e == "start":
            s = self.tasks.get(r["task"]) or self.task(r["task"])
            if s.status in _ENDED:  # it runs again: the earlier end is history
                s.started = s.finished = s.result = None
            if r.get("q"):
                s.status = "queued"
            else:
                s.status = "running"
                if s.started is None:
                    s.started = r["t"]
            s.attempts, s.error, s.fp = r["n"], None, r.get("fp")
            if r.get("child") is not None:
                s.child = r["child"]
        elif e == "wait":  # a sensor's check found its condition not yet true: it waits, holding no worker
            s = self.task(r["task"])
            s.status, s.checks = "waiting", r["checks"]
        elif e == "began":  # a queued attempt started on a worker
            s = self.task(r["task"])
            if r.get("w") is not None:
                s.worker = r["w"]
            if s.attempts == r["n"] and s.status == "queued":
                s.status = "running"
                if s.started is None:
                    s.started = r["t"]
        elif e == "end":
            s = self.tasks.get(r["task"]) or self.task(r["task"])
            s.finished = r["t"]
            s.attempts = max(s.attempts, r.get("n", 0))
            if r.get("w") is not None:
                s.worker = r["w"]
            if r["status"] == "success":
                s.status, s.result, s.error, s.seq, s.crc = "success", r.get("result"), None, seq, r.get("rc")
            elif r["status"] == "cached":
                s.status, s.result, s.error, s.fp, s.seq = "cached", r.get("result"), None, r.get("fp"), seq
                s.crc = r.get("rc")
                s.started = s.started or r["t"]
            else:
                s.error, s.result = r.get("error"), None
                if r.get("retry_at") or r["status"] == "interrupted":
                    s.status = "pending"
                else:
                    s.status, s.seq = "failed", seq
                    if not r.get("n"):  # failed before any attempt: a foreach whose list could not be made
                        self.instances.pop(r["task"], None)
        elif e == "skip":
            s = self.task(r["task"])
            # skipped again as before (the same condition, the same upstream outcome): nothing downstream
            # sees changed, so it is no newer than it was (the keep rule compares these seqs)
            same = s.skipped_as is not None and s.skipped_as == r.get("reason") and s.seq >= 0
            s.status, s.reason, s.finished, s.result = "skipped", r.get("reason"), r["t"], None
            s.seq, s.skipped_as = (s.seq if same else seq), None
            self.instances.pop(r["task"], None)  # a foreach an earlier session expanded has none now
        elif e == "expand":
            keys = [f"{r['task']}[{i}]" for i in range(r["count"])]
            self.instances[r["task"]] = keys
            for k in keys:
                self.task(k)
        elif e == "run":
            self.info = r
            for name in r.get("tasks", ()):
                self.task(name)
        elif e == "reuse":
            s = self.task(r["task"])
            s.status, s.result, s.error, s.fp = r["status"], r.get("result"), None, r.get("fp")
            s.attempts, s.started, s.finished = r.get("n", 0), r.get("started"), r.get("finished")
            s.reused, s.seq, s.reason, s.crc = r.get("run"), seq, None, r.get("rc")
        elif e == "mark":  # `flow mark`: set by hand, and kept so by a resume whatever its fingerprint
            s = self.task(r["task"])
            s.status, s.finished, s.seq, s.fp, s.reused = r["status"], r["t"], seq, MARKED, None
            s.result = r.get("result") if r["status"] == "success" else None
            s.crc = r.get("rc")
            s.error = failures.error(failures.MARKED, "marked failed by hand") \
                if r["status"] == "failed" else None
            s.reason = "marked skipped by hand" if r["status"] == "skipped" else None
        elif e == "keep":  # a resumed session keeps these as earlier sessions left them
            run_id = self.info.get("run_id")
            for key in r["tasks"]:
                kept = self.tasks.get(key)
                if kept is not None and kept.status in SUCCEEDED and kept.reused is None:
                    kept.reused = run_id  # one taken from another run (`reuse`) still names that run
        elif e == "resume":
            # A new session of this run: what did not succeed runs again (pending, its attempts
            # counted on); successes stay until the session runs them again, so a session cut off
            # anywhere leaves every earlier success for the next one to keep.
            self.sessions += 1
            self.hooks = []
            self.status, self.finished, self.reason, self.error = "running", None, None, None
            self.info = dict(self.info, tasks=r.get("tasks", self.info.get("tasks", [])), pid=r.get("pid"),
                             fingerprint=r.get("fingerprint"))
            for key, s in self.tasks.items():
                if s.status not in SUCCEEDED and not (s.status == "skipped" and s.fp == MARKED):
                    again = self.tasks[key] = TaskState()
                    again.attempts, again.seq, again.child = s.attempts, s.seq, s.child
                    again.skipped_as = s.reason if s.status == "skipped" else s.skipped_as
            for name in self.info["tasks"]:
                self.task(name)
        elif e == "hook":
            self.hook_records += 1
            self.hooks.append({"event": r["event"], "status": r["status"], "error": r.get("error")})
        elif e == "done":
            self.status, self.finished, self.reason = r["status"], r["t"], r.get("reason")
            self.error = r.get("error")  # a run that could not start: why

    # ---- the snapshot: the state at a session's end, for a fast resume --------------

    def snapshot(self, journal: bytes) -> Dict[str, Any]:
        """The state as JSON-ready data, valid while the journal is `journal` (its digest is kept).

        Replaying 30,000 records through pure-Python msgpack (the zipapp has
        no C extension) takes 0.4 s; loading this with the C json module a
        tenth of that. A result is kept here when small; a larger one is kept
        once, in the journal, and named here by its place there.
        """
        import base64

        # Each big result's place: its bytes as the journal holds them (any copy of the same bytes will do),
        # found in one pass, in the order of the records that set them (`seq`, which is journal order).
        places: Dict[int, List[int]] = {}
        at = 0
        for _, result in sorted(((t.seq, t.result) for t in self.tasks.values() if t.result is not None
                                 and len(t.result) > SNAPSHOT_RESULT_BYTES), key=lambda p: p[0]):
            found = journal.find(result, at)
            if found >= 0:
                places[id(result)] = [found, len(result)]
                at = found

        def b64(data: Optional[bytes]) -> Any:
            if data is None:
                return None
            return places.get(id(data)) or base64.b64encode(data).decode("ascii")

        info = dict(self.info)
        if isinstance(info.get("overrides"), bytes):
            info["overrides"] = base64.b64encode(info["overrides"]).decode("ascii")
        return {"v": SNAPSHOT_VERSION, "journal": journal_digest(journal), "info": info, "status": self.status,
                "finished": self.finished, "reason": self.reason, "error": self.error, "hooks": self.hooks,
                "hook_records": self.hook_records, "instances": self.instances, "seq": self.seq,
                "sessions": self.sessions,
                "tasks": {k: [t.status, t.attempts, t.started, t.finished, t.error, b64(t.result), t.reason,
                              t.fp, t.reused, t.seq]
                          + ([t.checks, t.child, t.skipped_as, t.crc] if t.checks or t.child or t.skipped_as
                             or t.crc is not None else [])
                          for k, t in self.tasks.items()}}

    @classmethod
    def from_snapshot(cls, data: Dict[str, Any], journal: bytes) -> RunState:
        import base64

        def unb64(value: Any) -> Optional[bytes]:
            if isinstance(value, list):  # a big result, at its place in the journal
                at, size = value
                if at + size > len(journal):
                    raise ValueError(f"{SNAPSHOT}: a result's place is past the journal's end")
                return journal[at:at + size]
            return None if value is None else base64.b64decode(value)

        _check_snapshot(data)
        run = cls()
        info = dict(data["info"])
        if isinstance(info.get("overrides"), str):
            info["overrides"] = base64.b64decode(info["overrides"])
        run.info, run.status, run.finished, run.reason = info, data["status"], data["finished"], data["reason"]
        run.error = data.get("error")
        run.hooks, run.hook_records, run.instances = data["hooks"], data["hook_records"], data["instances"]
        run.seq, run.sessions = data["seq"], data["sessions"]
        for key, entry in data["tasks"].items():
            status, attempts, started, finished, error, result, reason, fp, reused, seq = entry[:10]
            t = run.tasks[key] = TaskState()
            if len(entry) >= 13:  # a sensor's checks, a call's child run, a skip a resume put back, the checksum
                t.checks, t.child, t.skipped_as = entry[10], entry[11], entry[12]
                t.crc = entry[13] if len(entry) == 14 else None
            t.status, t.attempts, t.started, t.finished, t.error = status, attempts, started, finished, error
            t.result = unb64(result)
            t.reason, t.fp, t.reused, t.seq = reason, fp, reused, seq
        return run

    def settled_seq(self, name: str) -> int:
        """The newest record that set the final state of a task or of any of its instances."""
        seq = self.tasks[name].seq if name in self.tasks else -1
        for key in self.instances.get(name, ()):
            s = self.tasks[key]
            if s.seq > seq:
                seq = s.seq
        return seq

    def carried(self, name: str, run_id: str) -> bool:
        """True if the task's result (each instance's, for a foreach task) was reused from run `run_id`."""
        keys = self.instances.get(name)
        if keys is None:
            s = self.tasks.get(name)
            return s is not None and s.reused == run_id and s.status in SUCCEEDED
        own = self.tasks.get(name)
        if own is not None and own.status in ("failed", "skipped"):
            return False
        return all(self.tasks[k].reused == run_id for k in keys)

    def settle(self, live: bool) -> RunState:
        """A run whose process is gone without a `done` record was interrupted, never `running`."""
        if self.status == "running" and not live:
            self.status = "interrupted"
            self.reason = f"the run's process (pid {self.info.get('pid')}) ended without finishing the run"
            for s in self.tasks.values():
                if s.status in ("running", "queued", "waiting"):
                    s.status = "pending"
                    s.error = failures.error(failures.INTERRUPTED, "the run's process died")
        return self

    def summary(self) -> Dict[str, Any]:
        """The run's line in `flow runs --json`."""
        info = self.info
        started = info.get("t")
        return {"run_id": info.get("run_id"), "pipeline": info.get("pipeline"), "status": self.status,
                "trigger": info.get("trigger"), "logical_date": info.get("logical_date"),
                "started_at": iso(started), "finished_at": iso(self.finished),
                "duration_s": round(self.finished - started, 3) if started and self.finished else None,
                "file": info.get("file"), "pid": info.get("pid"), "error": _error_view(self.error)}

    def aggregate(self, name: str) -> TaskState:
        """A foreach task's own state, from its instances."""
        own = self.tasks[name]
        keys = self.instances.get(name)
        if keys is None or own.status in ("failed", "skipped"):
            return own
        parts = [self.tasks[k] for k in keys]
        agg = TaskState()
        agg.attempts = sum(p.attempts for p in parts)
        starts = [p.started for p in parts if p.started is not None]
        ends = [p.finished for p in parts if p.finished is not None]
        agg.started = min(starts) if starts else own.started
        agg.finished = max(ends) if ends and len(ends) == len(parts) else None
        statuses = {p.status for p in parts}
        # skipped instances (flowdsl.Skip, `flow mark`) do not make the task fail: their results are null
        if not parts or statuses <= {"success", "cached"} or (statuses <= {"success", "cached", "skipped"}
                                                               and statuses != {"skipped"}):
            agg.status = "success"
            agg.finished = agg.finished or own.finished
        elif statuses & {"running", "queued", "waiting"}:
            agg.status = "running"
        elif statuses & {"pending"}:
            agg.status = "pending" if "failed" not in statuses else "running"
        elif "failed" in statuses:
            agg.status = "failed"
            failed = [k for k, p in zip(keys, parts) if p.status == "failed"]
            agg.error = failures.error(failures.INSTANCE_FAILED, f"{len(failed)} of {len(parts)} instances failed: "
                                       + ", ".join(failed[:5]) + ("..." if len(failed) > 5 else ""))
        else:
            agg.status = "skipped"
        return agg

    def result(self, key: str, allow_pickle: bool) -> Any:
        if key in self.instances:
            return [self.result(k, allow_pickle) for k in self.instances[key]]
        data = self.tasks[key].result
        return None if data is None else codec.decode_result(data, allow_pickle)

    def report(self, secrets: Optional[Secrets] = None, results: Optional[int] = None) -> Dict[str, Any]:
        """The run report of cli.md. `results`: the largest stored result (in bytes) it shows; a larger one
        is null with its `result_bytes` beside it (None: every result; 0: none, for views that show none).

        Results were masked when they were journaled, so `secrets` masks the rest:
        a result is decoded only to be shown (JSON-stored ones by the C parser).
        """
        info = self.info
        allow_pickle = info.get("results") == "pickle"
        tasks: Dict[str, Any] = {}
        shown: List[str] = []  # the tasks whose results go in, after masking
        names = list(info.get("tasks", ())) or [k for k in self.tasks if "[" not in k]
        for name in names:
            for key in [name] + self.instances.get(name, []):
                s = self.aggregate(key) if key == name and name in self.instances else self.tasks.get(key) or _PENDING
                entry = {
                    "status": s.status, "attempts": s.attempts, "started_at": iso(s.started),
                    "finished_at": iso(s.finished),
                    "duration_s": round(s.finished - s.started, 3) if s.started and s.finished else None,
                    "error": _error_view(s.error), "result": None,
                }
                if s.status in ("success", "cached") and results != 0:
                    size = 0 if results is None else self.result_size(key)
                    if results is None or size <= results:
                        shown.append(key)
                    else:
                        entry["result_bytes"] = size
                entry.update(s.notes())
                if s.fp == MARKED:
                    entry["marked"] = True
                tasks[key] = entry
        started = info.get("t")
        report = {
            "run_id": info.get("run_id"), "pipeline": info.get("pipeline"), "file": info.get("file"),
            "status": self.status, "trigger": info.get("trigger"), "logical_date": info.get("logical_date"),
            "started_at": iso(started), "finished_at": iso(self.finished),
            "duration_s": round(self.finished - started, 3) if started and self.finished else None,
            "params": info.get("params", {}), "tasks": tasks,
        }
        if self.reason:
            report["reason"] = self.reason
        report["error"] = _error_view(self.error)  # the run's own error (it could not start), else null
        if self.hooks:
            report["hooks"] = [dict(h, error=_error_view(h.get("error"))) for h in self.hooks]
        if secrets is not None:
            report = secrets.mask_data(report)
            tasks = report["tasks"]
        for key in shown:
            try:
                tasks[key]["result"] = self.result_view(key, allow_pickle)
            except ValueError as e:
                tasks[key]["result"] = f"<unreadable result: {e}>"
        return report

    def trimmed(self, report: Dict[str, Any], limit: int) -> Dict[str, Any]:
        """A report with every result as `report(results=limit)` shows it (a copy where one is left out)."""
        tasks = report["tasks"]
        big = [k for k, t in tasks.items() if t["result"] is not None and k in self.tasks
               and self.result_size(k) > limit]
        if not big:
            return report
        tasks = dict(tasks)
        for k in big:
            tasks[k] = dict(tasks[k], result=None, result_bytes=self.result_size(k))
        return dict(report, tasks=tasks)

    def result_size(self, key: str) -> int:
        """The bytes a task's result (its instances', for a foreach task) takes in the journal."""
        keys = self.instances.get(key)
        if keys is None:
            return len(self.tasks[key].result or b"")
        return sum(len(self.tasks[k].result or b"") for k in keys)

    def result_view(self, key: str, allow_pickle: bool) -> Any:
        keys = self.instances.get(key)
        if keys is not None:
            return [self.result_view(k, allow_pickle) for k in keys]
        data = self.tasks[key].result
        return None if data is None else codec.result_json(data, allow_pickle)


_PENDING = TaskState()  # what the report shows for a task the journal has not named yet (never changed)


def _is(value: Any, *types: type) -> bool:
    return isinstance(value, types) and (not isinstance(value, bool) or bool in types)


_NONE = type(None)


def _is_error(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and
                             all(_is(value.get(k), str, _NONE) for k in ("type", "message", "traceback")))


def _is_result(value: Any) -> bool:
    """base64 text, null, or [place, size] in the journal."""
    return _is(value, str, _NONE) or (isinstance(value, list) and len(value) == 2
                                      and all(_is(v, int) and v >= 0 for v in value))


def _check_snapshot(data: Any) -> None:
    """Refuse a snapshot whose fields are not of the types `snapshot` writes (a hand edit, damage): ValueError.

    Its digest only says which journal it was made from, not that its own bytes
    are whole: a wrong type would crash the report (or a resume) long after it
    was read. The journal then tells instead.
    """
    def bad(what: str) -> ValueError:
        return ValueError(f"{SNAPSHOT}: {what} is not what flow writes")

    if not isinstance(data, dict):
        raise bad("the snapshot")
    tasks: Any  # JSON, checked below
    instances: Any
    types: Tuple[type, ...]
    info, tasks, instances = data.get("info"), data.get("tasks"), data.get("instances")
    if not isinstance(info, dict) or not is_run_id(info.get("run_id")):
        raise bad("`info`")
    for key, types in (("pipeline", (str,)), ("file", (str, _NONE)), ("t", (int, float, _NONE)),
                       ("pid", (int, _NONE)), ("trigger", (str, _NONE)), ("logical_date", (str, _NONE)),
                       ("params", (dict, _NONE)), ("tasks", (list, _NONE)), ("targets", (list, _NONE)),
                       ("fingerprint", (str, _NONE)), ("overrides", (str, _NONE)), ("from_run", (str, _NONE)),
                       ("results", (str, _NONE))):
        if not _is(info.get(key), *types):
            raise bad(f"`info.{key}`")
    if not all(isinstance(n, str) for n in info.get("tasks") or ()):
        raise bad("`info.tasks`")
    if info.get("from_run") is not None and not is_run_id(info["from_run"]):
        raise bad("`info.from_run`")
    for key, types in (("status", (str,)), ("finished", (int, float, _NONE)), ("reason", (str, _NONE)),
                       ("hooks", (list,)), ("hook_records", (int,)), ("instances", (dict,)), ("seq", (int,)),
                       ("sessions", (int,)), ("tasks", (dict,))):
        if not _is(data.get(key), *types):
            raise bad(f"`{key}`")
    if not _is_error(data.get("error")):
        raise bad("`error`")
    for h in data["hooks"]:
        if not (isinstance(h, dict) and _is(h.get("event"), str) and _is(h.get("status"), str)
                and _is_error(h.get("error"))):
            raise bad("a hook")
    for name, keys in instances.items():
        if not (isinstance(keys, list) and all(isinstance(k, str) and k in tasks for k in keys)):
            raise bad(f"the instances of {shown(name)}")
    for key, t in tasks.items():
        if not (isinstance(t, list) and len(t) in (10, 13, 14)):
            raise bad(f"the task {shown(key)}")
        if len(t) >= 13 and not (_is(t[10], int) and (t[11] is None or is_run_id(t[11])) and _is(t[12], str, _NONE)
                                 and (len(t) == 13 or _is(t[13], int, _NONE))):
            raise bad(f"the task {shown(key)}")
        status, attempts, started, finished, error, result, reason, fp, reused, seq = t[:10]
        if not (_is(status, str) and _is(attempts, int) and _is(started, int, float, _NONE)
                and _is(finished, int, float, _NONE) and _is_error(error) and _is_result(result)
                and _is(reason, str, _NONE) and _is(fp, str, _NONE) and _is(reused, str, _NONE)
                and _is(seq, int)):
            raise bad(f"the task {shown(key)}")


def _error_view(error: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not error:
        return None
    return {"type": error.get("type"), "message": error.get("message"), "traceback": error.get("traceback")}
