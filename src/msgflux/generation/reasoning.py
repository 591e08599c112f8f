"""msgflux 0.5.1's module and names for the planning schemas.

``ChainOfThought`` is :class:`~msgflux.generation.plan.ChainOfThoughts` (same fields:
``reasoning``, ``final_answer``); ``ReAct`` and ``SelfConsistency`` are the ones of
:mod:`msgflux.generation.plan`. 0.5.1's ``ReAct`` also carried agent-loop helpers
(``tools_template``, ``inject_results``...); the agent loop is not part of msgflux's
chat-completion layer, so only the schema is kept.
"""

from msgflux.generation.plan import (
    Action,
    ChainOfThoughts,
    ReAct,
    ReasoningPath,
    SelfConsistency,
)

ChainOfThought = ChainOfThoughts

__all__ = ["Action", "ChainOfThought", "ReAct", "ReasoningPath", "SelfConsistency"]
