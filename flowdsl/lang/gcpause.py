"""`with paused():` builds many objects with the cyclic garbage collector off.

A parse, a decoded IR cache entry and the parser's tables are a great many
objects and no reference cycles: a collection meanwhile would only rescan
them (40% of a parse's time, half of loading the old pickled cache). The
collector is on again after the block, as it was before it.
"""

import gc


class paused:  # noqa: N801 (read as a phrase: `with paused():`)
    __slots__ = ("was_on",)

    def __enter__(self) -> "paused":
        self.was_on = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.was_on:
            gc.enable()
