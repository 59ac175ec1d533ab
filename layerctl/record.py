"""Small value classes without `dataclasses`.

`dataclasses` imports `inspect` (and with it `ast`, `dis`, `tokenize`): ~4-5 ms of
every command's start-up, more than `status` spends on its own work. The value
classes that `status`, `ps` and `images` create derive from `Record` instead: the
class lists its fields in `__slots__` and writes its `__init__` (keyword names =
field names); equality, `repr` and `replace` come from here, as a dataclass's would.

`Frozen` records are hashable (by their compared fields), as `@dataclass(frozen=True)`
ones are; immutability is by convention (no `__setattr__` guard: `Meta` is built once
per file of a tree and a guarded `__init__` costs ~2x). A plain `Record` is unhashable,
as a mutable dataclass is.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class Record:
    __slots__: tuple[str, ...] = ()
    # the fields `==` compares (and `Frozen` hashes); None: every field
    _compared: ClassVar[tuple[str, ...] | None] = None

    # the compared fields as one tuple, read by C code (operator.attrgetter), so `==`
    # and hash cost about what a dataclass's generated ones do
    _key: ClassVar[Callable[[Any], tuple[Any, ...]]]

    def __init_subclass__(cls) -> None:
        names = cls._compared or cls.__slots__
        if names:
            getter = attrgetter(*names)
            cls._key = getter if len(names) > 1 else lambda obj: (getter(obj),)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        key = type(self)._key
        return key(self) == key(other)

    # (defining __eq__ leaves a Record unhashable, as a mutable dataclass is)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self).__slots__)
        return f"{type(self).__name__}({fields})"

    def replace(self: R, **changes: Any) -> R:  # noqa: ANN401 - each field's own type
        """A copy with `changes` (dataclasses.replace)."""
        values = self.as_dict()
        values.update(changes)
        make: Any = type(self)  # each subclass's __init__ takes its fields by name
        copy: R = make(**values)
        return copy

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (dataclasses.asdict, one level: values are not copied)."""
        return {n: getattr(self, n) for n in type(self).__slots__}


class Frozen(Record):
    __slots__ = ()

    def __hash__(self) -> int:
        return hash(type(self)._key(self))
