"""Reading and writing the example's files."""

import csv
import json
import os


class SourceBusy(Exception):
    """The source folder is being written to; worth retrying."""


def extract(table, source="data"):
    """Rows of `source/<table>.csv` as dicts of strings."""
    path = os.path.join(source, f"{table}.csv")
    if os.path.exists(path + ".lock"):
        raise SourceBusy(f"{path} is locked")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_json(rows, path):
    """Write `rows` to `path` atomically; the result is the path."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
    return path
