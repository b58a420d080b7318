"""Executing one attempt: what a worker does, in whichever backend it lives.

An Attempt arrives as plain data (the callable's reference, arguments that
the runner already evaluated, the log path, the timeout); an Outcome leaves
as plain data (the encoded result, or an error record with the traceback as
text). Failures are values here: nothing raised inside a task crosses back.

An attempt's environment is the worker's less the variables in `hide` (the
sources of the secrets it does not use) plus its own `env`; every spelling of
every secret (`secrets`) is masked in its log and its error.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..lang.values import mask
from ..store import codec, failures
from . import capture

STDERR_TAIL = 2000  # characters of stderr kept in a failed shell task's error


@dataclass(frozen=True)
class Attempt:
    key: str  # the task instance: `extract`, `fetch[0]`
    number: int  # 1 for the first attempt
    kind: str  # run | sh | exec | glob (a `wait file`) | call (a child run: `flow run` of another pipeline)
    target: str = ""  # `module:attr` for run, the command line for sh
    argv: Tuple[str, ...] = ()  # for exec
    args: Tuple[Any, ...] = ()  # for run: positional (a hook's report)
    kwargs: Dict[str, Any] = field(default_factory=dict)  # for run
    env: Dict[str, str] = field(default_factory=dict)  # added to the environment
    cwd: str = "."
    sys_path: Tuple[str, ...] = ()
    log_path: str = os.devnull
    timeout: Optional[float] = None
    output: str = "text"
    results: str = "msgpack"
    secrets: Tuple[str, ...] = ()  # every spelling of every secret: masked in the log and the error
    hide: Tuple[str, ...] = ()  # environment variables this attempt must not see: secrets' sources it does not use
    shell: Tuple[str, ...] = ("/bin/sh", "-c")  # sh: what runs the command (the command is added last)
    sensor: bool = False  # a `wait` task's check: "not yet" ends it as NotYet, which is no failure
    child: str = ""  # call: the child run's id
    check: int = 0  # a sensor's check of this attempt after the first (a queueing backend starts each once)


@dataclass(frozen=True)
class Outcome:
    key: str
    number: int
    ok: bool
    result: Optional[bytes] = None  # codec.encode_result bytes
    error: Optional[Dict[str, str]] = None  # {"type", "message", "traceback"}
    started: float = 0.0
    finished: float = 0.0
    cpu: Optional[float] = None  # CPU seconds the attempt used (user + system), children included for sh/exec
    worker: Optional[str] = None  # where it ran, when that is another machine (a Dask worker's address)


@dataclass(frozen=True)
class Began:
    """A queueing backend's word that an attempt left its queue and started on a worker (at `t`, wall time).

    Backends that start an attempt when it is submitted never send one; for
    those that queue (Dask), an attempt is `queued` until this arrives, and
    its timeout counts from here.
    """

    key: str
    number: int
    t: float
    worker: Optional[str] = None  # where it runs (a Dask worker's address)


class TaskTimeout(Exception):
    """Raised inside an attempt that ran past its timeout."""


class Interrupted(BaseException):
    """The run is being stopped; the attempt ends and reports it."""


class NotYet(Exception):
    """A sensor's check found its condition not true yet: it is checked again later."""


class ChildRunFailed(Exception):
    """A `call` task's child run did not succeed."""


_OWN = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # flowdsl/: frames of flow's own


def _flow_frame(filename: str) -> bool:
    return filename.startswith((_OWN + os.sep, "flowdsl" + os.sep))  # bytecode in the zipapp names it relatively


def error_record(exc: BaseException, kind: Optional[str] = None) -> Dict[str, str]:
    """The error as data; its traceback starts at the task's own code (flow's frames above it are left
    out), and is empty when flow raised it (a shell command's status: the message says it all)."""
    tb = exc.__traceback__
    while tb is not None and _flow_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb)) if tb is not None else ""
    return {"type": kind or type(exc).__name__, "message": str(exc), "traceback": text}


def exception_names(exc: BaseException) -> List[str]:
    """Names and qualified names of the exception's class and its bases, for `retry ... on`."""
    names = []
    for cls in type(exc).__mro__:
        names.append(cls.__name__)
        names.append(f"{cls.__module__}.{cls.__qualname__}")
    return names


# ---- the attempt ---------------------------------------------------------------


_current_child: Optional[subprocess.Popen] = None
# Set by the in-process backends: told of every shell command's process group,
# so that the groups die with the runner (a worker process does this itself).
child_watch = None


