"""msgflux: one fast chat-completion interface over every LLM provider.

    import msgflux as mf
    model = mf.Model.chat_completion("openai/gpt-4o")
    print(model("Hello!").consume())

Public names are loaded on first use, so ``import msgflux`` stays cheap: no HTTP
stack, provider table or profile data is imported until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Bound now, not lazily: the models import the submodule msgflux.dotdict, and the
# import system would then set this package's `dotdict` to that module. Cheap (typing).
from msgflux._version import __version__
from msgflux.dotdict import dotdict

# name -> module that defines it
_EXPORTS = {
    "Model": "msgflux.models.model",
    "ChatCompletionModel": "msgflux.models.chat_completion",
    "ModelResponse": "msgflux.models.response",
    "ModelStreamResponse": "msgflux.models.response",
    "ToolCallAggregator": "msgflux.models.tool_calls",
    "ChatBlock": "msgflux.chat_block",
    "Timeouts": "msgflux._transport.types",
    "RetryPolicy": "msgflux._transport.retry",
    "ModelGateway": "msgflux.models.gateway",
    "PromptCache": "msgflux.models.request",
    "TokenCount": "msgflux.models.tokens",
}
_SUBMODULES = ("exceptions", "generation", "dsl", "models", "observe")

__all__ = ["__version__", "dotdict", *_EXPORTS, *_SUBMODULES]

if TYPE_CHECKING:  # the lazy names, for type checkers and IDEs
    from msgflux import dsl, exceptions, generation, models, observe  # noqa: F401
    from msgflux._transport.retry import RetryPolicy  # noqa: F401
    from msgflux._transport.types import Timeouts  # noqa: F401
    from msgflux.chat_block import ChatBlock  # noqa: F401
    from msgflux.models.chat_completion import ChatCompletionModel  # noqa: F401
    from msgflux.models.gateway import ModelGateway  # noqa: F401
    from msgflux.models.model import Model  # noqa: F401
    from msgflux.models.request import PromptCache  # noqa: F401
    from msgflux.models.response import ModelResponse, ModelStreamResponse  # noqa: F401
    from msgflux.models.tokens import TokenCount  # noqa: F401
    from msgflux.models.tool_calls import ToolCallAggregator  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"msgflux.{name}")
    else:
        raise AttributeError(f"module 'msgflux' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
