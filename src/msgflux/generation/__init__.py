"""Generation schemas that make a model plan and reason in a fixed shape.

``mf.generation.plan`` holds ``ChainOfThoughts``, ``ReAct``, ``SelfConsistency`` and
``TreeOfThoughts``; ``mf.generation.reasoning`` keeps msgflux 0.5.1's names
(``ChainOfThought``, ``ReAct``, ``SelfConsistency``). Submodules and the four schema
classes load on first use, so importing this package costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ChainOfThoughts", "ReAct", "SelfConsistency", "TreeOfThoughts", "plan", "reasoning"]

_SUBMODULES = ("plan", "reasoning")
_PLAN_NAMES = ("ChainOfThoughts", "ReAct", "SelfConsistency", "TreeOfThoughts")

if TYPE_CHECKING:
    from msgflux.generation import plan, reasoning
    from msgflux.generation.plan import (
        ChainOfThoughts,
        ReAct,
        SelfConsistency,
        TreeOfThoughts,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _PLAN_NAMES:
        value = getattr(importlib.import_module(f"{__name__}.plan"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