def execute(attempt: Attempt, redirect_fds: bool = False) -> Outcome:
    """Run one attempt to its end and describe what happened."""
    started = time.time()
    cpu = _CpuClock(attempt.kind, redirect_fds)
    try:
        if attempt.kind == "run":
            # In a process of its own (a worker, or inline in the runner's
            # thread, which waits meanwhile) the process environment is the
            # attempt's for its duration; on a thread it is shared with the
            # runner and the other attempts, so it is left alone.
            hidden = _hide_environment(attempt.hide) if redirect_fds else {}
            try:
                result = _with_log(attempt, redirect_fds, _call)
            finally:
                os.environ.update(hidden)
            if attempt.sensor and not result:
                raise NotYet(f"`{attempt.target}` returned {_short(result)}")
        elif attempt.kind == "glob":
            result = _glob(attempt)
        elif attempt.kind == "call":
            result = _child_run(attempt)
        elif attempt.kind == "post":
            result = _post(attempt)
        else:
            result = _shell(attempt)
        data = codec.encode_result(result, attempt.results)
        return Outcome(attempt.key, attempt.number, True, result=data, started=started, finished=time.time(),
                       cpu=cpu.used())
    except Interrupted:  # the run asked it to stop; a KeyboardInterrupt the task raises is its own failure
        error = failures.error(failures.INTERRUPTED, "the run was interrupted")
    except TaskTimeout as e:
        error = failures.error(failures.TIMEOUT, str(e))
    except NotYet as e:
        error = failures.error(failures.NOT_YET, str(e))
    except ChildRunFailed as e:
        error = failures.error(failures.CHILD_RUN_FAILED, str(e))
    except codec.ResultTypeError as e:
        error = failures.error(failures.RESULT_TYPE, str(e))
    except BaseException as e:  # the task's own failure, SystemExit included
        error = error_record(e)
        error["names"] = exception_names(e)
    if attempt.secrets:
        error = {k: (mask(v, attempt.secrets) if isinstance(v, str) else v) for k, v in error.items()}
    return Outcome(attempt.key, attempt.number, False, error=error, started=started, finished=time.time(),
                   cpu=cpu.used())


def _hide_environment(names) -> Dict[str, str]:
    """Take `names` out of os.environ (and so out of what child processes inherit); what was taken."""
    taken = {}
    for name in names:
        value = os.environ.pop(name, None)
        if value is not None:
            taken[name] = value
    return taken


class _CpuClock:
    """CPU seconds an attempt uses, as a `getrusage` delta around it.

    A `run` task in a worker process of its own counts the whole process
    (RUSAGE_SELF: its threads too); in the runner's process (inline, thread)
    only the calling thread, where Linux can tell. `sh`/`exec` count the
    children reaped meanwhile (the command and what it waited for); under the
    thread executor, shell tasks ending at the same time share that figure.
    """

    def __init__(self, kind: str, own_process: bool) -> None:
        import resource

        if kind != "run":
            self.who = resource.RUSAGE_CHILDREN
        elif own_process:
            self.who = resource.RUSAGE_SELF
        else:
            self.who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
        self.start = self.now()

    def now(self) -> float:
        import resource

        r = resource.getrusage(self.who)
        return r.ru_utime + r.ru_stime

    def used(self) -> Optional[float]:
        return round(max(0.0, self.now() - self.start), 4)


def _import(target: str, sys_path) -> Any:
    for d in reversed(sys_path):
        if d not in sys.path:
            sys.path.insert(0, d)
    module_name, attr = target.split(":", 1)
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _await(value: Any) -> Any:
    if inspect.isawaitable(value):
        async def wait():
            return await value
        return asyncio.run(wait())
    return value


def _call(attempt: Attempt) -> Any:
    if os.getcwd() != attempt.cwd:  # tasks run in the folder of their .flow file
        os.chdir(attempt.cwd)
    obj = _import(attempt.target, attempt.sys_path)
    kwargs = attempt.kwargs
    if any(map(codec.deferred, kwargs.values())):  # results passed whole: decoded here, not in the runner
        kwargs = {k: codec.materialize(v, attempt.results == "pickle") for k, v in kwargs.items()}
    if not inspect.isclass(obj):
        return _await(obj(*attempt.args, **kwargs))
    # A class: instantiate with the arguments, then the lifecycle methods it defines.
    instance = obj(**kwargs)

    def hook(name: str, *args) -> None:
        method = getattr(instance, name, None)
        if callable(method):
            _await(method(*args))

    try:
        try:
            hook("on_create")
            result = _await(instance.run())
        except Interrupted:
            hook("on_abort")
            raise
        except BaseException as e:
            hook("on_failure", e)
            raise
        hook("on_success")
        return result
    finally:
        hook("on_destroy")


