"""Task functions for the runner benchmarks."""

import time


def noop():
    return None


def nap():
    time.sleep(0.25)
