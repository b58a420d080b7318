"""A module found through `pythonpath "lib"`."""


def step(n=1):
    return n
