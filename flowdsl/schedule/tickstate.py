"""The tick state: which slots of which pipeline have been dealt with.

One file per state folder, `<state>/tick.json`, changed only under an
exclusive `flock` on `<state>/tick.lock` and replaced atomically (written
beside it, fsynced, renamed), so a crash leaves the old or the new state,
never half of one. Per pipeline it keeps:

* `last_tick`: the `now` of the last tick that looked at the pipeline; the
  next tick owns `(last_tick, now]`, so no two ticks own one slot;
* `claims`: the newest slots fired, each with the run id chosen for it
  before its run starts. A claim whose run was never started (the tick
  died in between) is started by the next tick, so no slot is lost;
* `skipped`: the newest slots dropped (by `catchup` or `overlap`) and why.

A file that cannot be read as such a state raises `Damaged`, whose message
says how to recover (see the README, "Scheduling"): so does one that is a
link (never followed), or whose claims hold a run id that is not one (it
would become a path).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
from typing import Any, Dict, Optional

VERSION = 1
KEEP = 50  # claims and skips remembered per pipeline
FILE, LOCK = "tick.json", "tick.lock"


class Damaged(Exception):
    """The tick state cannot be read: nothing in its state folder may fire until it is fixed."""


class Unsaved(Exception):
    """The tick state could not be written (a full disk): the one on disk is the one before this tick."""


def path(state_root: str) -> str:
    return os.path.join(state_root, FILE)


def recovery(state_root: str) -> str:
    p = path(state_root)
    return (f"move it aside (`mv {p} {p}.damaged`): the next tick then starts afresh, owning only the "
            f"last minute, and never fires a slot that already has a run")


class TickState:
    """The tick state of one state folder, held under its lock (or read without it, for a dry run)."""

    def __init__(self, state_root: str, locked: bool = True) -> None:
        self.root = state_root
        self.fd = -1
        if locked:
            from ..store.state import ensure_private_dir, open_file

            ensure_private_dir(state_root)
            # never through a link: raises state.Unsafe, an OSError (the tick says it cannot use the folder)
            path = os.path.join(state_root, LOCK)
            try:
                self.fd = open_file(path, os.O_RDWR | os.O_CREAT)
            except IsADirectoryError:
                raise OSError(f"{path} is a folder, where ticks take turns on a lock file; "
                              f"remove it (`rmdir {path}`): the next tick makes the file") from None
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)  # ticks started together take turns here
            except BaseException:
                self.release()
                raise
        try:
            self.data = read(state_root)
        except Damaged:
            self.release()
            raise

    def pipeline(self, name: str) -> Dict[str, Any]:
        return self.data["pipelines"].setdefault(name, {"last_tick": None, "claims": [], "skipped": []})

    def known(self, name: str) -> Optional[Dict[str, Any]]:
        return self.data["pipelines"].get(name)

    def save(self) -> None:
        if self.fd < 0:
            raise RuntimeError("the tick state is saved only under its lock")
        for entry in self.data["pipelines"].values():
            recent = entry["claims"][-KEEP:]  # and every claim whose run has not started yet
            entry["claims"] = [c for c in entry["claims"][:-KEEP] if not c.get("started", True)] + recent
            entry["skipped"] = entry["skipped"][-KEEP:]
        from ..store.state import write_atomic

        text = json.dumps(self.data, indent=1, sort_keys=True) + "\n"
        try:
            # aside under a name nobody can guess, and removed if the write fails: the old state stays whole
            write_atomic(path(self.root), text.encode("utf-8"), sync=True)
            dirfd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dirfd)
            finally:
                os.close(dirfd)
        except OSError as e:
            raise Unsaved(f"{path(self.root)}: cannot save the tick state: {e.strerror or e}; it is left as the "
                          f"last tick saved it, and the next tick owns this tick's slots again. To recover, make "
                          f"room (or fix the folder's permissions) and tick again") from None

    def pause(self, name: str, paused: bool) -> bool:
        """Pause (or unpause) a pipeline's slots; False if it already was so."""
        entry = self.pipeline(name)
        if bool(entry.get("paused")) == paused:
            return False
        if paused:
            entry["paused"] = True
        else:
            entry.pop("paused", None)
        return True

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TickState:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read(state_root: str) -> Dict[str, Any]:
    """The state as data; an empty one if there is none yet. Raises Damaged."""
    from ..store.state import Unsafe, open_file

    p = path(state_root)
    try:
        with os.fdopen(open_file(p, os.O_RDONLY), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {"version": VERSION, "pipelines": {}}
    except Unsafe as e:
        what = "a symbolic link, which flow never follows" if e.errno == errno.ELOOP else "not a plain file"
        raise Damaged(f"{p}: the tick state is {what}; nothing in {state_root} fires until it is fixed. "
                      f"To recover, {recovery(state_root)}") from None
    except OSError as e:
        raise Damaged(f"{p}: cannot read the tick state: {e.strerror or e}; nothing in {state_root} fires until "
                      f"it can be read. To recover, give it back to the user who ticks (mode 0600), or "
                      f"{recovery(state_root)}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
        _check(data)
    except RecursionError:  # `[[[[...` thousands deep
        raise Damaged(f"{p}: the tick state is damaged (nested too deeply to be one); nothing in {state_root} "
                      f"fires until it is fixed. To recover, {recovery(state_root)}") from None
    except (ValueError, TypeError, KeyError) as e:
        raise Damaged(f"{p}: the tick state is damaged ({e}); nothing in {state_root} fires until it is "
                      f"fixed. To recover, {recovery(state_root)}") from None
    return data


def _check(data: Any) -> None:
    """Every field a tick reads, of the type it reads it as (ValueError naming the first that is not)."""
    from ..store.state import is_run_id, shown

    if not isinstance(data, dict) or not isinstance(data.get("pipelines"), dict):
        raise ValueError("not a tick state")
    if data.get("version") != VERSION:
        raise ValueError(f"version {shown(str(data.get('version')))}, expected {VERSION}")
    for name, entry in data["pipelines"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("claims"), list) \
                or not isinstance(entry.get("skipped"), list):
            raise ValueError(f"the entry of {shown(name)} is malformed")
        if "last_tick" not in entry:
            raise ValueError(f"the entry of {shown(name)} has no last_tick")
        last = entry["last_tick"]
        if last is not None:
            parse_time(last)
        for key, kind in (("paused", bool), ("file", str)):
            if key in entry and not isinstance(entry[key], kind):
                raise ValueError(f"the entry of {shown(name)} has a malformed {key}")
        for claim in entry["claims"]:
            if not isinstance(claim, dict) or not isinstance(claim.get("run_id"), str):
                raise ValueError(f"a claim of {shown(name)} is malformed")
            if not is_run_id(claim["run_id"]):  # it becomes a path: `../..` would start a run elsewhere
                raise ValueError(f"a claim of {shown(name)} has {shown(claim['run_id'])} for a run id")
            parse_time(claim["slot"])
            if not isinstance(claim.get("started", True), bool) \
                    or not all(isinstance(claim.get(k, ""), str) for k in ("logical_date", "schedule", "error")):
                raise ValueError(f"a claim of {shown(name)} is malformed")
            if claim.get("logical_date"):
                parse_time(claim["logical_date"])
        if not all(isinstance(item, dict) for item in entry["skipped"]):
            raise ValueError(f"a skipped slot of {shown(name)} is malformed")


def parse_time(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time")
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return t


def stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat()
