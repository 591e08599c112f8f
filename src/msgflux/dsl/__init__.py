"""Small languages for talking to models; today the typed output parsers.

``mf.dsl.typed_parsers`` loads on first use, so importing this package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["typed_parsers"]

if TYPE_CHECKING:
    from msgflux.dsl import typed_parsers


def __getattr__(name: str) -> Any:
    if name != "typed_parsers":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = importlib.import_module(f"{__name__}.typed_parsers")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
