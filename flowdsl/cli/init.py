"""`flow init [DIR]`: a starter project, and the crontab line that ticks it.

It writes a pipeline (`<name>.flow`), the Python module its tasks call
(`<name>_tasks.py`) and, where there is none, a `.gitignore` for the state
folder. Nothing is written if one of those files exists, unless `--force`.
Then it prints the crontab line, with every path absolute because cron
starts in the home folder with a bare PATH.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Tuple

from ..run.exitcodes import EXIT_FAILED, EXIT_OK
from ..run.launcher import flow_command  # noqa: F401  (cli.init.flow_command: where the crontab line comes from)
from .inputs import UsageError

FALLBACK = "hello"
# Words a pipeline may not be named after: the language's reserved names and
# its block keywords (a file starting `pipeline include {` reads badly at best).
RESERVED = {"params", "run", "env", "secret", "true", "false", "null", "pipeline", "task", "include"}

FLOW = '''\
# {name}.flow: a starter pipeline written by `flow init`. Try:
#
{tries}
pipeline {name} {{
    description "A starter pipeline: build a greeting in Python, shout it, save it"
    schedule cron "0 6 * * *" tz "{tz}"
    catchup latest
    overlap skip
    params {{
        day = run.date  # the schedule slot's date, or today for `flow run`
        who = "world"  # flow run {name}.flow --param who=team
        out = "out"
    }}
    defaults {{
        timeout 5m
    }}
}}

task greet {{
    description "Build the day's greeting"
    run {name}_tasks:greet
    with {{ who = params.who  day = params.day }}
    retry 2 delay 1s backoff 2
    timeout 30s
}}

task shout {{
    description "Upper-case the greeting: naming a task's result makes it run after that task"
    run {name}_tasks:shout
    with {{ text = greet.text }}
}}

task save {{
    description "Write it to out/<day>.txt; interpolated values are shell-quoted"
    sh "mkdir -p {{params.out}} && echo {{shout}} | tee {{params.out}}/{{params.day}}.txt"
    tags io
}}
'''

TASKS = '''\
"""The tasks of the {name} pipeline ({name}.flow).

Each is a plain function, called with its task's `with` map as keyword
arguments. What it returns is its result: plain data (str, int, list,
dict...), checkpointed and handed to the tasks that refer to it.
"""


def greet(who, day):
    """The greeting for `who` on `day` (YYYY-MM-DD), and how many words it has."""
    text = f"Hello, {{who}}! Today is {{day}}."
    return {{"text": text, "words": len(text.split())}}


def shout(text):
    """`text` in capitals."""
    return text.upper()
'''

GITIGNORE = '''\
# flow's state folder: runs, logs, checkpoints, the tick log
.flow/
# what the starter pipeline writes
out/
'''


def pipeline_name(folder: str) -> str:
    """A safe identifier from the folder's name (`My Project-2` -> `my_project_2`), else `hello`."""
    import unicodedata

    base = os.path.basename(os.path.abspath(folder))
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode().lower()  # café -> cafe
    name = re.sub(r"[^a-z0-9_]+", "_", base).strip("_")
    name = re.sub(r"__+", "_", name)
    if not name.isidentifier() or name in RESERVED:
        return FALLBACK
    return name


def shell(argv: List[str]) -> str:
    """A command line for /bin/sh; a leading `NAME=value` stays an assignment."""
    import shlex

    words = []
    for i, word in enumerate(argv):
        key, sep, value = word.partition("=")
        if sep and i == 0 and key.isidentifier():
            words.append(f"{key}={shlex.quote(value)}")
        else:
            words.append(shlex.quote(word))
    return " ".join(words)


