"""`flow run`: params, targets, resume and --from, the dry run, detaching; the run itself is run.driver's."""

from __future__ import annotations

import os
import sys
from typing import Sequence, Tuple

from ..run.exitcodes import EXIT_FAILED, EXIT_OK, exit_code
from .inputs import UsageError, load_checked


def parse_param(text: str) -> Tuple[str, str]:
    """`k=v` split; the value is typed later, by the kind of the param's default (lang.paramtypes)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise UsageError(f"--param takes NAME=VALUE, not `{text}`")
    return key.strip(), raw


def open_waiting(runner, reporter, poll: float = 0.5) -> None:
    """Open a call's child run; one still running (its parent was killed, and the child, in a session of its
    own, went on) is waited for, then resumed: what it finished is kept. The call's `timeout` bounds the wait."""
    import time

    from ..store.journal import Busy

    said = False
    while True:
        try:
            return runner.open()
        except Busy:
            if not said:
                reporter.note(f"the run {runner.options.run_id} is still running (started by an earlier session of "
                              "its parent): waiting for it to end")
                said = True
            time.sleep(poll)


def called_run(args, run_id: str, state_root: str) -> dict:
    """`--call-run ID` (given by a `call` task, never by hand): this run is that child run, resumed when an
    earlier session of the parent started it. Its params come as JSON in FLOW_CALL_PARAMS; none when resumed."""
    import json

    from ..run.actions import CALL_PARAMS
    from ..store import state

    text = os.environ.pop(CALL_PARAMS, None)  # not for the child run's own tasks
    if not state.is_run_id(run_id):
        raise UsageError(f"--call-run: `{run_id}` is not a run id")
    if os.path.isdir(state.run_dir(state_root, run_id)):
        args.resume, args.logical_date = run_id, None
        return {}
    try:
        values = json.loads(text) if text else {}
    except ValueError as e:
        raise UsageError(f"{CALL_PARAMS}: not JSON ({e})") from None
    if not isinstance(values, dict):
        raise UsageError(f"{CALL_PARAMS}: not a map of params")
    return values


def typed_params(program, texts, given_values):
    """Each `--param` text and API value typed by its param's default (language reference, section 7)."""
    from ..lang import paramtypes

    defaults = {e.key: e.value for e in program.pipeline.params.entries} if program.pipeline.params else {}
    out = {k: paramtypes.from_text(k, paramtypes.kind_of(defaults[k]), v) for k, v in texts.items()}
    out.update({k: paramtypes.from_value(k, paramtypes.kind_of(defaults[k]), v) for k, v in given_values.items()})
    return out


