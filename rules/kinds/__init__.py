"""Rule kinds, discovered by importing every module of this package.

Each module ``rules/kinds/<name>.py`` defines a module-level ``KIND`` implementing
`rules.types.Kind`; `REGISTRY` maps ``KIND.name`` to it.
"""

from __future__ import annotations

import importlib
import pkgutil

from rules.types import Kind

__all__ = ["REGISTRY", "discover"]


def discover() -> dict[str, Kind]:
    """Import every module in this package and return ``{kind name: KIND}``.

    Raises
    ------
    ValueError
        If two modules declare the same kind name.
    """
    found: dict[str, Kind] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        kind = getattr(module, "KIND", None)
        if kind is None:
            continue
        if kind.name in found:
            raise ValueError(f"kind name {kind.name!r} declared twice ({info.name})")
        found[kind.name] = kind
    return found


REGISTRY: dict[str, Kind] = discover()