def _with_log(attempt: Attempt, redirect_fds: bool, fn) -> Any:
    """Run fn(attempt) with its output going to the attempt's log.

    In a worker process and the inline executor, at the file-descriptor
    level (C code and child processes too); on a thread, Python-level output,
    per thread.
    """
    log = capture.LazyLog(attempt.log_path, attempt.secrets)
    if redirect_fds:
        with capture.FdCapture(log):
            return fn(attempt)
    capture.ThreadStreams.begin(log)
    try:
        return fn(attempt)
    finally:
        capture.ThreadStreams.end()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _glob(attempt: Attempt) -> List[str]:
    """`wait file "PATTERN"`: the sorted matching paths, relative as written (to the pipeline's folder)."""
    import glob

    pattern = attempt.target
    absolute = os.path.isabs(pattern)
    full = pattern if absolute else os.path.join(glob.escape(attempt.cwd), pattern)
    found = glob.glob(full, recursive=True)
    if not absolute:
        cut = len(attempt.cwd.rstrip(os.sep)) + 1
        found = [p[cut:] for p in found]
    if not found:
        raise NotYet(f"no file matches {pattern}")
    return sorted(found)


POST_TIMEOUT = 10.0  # seconds a webhook may take to answer (cli.md)


def _post(attempt: Attempt) -> str:
    """`on ... post "URL"`: the report as JSON; a failure unless the answer is 2xx within POST_TIMEOUT."""
    import urllib.error
    import urllib.request

    body = attempt.args[0].encode("utf-8")
    request = urllib.request.Request(attempt.target, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "flow"})
    shown = mask(attempt.target, attempt.secrets)
    log = capture.LazyLog(attempt.log_path, attempt.secrets)
    try:
        log.write(f"POST {shown} ({len(body)} bytes)\n".encode())
        try:
            with urllib.request.urlopen(request, timeout=min(POST_TIMEOUT, attempt.timeout or POST_TIMEOUT)) as r:
                status, answer = r.status, r.read(2000)
        except urllib.error.HTTPError as e:
            status, answer = e.code, e.read(2000) if e.fp is not None else b""
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise RuntimeError(f"POST {shown}: {reason}") from None
        text = mask(answer.decode("utf-8", "replace"), attempt.secrets)
        log.write(f"answer {status}: {text}\n".encode())
    finally:
        log.close()
    if not 200 <= status < 300:
        raise RuntimeError(f"POST {shown}: the answer was {status}" + (f": {text[:200]}" if text else ""))
    return text


def _child_run(attempt: Attempt) -> Dict[str, Any]:
    """`call`: the child run's report read from its `--json`; the result maps its tasks to their results."""
    status, stdout, stderr_tail = _process(attempt, list(attempt.argv))
    try:
        report = json.loads(stdout.decode("utf-8", "replace"))
    except ValueError:
        report = None
    if not isinstance(report, dict) or not isinstance(report.get("tasks"), dict):
        tail = mask(stderr_tail.decode("utf-8", "replace").strip()[-STDERR_TAIL:], attempt.secrets)
        raise ChildRunFailed(f"the child run {attempt.child} could not run (exit status {status})"
                             + (f":\n{tail}" if tail else ""))
    tasks = report["tasks"]
    if report.get("status") != "success":
        failed = [k for k, t in tasks.items() if isinstance(t, dict) and t.get("status") == "failed" and "[" not in k]
        why = f"its tasks {', '.join(failed)} failed" if failed else (report.get("reason") or report.get("status"))
        raise ChildRunFailed(f"the child run {attempt.child} ended {report.get('status')}: {why}")
    return {k: t.get("result") for k, t in tasks.items() if "[" not in k and isinstance(t, dict)}