def not_utf8(text: str) -> int:
    """0 if `text` is UTF-8 text, else the position (from 1) of its first character that is not.

    Python decodes the command line and the environment with surrogateescape:
    each byte that is not UTF-8 arrives as a lone surrogate, which cannot be
    written anywhere (journal, report, log) as text.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start + 1
    return 0


def check_params_text(given: Sequence[str]) -> None:
    """Each `--param` is UTF-8 text; else a usage error naming the param, not quoting the value (it may be a secret)."""
    for text in given:
        key, sep, raw = text.partition("=")
        if not_utf8(key):
            raise UsageError(f"--param `{key}`: the name is not valid UTF-8")
        at = not_utf8(raw) if sep and key.strip().isidentifier() else 0  # else parse_param says NAME=VALUE
        if at:
            raise UsageError(f"--param `{key.strip()}`: the value is not valid UTF-8 (at character {at}); "
                             "a param is text")


def env_calls(nodes):
    """Every env() and secret() call inside these IR nodes."""
    from ..lang import ir
    from ..lang.records import fields, is_record

    stack = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ir.EnvCall):
            yield node
        if isinstance(node, (list, tuple)):
            stack.extend(node)
        elif is_record(node) and not isinstance(node, ir.Span):
            stack.extend(getattr(node, f) for f in fields(node))


def check_environment(program, plan, overrides) -> None:
    """Each variable that the run's env() and secret() calls read is UTF-8 text, else a usage error.

    Checked before the run is opened, so such a run writes nothing: its params
    (not given by --param), its tasks and its hooks are looked at.
    """
    bad = {}
    for name, value in os.environ.items():
        at = not_utf8(value)
        if at:
            bad[name] = at
    if not bad:
        return  # the usual case: no walk through the program
    params = program.pipeline.params
    nodes = [e.value for e in params.entries if e.key not in overrides] if params else []
    nodes += [tp.task for tp in plan.tasks.values()] + list(program.pipeline.hooks)
    for call in env_calls(nodes):
        at = bad.get(call.name)
        if at:
            kind = "secret" if call.secret else "environment variable"
            raise UsageError(f"{kind} `{call.name}` (read at {call.span}) is not valid UTF-8 (at character {at}); "
                             "set it to UTF-8 text")


def check_file(path: str) -> None:
    """FILE names a regular .flow file (never opened here: a FIFO would block)."""
    from ..lang.loader import refusal

    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"no such file: {path}") from None
    except OSError:
        pass  # the loader says why it cannot be read
    if not_utf8(path):
        raise UsageError(f"the file's name `{path}` is not valid UTF-8; rename it")
    problem = refusal(path)
    if problem is not None and problem.code == "E012":
        raise UsageError(problem.message)


def dry_run_lines(plan, program, targets, keeping=None) -> list:
    """The plan in words: what runs in which order, and why.

    `keeping` (a resume or a `--from` run): (the run whose results may be
    kept, its state, the tasks that run again whatever they left); each
    task then says whether it is kept or runs.
    """
    from ..lang import ir
    from ..lang.planner import target_instances
    from .drawing import describe_action, describe_expr

    limited = target_instances(targets)

    lines = []
    selected = set(plan.tasks)
    if keeping is not None:
        from ..store.state import SUCCEEDED

        source, earlier, forced = keeping
        done = {k for k, t in earlier.tasks.items() if t.status in SUCCEEDED}
        lines.append(f"  (keeping what run {source} finished: {len({k.split('[')[0] for k in done})} "
                     f"task{'s' * (len(done) != 1)} succeeded there)")
    for i, (name, tp) in enumerate(plan.tasks.items(), 1):
        task = tp.task
        when = tp.settings.when.value if tp.settings.when else "success"
        ups = ", ".join(tp.upstream)
        why = {"success": f"after {ups} succeed" if ups else "at the start",
               "failure": f"only if one of {ups} fails" if ups else "never: no upstream can fail",
               "always": f"once {ups} finish, whatever happened" if ups else "at the start",
               "none_failed": f"once {ups} finish, if none failed" if ups else "at the start"}[when]
        if task.condition is not None:
            why += f", if {task.condition.text}" + (" (per item)" if task.foreach is not None else "")
        extra = []
        if task.every is not None or isinstance(task.action, ir.WaitAction):
            every = task.every.text if isinstance(task.every, ir.Duration) else "1m"
            extra.append(f"checks every {every} until ready")
        if task.foreach is not None:
            extra.append(f"once per item of {describe_expr(task.foreach.items)}")
            if name in limited:
                extra.append("only " + ", ".join(f"{name}[{i}]" for i in sorted(limited[name])) + " (--target)")
        r = tp.settings.retry
        if r is not None and isinstance(r.count.value, int) and r.count.value:
            extra.append(f"up to {r.count.value} retries")
        if tp.settings.timeout is not None:
            extra.append(f"timeout {tp.settings.timeout.text}"
                         + (" for the whole wait" if isinstance(task.action, ir.WaitAction) else ""))
        detail = f" ({'; '.join(extra)})" if extra else ""
        if keeping is not None:
            if name in forced or any(k.startswith(name + "[") for k in forced):
                detail += " — runs again (--from)"
            elif name in done or any(k.startswith(name + "[") for k in done):
                detail += " — kept, unless its definition, source or inputs changed or an upstream runs"
            else:
                detail += " — runs (it did not succeed there)"
        lines.append(f"{i:>3}. {name}: {describe_action(task)} — runs {why}{detail}")
    for task in program.tasks:
        if task.name not in selected:
            lines.append(f"  -  {task.name}: does not run (not needed by {', '.join(targets)})")
    return lines


LATEST = "\0latest"  # `--resume` given without a run id


def check_names(flag: str, given: Sequence[str], names: Sequence[str], file: str, foreach=()) -> None:
    """Every task named by --target or --from exists; else a usage error with a suggestion.

    Either may also name one instance of a foreach task (`fetch[2]`): `foreach` holds those tasks.
    """
    from ..lang.diagnostics import did_you_mean
    from ..lang.planner import split_instance

    for t in given:
        base, index = split_instance(t)
        if index is not None:
            if base not in foreach:
                what = "names no task" if base not in names else "is not a foreach task"
                raise UsageError(f"{flag} `{t}`: `{base}` {what} of {file}")
            continue
        if t not in names:
            hint = did_you_mean(t, names)
            raise UsageError(f"{flag} `{t}` names no task of {file}" + (f"; {hint}" if hint else ""))


def tagged(program, tags: Sequence[str], file: str) -> list:
    """The tasks carrying any of `tags` (their own `tags`, else the defaults'); a tag on none is a usage error."""
    defaults = program.pipeline.defaults.tags
    found = []
    for tag in tags:
        these = [t.name for t in program.tasks if tag in {n.name for n in (t.settings.tags or defaults)}]
        if not these:
            raise UsageError(f"--tag `{tag}` is on no task of {file}")
        found += [name for name in these if name not in found]
    return found


def forced_by_from(graph, plan_tasks, given: Sequence[str]) -> set:
    """What `--from` runs again: each named task and what depends on it; for an instance `T[i]`, that
    instance (by its key) and what depends on T."""
    from ..lang.planner import downstream_closure, split_instance

    forced = set()
    for t in given:
        base, index = split_instance(t)
        if index is None:
            forced |= downstream_closure(graph, [t])
        else:
            forced.add(t)
            forced |= downstream_closure(graph, [base]) - {base}
    return forced & (set(plan_tasks) | {t for t in given if "[" in t})


def resume_options(args, program, state_root: str, options) -> None:
    """--resume [RUN_ID]: the run to continue, with its own params, targets and logical date."""
    from ..lang.timeutil import parse_iso
    from ..store import codec, history, journal, state

    if args.target or args.logical_date:
        raise UsageError("--resume continues a run with the params, targets and logical date it started with; "
                         "drop --target and --logical-date")
    name = program.pipeline.name
    try:
        run_id = history.resolve(state_root, None if args.resume == LATEST else args.resume, name)
    except history.NoSuchRun as e:
        raise UsageError(f"nothing to resume: {e}") from None
    if history.pipeline_of(run_id) != name:
        raise UsageError(f"run {run_id} is not a run of {name}")
    head = journal.head(state.journal_path(state.run_dir(state_root, run_id)))
    options.run_id, options.resume = run_id, True
    from ..run.actions import SECRET_GIVEN

    kept = codec.unpack(head["overrides"]) if head.get("overrides") else {}
    secret = [k for k, v in kept.items() if v == SECRET_GIVEN]  # not kept: a resume takes them again, and only them
    extra = [k for k in options.params if k not in secret]
    if extra:
        raise UsageError("--resume continues a run with the params it started with; drop "
                         + ", ".join(f"--param {k}" for k in extra))
    missing = [k for k in secret if k not in options.params]
    if missing:
        raise UsageError(f"run {run_id} was started with a secret value for "
                         + ", ".join(f"--param {k}" for k in missing) + ", which flow does not keep; give it "
                         f"again: --resume {run_id} " + " ".join(f"--param {k}=..." for k in missing))
    options.params = dict(kept, **options.params)
    options.targets = list(head.get("targets") or ())
    options.trigger = head.get("trigger", "manual")
    options.logical_date = parse_iso(head["logical_date"])
    if head.get("from_run"):  # a --from run: what it has not yet taken from its earlier run, it still may
        options.earlier_forced = set(head.get("forced") or ())
        try:
            options.earlier = history.load(state.run_dir(state_root, head["from_run"]))
            options.earlier_id = head["from_run"]
        except (journal.JournalError, OSError):
            pass  # that run was pruned: what this run did not finish runs


def earlier_run(program, state_root: str, options, say) -> None:
    """--from without --resume: keep what the latest run of the pipeline finished."""
    from ..store import history, journal, state

    run_id = history.latest(state_root, program.pipeline.name)
    if run_id is None:
        say(f"no earlier run of {program.pipeline.name} in {state_root}: every task runs")
        return
    try:
        options.earlier = history.load(state.run_dir(state_root, run_id))
        options.earlier_id = run_id
    except journal.JournalError as e:
        say(f"cannot keep results of {run_id} ({e}): every task runs")


class RunRefused(Exception):
    """The run cannot be opened (exit 1): its file has errors (already printed), its journal is damaged, ..."""


class DryRun:
    def __init__(self, plan, program, targets, keeping=None) -> None:
        self.plan, self.program, self.targets, self.keeping = plan, program, targets, keeping


def open_from_args(args, reporter):
    """The run `args` describe, opened: (runner, keep_checked), or a DryRun.

    Raises UsageError (exit 2) and RunRefused (exit 1). Shared by `flow run`
    and the Python API (`flowdsl.run`), whose params come as Python values
    (`args.values`) rather than `--param` text.
    """
    from ..lang.planner import make_plan
    from ..store.state import state_dir

    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.detach and args.dry_run:
        raise UsageError("--detach and --dry-run do not go together")
    check_params_text(args.param)
    from ..lang.values import read_env_file

    for key, value in read_env_file(args.env_file).items() if getattr(args, "env_file", None) else ():
        os.environ.setdefault(key, value)  # the process's own environment wins over the file
    texts = dict(parse_param(p) for p in args.param)
    given_values = dict(getattr(args, "values", None) or {})
    check_file(args.file)
    state_root = state_dir(args.file, args.state_dir)
    called = getattr(args, "call_run", None)
    if called is not None:
        given_values.update(called_run(args, called, state_root))
    overrides = dict(texts, **given_values)
    program, keep_checked = load_checked(args.file, state_root=state_root)
    if program is None:
        raise RunRefused(None)  # its diagnostics are printed
    names = [t.name for t in program.tasks]
    check_names("--target", args.target, names, args.file, {t.name for t in program.tasks if t.foreach})
    check_names("--from", args.from_, names, args.file, {t.name for t in program.tasks if t.foreach})
    if getattr(args, "tag", None):
        if args.resume is not None:
            raise UsageError("--resume continues a run with the targets it started with; drop --tag")
        args.target = list(args.target) + [n for n in tagged(program, args.tag, args.file) if n not in args.target]
    declared = [e.key for e in program.pipeline.params.entries] if program.pipeline.params else []
    for key in overrides:
        if key not in declared:
            from ..lang.diagnostics import did_you_mean

            hint = did_you_mean(key, declared) or (
                "declared: " + ", ".join(declared) if declared else "it declares none")
            raise UsageError(f"--param `{key}` is not a param of {program.pipeline.name}; {hint}")
    overrides = typed_params(program, texts, given_values)
    executor, address = choose_executor(args.executor, args.dask_address, program.pipeline)
    timeout = dask_timeout(args.dask_timeout) if executor == "dask" else None  # a local run ignores Dask settings
    logical = None
    if args.logical_date:
        from ..lang.timeutil import parse_iso

        try:
            logical = parse_iso(args.logical_date)
        except ValueError as e:
            raise UsageError(f"--logical-date: {e}") from None
    from ..lang.values import EvalError, MissingSecret
    from ..run.driver import Runner, RunOptions
    from ..store.journal import Busy, JournalError

    options = RunOptions(params=overrides, targets=args.target, executor=executor, workers=args.workers,
                         logical_date=logical, state_dir=args.state_dir, dask_address=address)
    if called is not None and args.resume is None:
        options.run_id, options.trigger = called, "call"
    if timeout is not None:
        options.dask_timeout = timeout
    try:
        if args.resume is not None:
            resume_options(args, program, state_root, options)
        plan = make_plan(program, options.targets)
        check_environment(program, plan, options.params)
        options.forced = forced_by_from(plan.graph, plan.tasks, args.from_) if args.from_ else set()
        if args.from_ and args.resume is None:
            earlier_run(program, state_root, options, reporter.note)
    except JournalError as e:
        raise RunRefused(str(e)) from None
    if args.dry_run:
        keeping = None
        if args.resume is not None:
            from ..store import history, state

            own = history.load(state.run_dir(state_root, options.run_id))
            keeping = (options.run_id, own, options.forced)
        elif options.earlier is not None:
            keeping = (options.earlier_id, options.earlier, options.forced)
        return DryRun(plan, program, options.targets, keeping)
    runner = Runner(plan, options, reporter)
    if executor == "dask":
        options.backend = connect_dask(address, timeout, runner.sys_path, runner.resources, detached=args.detach,
                                       data=runner.shipped)
    try:
        open_waiting(runner, reporter) if called is not None else runner.open()
    except Busy:
        raise UsageError(f"run {options.run_id} is still running; wait for it, or stop it first") from None
    except MissingSecret as e:  # a param's secret: nothing could run (cli.md: a usage error)
        raise UsageError(str(e)) from None
    except (JournalError, EvalError) as e:
        raise RunRefused(str(e)) from None
    except FileNotFoundError as e:
        if options.resume:  # `flow prune` deleted it after it was found (prune takes the journal's lock first)
            raise RunRefused(f"run {options.run_id} was deleted while it was being resumed") from None
        raise RunRefused(f"cannot start the run in {state_root}: {e.strerror or e}") from None
    except OSError as e:  # the state folder cannot be written (a full disk, permissions)
        raise RunRefused(f"cannot start the run in {state_root}: {e.strerror or e}") from None
    return runner, keep_checked


def cmd_run(args) -> int:
    import json

    from ..run.progress import make_reporter

    out = sys.stderr if args.json else sys.stdout
    reporter = make_reporter(out, args.quiet, args.verbose)
    try:
        opened = open_from_args(args, reporter)
    except RunRefused as e:
        if e.args[0]:
            print(f"flow run: error: {e.args[0]}", file=sys.stderr)
        return EXIT_FAILED
    if isinstance(opened, DryRun):
        plan, program = opened.plan, opened.program
        lines = dry_run_lines(plan, program, opened.targets, opened.keeping)
        if args.json:
            print(json.dumps({"pipeline": program.pipeline.name, "order": list(plan.tasks), "plan": lines}, indent=2))
        else:
            print(f"pipeline {program.pipeline.name}: {len(plan.tasks)} of {len(program.tasks)} tasks would run")
            print("\n".join(lines))
        return EXIT_OK
    runner, keep_checked = opened
    if keep_checked is not None:
        keep_checked(background=True)  # the next run (a resume above all) skips parsing and checking
    if args.detach:
        return detach(runner, args)
    saved_stdout = None
    if args.json:
        # stdout is the report's alone: what anything else writes to fd 1 during
        # the run (a child process of a thread-executor task) goes to stderr
        sys.stdout.flush()
        saved_stdout = os.dup(1)
        os.dup2(2, 1)
    try:
        report = runner.execute(full=args.json)
    finally:
        if saved_stdout is not None:
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
    if args.json:
        print(json.dumps(report, indent=2))
    return exit_code(report["status"])


EXECUTORS = ("process", "thread", "inline", "dask")


def choose_executor(given, dask_address, pipeline) -> Tuple[str, object]:
    """(executor, normalised Dask address or None) from --executor, --dask-address, FLOW_DASK_ADDRESS, the file.

    The command line comes first, then FLOW_DASK_ADDRESS (the crontab's way to
    name the cluster), then the pipeline's own address.
    """
    from ..lang.addresses import AddressError
    from ..lang.addresses import dask_address as normalise

    address = where = None
    if given and "://" in given:
        executor, address, where = "dask", given, "--executor"
    elif given:
        if given not in EXECUTORS:
            raise UsageError(f"--executor takes {', '.join(EXECUTORS)} or dask://host:port, not `{given}`")
        executor = given
    else:
        executor = pipeline.executor.kind if pipeline.executor else "process"
    if executor != "dask":
        if dask_address:
            raise UsageError("--dask-address goes with the dask executor (--executor dask)")
        return executor, None
    from ..run.daskconfig import address_source

    found = address_source(pipeline, (address, where) if address else (dask_address, "--dask-address"))
    address, where = found if found else (None, None)
    if address is None:
        raise UsageError("the dask executor needs the scheduler's address: --executor dask://host:8786, "
                         "--dask-address tcp://host:8786 or FLOW_DASK_ADDRESS")
    try:
        return "dask", normalise(address, bare=True)
    except AddressError as e:
        raise UsageError(f"{where}: {e}") from None


def dask_timeout(given) -> float:
    """Seconds to reach the scheduler: --dask-timeout, else FLOW_DASK_TIMEOUT, else 10."""
    from ..run.daskconfig import timeout

    try:
        return timeout(given)
    except ValueError as e:
        raise UsageError(str(e)) from None


def connect_dask(address: str, timeout: float, code_folders, resources, detached: bool, data=None):
    """Before the run is opened: a connected backend (a detached run only checks, and connects after the fork).

    Dask missing or a scheduler that cannot be reached is a usage error: exit 2, nothing written.
    """
    from ..run import dask

    try:
        dask.import_distributed()
        if detached:
            dask.probe(address, timeout)
            return None
        return dask.DaskBackend(address, code_folders, timeout, resources, data=data)
    except dask.DaskUnavailable as e:
        raise UsageError(str(e)) from None


def detach(runner, args) -> int:
    """Fork the opened run into its own session (see `launch`); print its id and return at once."""
    import json

    from ..schedule.launch import start

    pid = start(runner, quiet=args.quiet, verbose=args.verbose)
    run_id = runner.run_values["id"]
    if args.json:
        print(json.dumps({"run_id": run_id, "folder": runner.run_folder, "pid": pid}))
    else:
        print(run_id)
    return EXIT_OK


def add_run(p) -> None:
    from argparse import SUPPRESS

    p.add_argument("file", metavar="FILE")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="override a param (repeatable)")
    p.add_argument("--target", action="append", default=[], metavar="TASK", help="run TASK and what it needs")
    p.add_argument("--tag", action="append", default=[], metavar="TAG",
                   help="run the tasks tagged TAG and what they need (repeatable)")
    p.add_argument("--from", dest="from_", action="append", default=[], metavar="TASK",
                   help="run TASK (or one instance, TASK[i]) and what depends on it again, keeping the other "
                        "results of the latest run")
    p.add_argument("--resume", nargs="?", const=LATEST, metavar="RUN_ID",
                   help="continue a failed or interrupted run (default: the latest run of this pipeline)")
    p.add_argument("--detach", action="store_true", help="start in the background, print the run id")
    p.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    p.add_argument("--executor", metavar="{process,thread,inline,dask,dask://HOST:PORT}",
                   help="where attempts run (default: the pipeline's executor, else process)")
    p.add_argument("--dask-address", metavar="ADDR",
                   help="the Dask scheduler (tcp://host:port) for the dask executor; default $FLOW_DASK_ADDRESS, "
                        "then the pipeline's")
    p.add_argument("--dask-timeout", metavar="SECONDS",
                   help="how long to try to reach the Dask scheduler (default $FLOW_DASK_TIMEOUT, else 10)")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes or threads")
    p.add_argument("--logical-date", metavar="ISO", help="sets run.logical_date (the trigger stays manual)")
    p.add_argument("--call-run", metavar="RUN_ID", help=SUPPRESS)  # a `call` task's child run
    p.add_argument("--json", action="store_true", help="print the final report as JSON")
    p.add_argument("--env-file", metavar="FILE",
                   help="KEY=value lines for env() and secret() (the process's environment wins)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true", help="also stream each task's output")
    p.add_argument("--state-dir", metavar="DIR", help="where runs are kept (default: .flow beside FILE)")
