"""A module with a syntax error: flow validate reports E405, not a traceback."""

def broken(:
    pass
