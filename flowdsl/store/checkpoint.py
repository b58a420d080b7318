"""What a run may keep from before: task fingerprints, earlier results, the result cache.

A task's fingerprint has three parts, each a short hash, so that a change
can be explained:

    d  its definition: the action, `with`, `foreach` and `output` as written
       (not their positions, not description, tags, retry or timeout)
    s  its callable's source: the `def` or `class` as written, from its first
       decorator, without comments, blank lines, trailing whitespace and
       common indentation (`pysource.definition_text`: the same text on every
       Python version; helpers it calls are not followed), or the module
       file's bytes when the definition cannot be read
    i  its resolved inputs: the evaluated `with` map, the rendered command or
       argv, and the `FLOW_ARG_` variables

A resumed run (or a `--from` run) keeps an earlier success when the task's
fingerprint is unchanged and every task upstream of it was kept too; a task
with `cache` reuses an entry of the result cache with the same fingerprint.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import stat
import time
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Set

import msgpack

from ..lang import ir, pysource
from ..lang.ir import shape_text
from . import codec, state

PARTS = {"d": "its definition changed", "s": "its callable's source changed", "i": "its inputs changed"}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


class Fingerprints:
    """Computes fingerprints for one plan; the static parts once per task."""

    def __init__(self, tasks: Dict[str, Any], sys_path: Iterable[str]) -> None:
        self.tasks = tasks  # name -> planner.TaskPlan
        self.index = pysource.SourceIndex(list(sys_path))
        self.static: Dict[str, str] = {}
        self.sources: Dict[str, str] = {}  # callable -> hash: many tasks share one
        self.definitions: Dict[str, str] = {}  # task -> definition hash known from before
        self.legacy_sources: Dict[str, str] = {}  # callable -> the source hash of older releases ("": none)

    def know(self, previous: Previous, program_fp: str, earlier_fp: Optional[str]) -> None:
        """When the program's files are byte for byte those of the earlier run, take its definition hashes."""
        if program_fp != earlier_fp:
            return
        for key, kept in previous.kept.items():
            if kept.fp:
                self.definitions[key.split("[", 1)[0]] = kept.fp.split(".", 1)[0]

    def static_part(self, name: str) -> str:
        part = self.static.get(name)
        if part is None:
            tp = self.tasks[name]
            task = tp.task
            d = self.definitions.get(name)
            if d is None:
                d = "d" + _digest(shape_text([task.action, task.args, task.foreach, tp.settings.output]).encode())
            part = self.static[name] = f"{d}.s{self.source(task.action)}"
        return part

    def source(self, action: Any) -> str:
        if not isinstance(action, ir.RunAction):
            return "-"
        key = str(action.callable)
        part = self.sources.get(key)
        if part is None:
            part = self.sources[key] = self._source(action.callable)
        return part

    def _source(self, ref: ir.CallableRef) -> str:
        module = self.index.module(ref.module)
        if not isinstance(module, pysource.ModuleSource):
            return "-"  # not ours to follow (installed or standard library)
        node = pysource.lookup(module, ref.attr) if module.error is None else None
        if isinstance(node, ast.AST):
            # The text as written, not `ast.dump`: the dump changes with the
            # Python version, and an upgrade would then run every task again.
            text = pysource.definition_text(module, node)
            if text is not None:
                return _digest(text.encode("utf-8", "surrogatepass"))
        try:
            with open(module.path, "rb") as f:
                return _digest(f.read())
        except OSError:
            return "-"

    def matches(self, earlier: Optional[str], now: str, name: str) -> bool:
        """True if an earlier fingerprint is this one, or this one as flow made it before its source part
        was the definition's text (an `ast.dump` of it): results and caches written then are still kept."""
        return earlier == now or (earlier is not None and earlier == self.legacy(now, name))

    def legacy(self, fp: str, name: str) -> Optional[str]:
        """The fingerprint `fp` with the source part flow made before (None when there is none to make)."""
        action = self.tasks[name].task.action
        if not isinstance(action, ir.RunAction):
            return None
        key = str(action.callable)
        old = self.legacy_sources.get(key)
        if old is None:
            module = self.index.module(action.callable.module)
            node = None
            if isinstance(module, pysource.ModuleSource) and module.error is None:
                node = pysource.lookup(module, action.callable.attr)
            old = self.legacy_sources[key] = _digest(ast.dump(node).encode()) if isinstance(node, ast.AST) else ""
        if not old:
            return None
        d, _, rest = fp.partition(".s")
        return f"{d}.s{old}.{rest.partition('.')[2]}"

    def of(self, name: str, kind: str, target: str, argv: Sequence[str], env: Mapping[str, str],
           kwargs: Mapping[str, Any], allow_pickle: bool = False) -> str:
        """`d<hash>.s<hash>.i<hash>` for an attempt's resolved inputs: what it runs (`kind`, `target`, `argv`),
        its `FLOW_ARG_`/`FLOW_SECRET_` variables and its arguments (results passed whole as codec.Stored)."""
        env_inputs = sorted((k, v) for k, v in env.items() if k.startswith(("FLOW_ARG_", "FLOW_SECRET_")))
        # a call's argv holds how flow was started and its child run's id, neither of them an input
        argv = () if kind == "call" else argv or ()
        inputs = [kind, target, list(argv), env_inputs, kwargs]
        try:  # json's encoder is in C: this runs once per task, also in a 10,000-task resume
            if any(map(codec.deferred, kwargs.values())):
                text = _spliced(inputs, allow_pickle)
            else:
                text = _INPUTS.encode(inputs)  # json.dumps(inputs, default=_canonical, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError):
            text = repr(inputs)
        return f"{self.static_part(name)}.i{_digest(text.encode('utf-8', 'surrogatepass'))}"


