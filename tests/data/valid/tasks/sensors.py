"""A sensor's callable: ready when it returns a true value, which is the result."""

import os


def ready(path):
    return os.path.exists(path) and {"path": path}
