"""Callables whose signatures the E40x files get wrong."""


def hello(name, greeting="hello"):
    return f"{greeting} {name}"


def only_positional(path, /, mode="r"):
    return path


def no_args():
    return None


class Loader:
    def __init__(self, path):
        self.path = path

    def run(self):
        return self.path


class NoRun:
    """A class with no run() method cannot be a task."""

    def __init__(self, path):
        self.path = path


class Tool:
    def method(self, a):
        return a


def two_args(report, extra):
    """As a hook it would be called with the report alone: `extra` is missing."""
    return report, extra