_MARK = "\0stored {}\0"  # where a stored result's text goes, as json writes it: "\u0000stored 0\u0000"


def _spliced(inputs: List[Any], allow_pickle: bool) -> str:
    """The inputs' text with each result passed whole (codec.Stored) as the text of its value, which is what
    the value itself gives: a JSON-stored result is its own text (kept fingerprints stay what they were);
    only a msgpack or pickled one is decoded."""
    stored: List[codec.Stored] = []

    def place(value: Any) -> Any:
        if type(value) is codec.Stored:
            stored.append(value)
            return _MARK.format(len(stored) - 1)
        if type(value) is codec.Built:
            return value.value
        return _canonical(value)

    text = json.JSONEncoder(default=place, separators=(",", ":")).encode(inputs)
    for i, s in enumerate(stored):
        data = s.data
        if data[:1] == b"J" and data.isascii():
            value = data[1:].decode("ascii")
        else:
            value = _INPUTS.encode(codec.decode_result(data, allow_pickle))
        text = text.replace(json.dumps(_MARK.format(i)), value, 1)
    return text


def _canonical(value: Any) -> Any:
    """What json cannot hold, as stable text: sets sorted, bytes in hex, the rest by repr."""
    if isinstance(value, (set, frozenset)):
        return ["<set>"] + sorted(repr(v) for v in value)
    if isinstance(value, (bytes, bytearray)):
        return "<bytes>" + bytes(value).hex()
    return f"<{type(value).__name__}>{value!r}"


_INPUTS = json.JSONEncoder(default=_canonical, separators=(",", ":"))  # one encoder, not one per call


def why_changed(old: Optional[str], new: str) -> str:
    """Which parts of a fingerprint differ, in words."""
    if not old:
        return "it has no fingerprint from before"
    olds = dict((p[0], p[1:]) for p in old.split("."))
    news = dict((p[0], p[1:]) for p in new.split("."))
    changed = [k for k in "dsi" if olds.get(k) != news.get(k)]
    if "d" in changed and "i" in changed:
        changed.remove("i")  # a new command or `with` is new input too: say it once
    return " and ".join(PARTS[k] for k in changed) or "its fingerprint changed"


class Kept(NamedTuple):
    """A success of an earlier session of this run, as the resume found it."""

    fp: Optional[str]
    seq: int  # the record that set it (state.TaskState.seq)


class Previous:
    """What a run may keep from before, and the attempt counts it continues.

    `own`: the successes of this run's earlier sessions (a resume). Kept when
    the fingerprint is unchanged and the result is newer than every upstream
    result (their `seq`), which holds wherever an earlier session was cut off.
    `earlier`: the successes of the run a `--from` run started from. Kept when
    the fingerprint is unchanged and every upstream was kept from that run too.
    `forced` names tasks that run again whatever they left (--from); the
    run a `--from` run started from gives nothing for its forced tasks either.
    """

    def __init__(self, run_id: Optional[str] = None, own: Optional[state.RunState] = None,
                 forced: Iterable[str] = (), earlier_id: Optional[str] = None,
                 earlier: Optional[state.RunState] = None, earlier_forced: Iterable[str] = ()) -> None:
        self.run_id = run_id
        self.forced: Set[str] = set(forced)
        self.own: Dict[str, Kept] = {}
        self.attempts: Dict[str, int] = {}  # attempt numbers (and so log files) continue
        self.marked_skips: Set[str] = set()  # keys `flow mark` set skipped: a resume leaves them so
        if own is not None:
            for key, s in own.tasks.items():
                if s.attempts:
                    self.attempts[key] = s.attempts
                if s.status in state.SUCCEEDED:
                    self.own[key] = Kept(s.fp, s.seq)
                elif s.status == "skipped" and s.fp == state.MARKED:
                    self.marked_skips.add(key)
        self.earlier_id = earlier_id
        self.earlier_forced: Set[str] = set(earlier_forced) | self.forced
        self.earlier: Dict[str, state.TaskState] = {}
        if earlier is not None:
            self.earlier = {key: s for key, s in earlier.tasks.items() if s.status in state.SUCCEEDED}

    @property
    def kept(self) -> Dict[str, Any]:
        """Every candidate by key (each has `.fp`): this run's own when resuming, else the earlier run's."""
        return self.own or self.earlier

    def __bool__(self) -> bool:
        return bool(self.own or self.earlier)


