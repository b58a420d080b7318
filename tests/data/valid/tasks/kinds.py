"""Every kind of callable `run` accepts: function, async function, class, Class.method."""

import asyncio
from dataclasses import dataclass


class Busy(Exception):
    """Worth retrying."""


async def fetch(url, retries=0):
    await asyncio.sleep(0)
    return url


class Loader:
    """A class task: instantiated with the `with` map, then run()."""

    def __init__(self, path, mode="r"):
        self.path = path
        self.mode = mode

    def on_create(self):
        pass

    def run(self):
        return self.path

    def on_success(self):
        pass

    def on_failure(self, error):
        pass

    def on_destroy(self):
        pass


class Report:
    """`Report.render`: a dotted attribute; self is not passed by `with`."""

    def render(self, title, rows=()):
        return title


@dataclass
class Point:
    x: int
    y: int = 0

    def run(self):
        return (self.x, self.y)
