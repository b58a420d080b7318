"""Starting runs away from the command that decided on them.

`flow run --detach`, `flow tick` and `flow backfill` open a run here (its
folder, journal and first record exist before anything forks) and fork it:
the child, in its own session unless told otherwise, writes its output to
`output.log` in the run's folder and runs to the end. The child inherits the
journal's lock (one open file, two descriptors), so the run is never seen as
dead between the fork and the parent's exit.

A run may have to wait before it starts: for the runs it queues behind
(`overlap queue`), or for the runs it replaces to stop (`overlap replace`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

REPLACE_GRACE = 30.0  # seconds a replaced run gets to stop after SIGTERM, before SIGKILL


class CannotStart(Exception):
    """The run could not be opened (its params, the state folder, the executor)."""


def open_run(program, *, trigger: str, logical_date, state_dir: Optional[str], run_id: Optional[str] = None,
             resume: bool = False):
    """A Runner for a whole-pipeline run, opened (`resume`: the existing run `run_id`).

    A run that cannot start (a param's secret unset, its Dask cluster unreachable) is opened all the
    same, with `start_error` saying why: it ends failed at once, firing its failure hooks where they
    can run, and stays resumable. Raises CannotStart only when no run can be made at all (the run to
    resume is alive, its journal is damaged, the state folder cannot be written).
    """
    from ..lang.planner import make_plan
    from ..lang.values import EvalError
    from ..run.driver import Runner, RunOptions
    from ..run.progress import PlainReporter
    from ..store.journal import Busy, JournalError

    executor = program.pipeline.executor.kind if program.pipeline.executor else "process"
    options = RunOptions(executor=executor, logical_date=logical_date, trigger=trigger,
                         state_dir=state_dir, run_id=run_id, resume=resume, start_anyway=True)
    if executor == "dask":
        try:
            options.dask_address, options.dask_timeout = dask_settings(program.pipeline)
        except CannotStart as e:  # the slot still becomes a run: failed, saying why, resumable
            options.start_error = str(e)
    runner = Runner(make_plan(program, []), options, PlainReporter(sys.stdout))
    try:
        runner.open()
    except Busy:
        raise CannotStart(f"run {run_id} is still running") from None
    except (JournalError, EvalError) as e:
        raise CannotStart(str(e)) from None
    except OSError as e:
        raise CannotStart(f"cannot create the run: {e.strerror or e}") from None
    return runner


def dask_settings(pipeline) -> Tuple[str, float]:
    """(address, connect timeout): FLOW_DASK_ADDRESS and FLOW_DASK_TIMEOUT (the crontab's), else the pipeline's
    address and 10 s; checked now, connected after the fork."""
    from ..lang.addresses import AddressError
    from ..lang.addresses import dask_address as normalise
    from ..run import dask
    from ..run.daskconfig import address_source, timeout

    found = address_source(pipeline)
    if found is None:  # `executor dask` with no address, and no FLOW_DASK_ADDRESS
        raise CannotStart(f"the pipeline {pipeline.name} runs on Dask but names no scheduler: set FLOW_DASK_ADDRESS")
    text, where = found
    try:
        address = normalise(text, bare=True)
    except AddressError as e:
        raise CannotStart(f"{where}: {e}") from None
    try:
        seconds = timeout()  # FLOW_DASK_TIMEOUT, as for `flow run`
    except ValueError as e:
        raise CannotStart(str(e)) from None
    try:
        dask.import_distributed()
        dask.probe(address, seconds)
    except dask.DaskUnavailable as e:
        raise CannotStart(str(e)) from None
    return address, seconds


def start(runner, *, session: bool = True, before: Optional[Callable] = None,
          close: Iterable[int] = (), quiet: bool = False, verbose: bool = False) -> int:
    """Fork the opened run; the parent gets the child's pid and gives up the journal.

    The child closes `close` (descriptors it must not keep, such as a lock),
    calls `before(reporter)` and runs; its exit code is the run's.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        # the run's own pid, on disk before anyone can look (a tick holds its lock until its runs
        # are started): what `overlap replace` signals
        runner.state.info["pid"] = pid
        runner.write_summary()
        runner.journal.release()
        return pid
    from ..run.exitcodes import EXIT_BUG, EXIT_FAILED, EXIT_INTERRUPTED, exit_code, report_bug
    from ..run.progress import PlainReporter
    from ..store.state import open_file

    code = EXIT_BUG
    try:
        for fd in close:
            try:
                os.close(fd)
            except OSError:
                pass
        if session:
            os.setsid()  # no terminal, no hangup when the shell or cron job that started it goes
        null = os.open(os.devnull, os.O_RDONLY)
        try:  # never through a link (a resumed run's folder was checked when it was opened: this is the last guard)
            log = open_file(os.path.join(runner.run_folder, "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        except OSError as e:
            print(f"flow: cannot start the run {runner.run_values['id']}: {e.strerror or e}", file=sys.stderr)
            code = EXIT_FAILED
            return 0  # never returns: the `finally` below ends this child with `code`
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        runner.reporter = PlainReporter(sys.stdout, quiet, verbose)
        runner.state.info["pid"] = os.getpid()  # what `overlap replace` signals, even while this run waits
        runner.write_summary()
        if before is not None:
            before(runner.reporter)
        report = runner.execute()
        code = exit_code(report["status"])
    except BaseException as e:  # noqa: BLE001  (a detached run has nobody else to tell)
        # the traceback goes beside the run's output.log, where whoever looks at the run will find it
        code = report_bug(e, runner.run_folder) if not isinstance(e, (KeyboardInterrupt, SystemExit)) \
            else EXIT_INTERRUPTED
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def status_of(wait_status: int) -> str:
    """A forked run's final status, from its exit code (see `run.exitcodes.exit_code`)."""
    return {0: "success", 130: "interrupted"}.get(os.waitstatus_to_exitcode(wait_status), "failed")


def wait(pid: int) -> str:
    """Wait for a run that `start` forked; its final status."""
    return status_of(os.waitpid(pid, 0)[1])


def live_runs(state_root: str, pipeline: str) -> List[str]:
    """The runs of `pipeline` whose runner is alive, oldest first."""
    from ..store import history, journal, state

    live = [run_id for run_id in history.run_ids(state_root) if history.pipeline_of(run_id) == pipeline
            and journal.is_live(state.journal_path(state.run_dir(state_root, run_id)))]
    return live[::-1]


def wait_for(state_root: str, run_ids: Sequence[str]) -> Callable:
    """A `before` that waits until each of `run_ids` has ended (`overlap queue`)."""
    def before(reporter) -> None:
        from ..store import journal, state

        for run_id in run_ids:
            reporter.note(f"waiting for {run_id} to end (overlap queue)")
            while journal.is_live(state.journal_path(state.run_dir(state_root, run_id))):
                time.sleep(0.2)
    return before


def stop_runs(state_root: str, run_ids: Sequence[str]) -> Callable:
    """SIGTERM each run now; a `before` that waits for them to stop (`overlap replace`).

    A replaced run ends `interrupted` and can be resumed. One that has not
    stopped REPLACE_GRACE seconds later is killed.
    """
    from ..store import history

    pids = {}
    for run_id in run_ids:
        pid = history.summary(state_root, run_id).get("pid")
        if isinstance(pid, int) and pid > 1 and pid != os.getpid():
            pids[run_id] = pid
            _signal(pid, signal.SIGTERM)

    def before(reporter) -> None:
        from ..store import journal, state

        for run_id in run_ids:
            reporter.note(f"stopping {run_id} (overlap replace)")
            deadline = time.monotonic() + REPLACE_GRACE
            path = state.journal_path(state.run_dir(state_root, run_id))
            while journal.is_live(path):
                if time.monotonic() > deadline and run_id in pids:
                    _signal(pids.pop(run_id), signal.SIGKILL)
                time.sleep(0.1)
    return before


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
