"""Packages whose public names are imported from their modules when first used (PEP 562):
a command pays start-up time only for what it uses (`status` loads no commit code,
`ps` no runtime supervisor)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attribute_getter(package: str, homes: Mapping[str, str],
                     namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `homes` maps each public name to the module
    under the package that defines it; a name once imported is kept in `namespace`
    (the package's globals), so the next use is a plain look-up."""

    def get(name: str) -> Any:  # noqa: ANN401 - whichever object `name` is
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{home}"), name)
        namespace[name] = value
        return value

    return get