class ResultCache:
    """`cache [TTL]`: results by fingerprint, in `<state>/cache/<pipeline>/`, one small file each.

    Best effort both ways: an entry that cannot be read is a miss, one that
    cannot be written only means the next run computes again. That includes
    what flow refuses in the state folder: a folder that is a link, another
    user's or writable by others, and an entry that is a link (read: never;
    written: replaced by a file of our own, the link's target untouched).
    """

    def __init__(self, state_root: str, pipeline: str) -> None:
        self.folder = os.path.join(state_root, "cache", pipeline)
        self.trusted = False  # the folder was checked (once per run is enough)

    def path(self, fp: str) -> str:
        return os.path.join(self.folder, fp + ".msgpack")

    def _check(self, create: bool) -> None:
        if not self.trusted:
            if create:
                state.ensure_private_dir(os.path.dirname(self.folder))
                state.ensure_private_dir(self.folder)
            else:
                state.check_private_dir(os.path.dirname(self.folder))
                state.check_private_dir(self.folder)
            self.trusted = True

    def get(self, fp: str, ttl: Optional[float]) -> Optional[Dict[str, Any]]:
        try:
            self._check(create=False)
            with os.fdopen(state.open_file(self.path(fp), os.O_RDONLY), "rb") as f:
                entry = msgpack.unpackb(f.read(), raw=False)
        except (OSError, ValueError, TypeError, RecursionError, msgpack.UnpackException):
            return None  # missing, a link, not msgpack: a miss (the next success writes it afresh)
        # an entry of the wrong shape is a miss too: its result would go into the journal as it is
        if not isinstance(entry, dict) or not isinstance(entry.get("result", 0), (bytes, type(None))):
            return None
        written, run, crc = entry.get("t", 0), entry.get("run"), entry.get("c")
        if isinstance(written, bool) or not isinstance(written, (int, float)) or \
                not isinstance(run, (str, type(None))):
            return None
        if not codec.intact(entry.get("result"), crc):
            return None  # its bytes are not those written
        if ttl is not None and time.time() - written > ttl:
            return None
        return entry

    def put(self, fp: str, result: Optional[bytes], run_id: str, task: str) -> None:
        """Best effort: a cache that cannot be written only means the next run computes again."""
        try:
            self._check(create=True)
            data = msgpack.packb({"t": time.time(), "run": run_id, "task": task, "result": result,
                                  "c": codec.checksum(result)}, use_bin_type=True)
            state.write_atomic(self.path(fp), data)
        except OSError:
            pass


def prune_cache(state_root: str, older_than: float, now: float, refused: Optional[List[str]] = None) -> List[str]:
    """Delete cache entries written more than `older_than` seconds ago; their paths.

    Only plain files in folders flow accepts are deleted: a folder that is a
    link (to somewhere else, whose files must not go) or another user's is
    left alone, and why goes to `refused`; a link among the entries is left too.
    """
    removed: List[str] = []
    root = os.path.join(state_root, "cache")
    try:
        state.check_private_dir(root)
        pipelines = sorted(os.listdir(root))
    except FileNotFoundError:
        return removed
    except OSError as e:
        if refused is not None:
            refused.append(f"{root}: not pruned: {e.strerror or e}")
        return removed
    for pipeline in pipelines:
        folder = os.path.join(root, pipeline)
        try:
            if stat.S_ISREG(os.lstat(folder).st_mode):
                continue  # a stray file: not a pipeline's entries
            state.check_private_dir(folder)
            names = sorted(os.listdir(folder))
        except OSError as e:
            if refused is not None:
                refused.append(f"{folder}: not pruned: {e.strerror or e}")
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and now - st.st_mtime > older_than:
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
    return removed
