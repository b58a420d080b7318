"""Frozen record classes: what `@dataclass(frozen=True)` gives, without its import cost.

The IR has some thirty node types. As frozen dataclasses they cost about
20 ms of every cold start (the dataclasses module imports inspect, and each
class compiles six functions one by one), a quarter of `flow validate`'s
budget. A record is the same thing, built more cheaply: fields from the
class's annotations, `__slots__`, value equality and hashing, a readable
repr, pickling, and assignment refused; the `__init__` of every record of a
module is compiled in a single `exec` by `finish()`.

    @record
    class Span:
        file: str
        line: int

    finish()
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing at run time (a few ms of every start)
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

    from typing_extensions import dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**kwargs):  # a type checker's word that `record` makes dataclass-like classes
        return lambda f: f


_set = object.__setattr__
_pending: List[Type[Record]] = []


class Factory:
    """A default made anew for each record: `defaults: Settings = Factory(factory=Settings)`.

    `factory` by name: the argument that dataclass_transform has type checkers read as a field's default."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.make = factory


class Record:
    __slots__ = ()
    _fields: Tuple[str, ...] = ()
    _defaults: Dict[str, Any]  # set by @record on each record class

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field `{name}`: {type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field `{name}`: {type(self).__name__} is frozen")

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self._fields)

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + tuple(getattr(self, f) for f in self._fields))

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def __reduce__(self) -> Tuple[Type[Record], Tuple[Any, ...]]:
        return (type(self), tuple(getattr(self, f) for f in self._fields))


@dataclass_transform(frozen_default=True, field_specifiers=(Factory,))
def record(cls: type[T]) -> type[T]:
    """Make `cls` a frozen record; its `__init__` arrives with `finish()`."""
    annotations: Dict[str, Any] = cls.__dict__.get("__annotations__", {})
    fields = tuple(annotations)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in fields and k not in ("__dict__", "__weakref__")}
    defaults = {f: cls.__dict__[f] for f in fields if f in cls.__dict__}
    namespace["__slots__"] = fields
    namespace["_fields"] = fields
    namespace["_defaults"] = defaults
    new = type(cls.__name__, (Record,), namespace)
    new.__qualname__ = cls.__qualname__
    _pending.append(new)
    return new


def fields(node: Record) -> Tuple[str, ...]:
    return node._fields


def is_record(node: Any) -> bool:
    return isinstance(node, Record)


SOURCES: List[str] = []  # what finish() compiled, for build_zipapp.py to compile ahead
PRECOMPILED_FILE = "_records.marshal"
_precompiled_code: Optional[Dict[str, Any]] = None


def _precompiled(text: str) -> Any:
    """The code of `text` as build_zipapp.py compiled it for this interpreter, or None.

    Compiling the generated `__init__`s is most of what importing the IR
    costs; in flow.pyz each bytecode tree carries them compiled, by source
    text, as `_records.marshal` beside this module (for the interpreter
    whose magic number it names). Anywhere else: None, and exec compiles.
    """
    global _precompiled_code
    if _precompiled_code is None:
        _precompiled_code = {}
        import os

        from .bundled import marshalled

        data = marshalled(globals(), os.path.join(os.path.dirname(__file__), PRECOMPILED_FILE))
        if isinstance(data, dict):
            import marshal
            from importlib._bootstrap_external import MAGIC_NUMBER

            try:
                if data["magic"] == MAGIC_NUMBER:
                    _precompiled_code = marshal.loads(data["code"])
            except (EOFError, ValueError, TypeError, KeyError):
                pass
    return _precompiled_code.get(text)


def finish() -> None:
    """Compile the `__init__` of every record made since the last call, in one go."""
    source: List[str] = []
    env: Dict[str, Any] = {"_set": _set, "Factory": Factory}
    for i, cls in enumerate(_pending):
        params, body = ["self"], []
        for f in cls._fields:
            if f in cls._defaults:
                default = cls._defaults[f]
                env[f"_d{i}_{f}"] = default
                params.append(f"{f}=_d{i}_{f}")
                if isinstance(default, Factory):
                    body.append(f"    if {f} is _d{i}_{f}: {f} = _d{i}_{f}.make()")
            else:
                params.append(f)
            body.append(f"    _set(self, {f!r}, {f})")
        source.append(f"def _init{i}({', '.join(params)}):\n" + ("\n".join(body) or "    pass"))
    text = "\n".join(source)
    SOURCES.append(text)
    exec(_precompiled(text) or text, env)  # noqa: S102 (generated from the classes' own field names)
    for i, cls in enumerate(_pending):
        init = env[f"_init{i}"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        type.__setattr__(cls, "__init__", init)
    _pending.clear()