def _shell(attempt: Attempt) -> Any:
    """sh or exec in its own process group, killed whole on timeout or abort.

    stdout and stderr are read through pipes: both go to the log (secrets
    masked), stdout is kept for the result and stderr's tail for the error.
    When the command exits, whatever it left running in its group is stopped.
    """
    argv = list(attempt.shell) + [attempt.target] if attempt.kind == "sh" else list(attempt.argv)
    status, stdout, stderr_tail = _process(attempt, argv)
    if status != 0:
        tail = mask(stderr_tail.decode("utf-8", "replace").strip()[-STDERR_TAIL:], attempt.secrets)
        what = f"exit status {status}" if status > 0 else f"killed by signal {-status}"
        name = "sh" if attempt.kind == "sh" else argv[0]
        if attempt.sensor and status > 0:
            raise NotYet(f"`{attempt.target}` exited with status {status}")
        raise ShellError(f"`{name}` failed with {what}" + (f"; stderr ends with:\n{tail}" if tail else ""), status)
    text = stdout.decode("utf-8", "replace")
    if not text.strip():
        # no output: "" whatever the output mode (language reference, section 3), but `lines` of nothing
        # is no lines (section 7)
        return [] if attempt.output == "lines" else ""
    if attempt.output == "json":
        try:
            return json.loads(text)
        except ValueError as e:
            raise ValueError(f"`output json`: the command's output is not JSON ({e})") from None
    if attempt.output == "lines":
        return text.splitlines()
    return text.strip()


def _process(attempt: Attempt, argv: List[str]) -> Tuple[int, bytes, bytes]:
    """Run argv in its own process group with the attempt's environment: (exit status, stdout, stderr tail)."""
    global _current_child
    hide = set(attempt.hide)
    env = {k: v for k, v in os.environ.items() if k not in hide} if hide else dict(os.environ)
    env.update(attempt.env)
    log = capture.LazyLog(attempt.log_path, attempt.secrets)
    try:
        try:
            child = subprocess.Popen(argv, cwd=attempt.cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise RuntimeError(f"cannot start `{argv[0]}`: {e.strerror or e}") from None
        _current_child = child
        if child_watch is not None:
            child_watch.add(child.pid)
        try:
            stdout, stderr_tail = _drain(child, log)
        finally:
            _current_child = None
            if attempt.kind == "call" and child.poll() is None:
                stop_gently(child)  # a child run, stopped: it ends interrupted, resumable
            kill_group(child)
            if child_watch is not None:
                child_watch.remove(child.pid)
    finally:
        log.close()
    return child.returncode, stdout, stderr_tail


def _drain(child: subprocess.Popen, log: capture.LazyLog) -> Tuple[bytes, bytes]:
    """Copy the child's output to the log until it exits; (stdout, stderr tail).

    The attempt's timeout is not looked at here: the runner's deadline ends
    the attempt through its backend's `kill` (a worker process dies with its
    command's group; on a thread, TaskTimeout is raised into this loop).
    """
    import select

    out_fd, err_fd = child.stdout.fileno(), child.stderr.fileno()
    open_fds = {out_fd, err_fd}
    stdout: List[bytes] = []
    stderr_tail = b""
    try:
        exit_fd = os.pidfd_open(child.pid)  # Linux 5.3+: the child's exit is readable
    except (AttributeError, OSError):
        exit_fd = None
    try:
        while True:
            if child.poll() is not None and (not open_fds or exit_fd is None or _drained(open_fds)):
                break
            watch = [fd for fd in (out_fd, err_fd) if fd in open_fds] + ([exit_fd] if exit_fd is not None else [])
            # Come back to Python now and then: on a thread, that is where a
            # timeout or an interrupt raised into it is delivered.
            ready, _, _ = select.select(watch, [], [], 0.05 if exit_fd is None else 0.25)
            for fd in ready:
                if fd == exit_fd:
                    continue
                data = os.read(fd, 65536)
                if not data:
                    open_fds.discard(fd)
                    continue
                log.write(data)
                if fd == out_fd:
                    stdout.append(data)
                else:
                    stderr_tail = (stderr_tail + data)[-STDERR_TAIL * 4:]
            if exit_fd in ready and not _readable(open_fds):
                child.wait()
                break
    finally:
        if exit_fd is not None:
            os.close(exit_fd)
    return b"".join(stdout), stderr_tail


def _readable(fds) -> bool:
    import select

    return bool(fds) and bool(select.select(list(fds), [], [], 0)[0])


def _drained(fds) -> bool:
    return not _readable(fds)


class ShellError(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return (ShellError, (str(self), self.status))


def kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        child.wait(timeout=5)
    except Exception:
        pass


def stop_gently(child: subprocess.Popen, grace: float = 4.0) -> None:
    """SIGTERM to the group, then up to `grace` seconds for it to end (a child run journals its end)."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=grace)
    except (ProcessLookupError, PermissionError, subprocess.TimeoutExpired):
        pass


def kill_current_child() -> None:
    child = _current_child
    if child is not None:
        kill_group(child)


def format_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    return f"{seconds:g}s"
