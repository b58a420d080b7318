"""What the tick tests share (test_tick, test_operating): a scheduled project, `flow tick --json`, and
waiting for the runs a tick started."""

import json
from pathlib import Path

from runkit import explain, wait_until, write_project

QUICK = """
    pipeline {name} {{
        {schedule}
        {extra}
        executor inline
    }}
    task hello {{ sh "echo hello {{run.logical_date}}" }}
"""


def project(folder: Path, schedule: str, extra: str = "", name: str = "p") -> Path:
    return write_project(folder, QUICK.format(name=name, schedule=schedule, extra=extra), name=f"{name}.flow")


def tick(flow, path, now, *args, expect=0):
    proc = flow("tick", path, "--now", now, "--json", *args)
    assert proc.returncode == expect, explain(proc)
    return json.loads(proc.stdout)


def fired_dates(out) -> list:
    return [f["logical_date"] for f in out["fired"]]


def settle(folder: Path, timeout: float = 30) -> None:
    """Wait until no run below `folder` is alive (their journals are unlocked)."""
    import fcntl

    def idle():
        for j in folder.glob(".flow/runs/*/journal.msgpack"):
            with open(j, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
        return True

    assert wait_until(idle, timeout), "runs still going"