def crontab_line(folder: str, command: List[str]) -> str:
    """Every minute: cd into the project, make sure the log's folder exists, tick it.

    The log goes into the state folder, which is ignored by git and may not
    exist yet (a fresh project, or one whose state was deleted): without the
    `mkdir` the shell could not open the log and the tick would never run.
    cron reads `%` as a line break, so it is escaped.
    """
    import shlex

    state = os.path.join(folder, ".flow")
    log = os.path.join(state, "tick.log")
    line = (f"* * * * * cd {shlex.quote(folder)} && mkdir -p -m 700 {shlex.quote(state)} && "
            f"{shell(command + ['tick', folder])} >> {shlex.quote(log)} 2>&1")
    return line.replace("%", "\\%")


def _tries(name: str) -> str:
    """The header's comment lines: three commands to try, what each does aligned after them."""
    tries = [("flow validate .", f"check it (never imports {name}_tasks)"),
             (f"flow run {name}.flow", "run it now and wait"),
             ("flow schedule .", "when it fires next")]
    width = max(len(command) for command, _ in tries) + 4
    return "\n".join(f"#     {command.ljust(width)}{what}" for command, what in tries)


def plan(folder: str, tz: str) -> Tuple[str, Dict[str, str]]:
    """(the pipeline's name, {path: content}) of what init writes into `folder`."""
    name = pipeline_name(folder)
    files = {
        os.path.join(folder, f"{name}.flow"): FLOW.format(name=name, tz=tz, tries=_tries(name)),
        os.path.join(folder, f"{name}_tasks.py"): TASKS.format(name=name),
    }
    gitignore = os.path.join(folder, ".gitignore")
    if not os.path.lexists(gitignore):
        files[gitignore] = GITIGNORE
    return name, files


def cmd_init(args) -> int:
    import json

    from ..lang.timeutil import zone

    try:
        zone(args.tz)
    except ValueError as e:
        raise UsageError(f"--tz: {e} (an IANA name like Europe/Berlin, or UTC)") from None
    tz = "UTC" if args.tz.upper() == "UTC" else args.tz
    folder = os.path.abspath(args.dir)
    if "\n" in folder or "\r" in folder:
        raise UsageError("the folder's path holds a line break, which a crontab line cannot")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UsageError(f"not a folder: {args.dir}")
    name, files = plan(folder, tz)
    if not args.force:
        for path in files:
            if os.path.lexists(path):
                raise UsageError(f"{path} exists; nothing written (--force overwrites it)")
    try:
        os.makedirs(folder, exist_ok=True)
        for path, text in files.items():
            with open(path, "w" if args.force else "x", encoding="utf-8") as f:
                f.write(text)
    except FileExistsError as e:  # made between the check and the write
        raise UsageError(f"{e.filename} exists; --force overwrites it") from None
    except OSError as e:
        print(f"flow init: error: cannot write {e.filename or folder}: {e.strerror or e}", file=sys.stderr)
        return EXIT_FAILED
    command = flow_command()
    line = crontab_line(folder, command)
    if args.json:
        print(json.dumps({"dir": folder, "files": list(files), "crontab": line}, indent=2))
        return EXIT_OK
    for path in files:
        print(f"wrote {path}")
    print(f"\nTo run {name} every day at 06:00 {tz}, add this line to your crontab (`crontab -e`);")
    print("it ticks every minute and starts the runs that are due:\n")
    print(f"    {line}\n")
    shown = os.path.relpath(folder)
    if shown.startswith(os.pardir):
        shown = folder
    flow_file = f"{name}.flow" if shown == os.curdir else os.path.join(shown, f"{name}.flow")
    print("Then try:\n")
    for verb, target in (("validate", shown), ("run", flow_file), ("schedule", shown)):
        print(f"    {shell(command + [verb, target])}")
    return EXIT_OK


def add_init(p) -> None:
    p.add_argument("dir", nargs="?", default=".", metavar="DIR",
                   help="the project folder (default: .; made if missing)")
    p.add_argument("--tz", default="UTC", metavar="ZONE", help="the schedule's time zone (default UTC)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.add_argument("--json", action="store_true", help='print {"dir", "files", "crontab"} as JSON')
