"""``OpenAIChatCompletion``: the class of OpenAI models.

Providers are data (see ``registry``); this class only binds the ``openai``
row, so ``OpenAIChatCompletion("gpt-4o", temperature=0)`` is the same model as
``mf.Model.chat_completion("openai/gpt-4o", temperature=0)``.
"""

from __future__ import annotations

from typing import Any

from msgflux.models.chat_completion import ChatCompletionModel

__all__ = ["OpenAIChatCompletion"]


class OpenAIChatCompletion(ChatCompletionModel):
    """An OpenAI chat model (or any server at ``base_url``/``OPENAI_BASE_URL``).

    Takes the constructor parameters of
    :class:`~msgflux.models.chat_completion.ChatCompletionModel`; calling it
    takes ``messages`` and keywords ``system_prompt``, ``prefilling``,
    ``stream``, ``generation_schema``, ``typed_parser``, ``tool_schemas``,
    ``tool_choice``.
    """

    def __init__(self, model_id: str, **kwargs: Any) -> None:
        if "provider" in kwargs:
            raise TypeError("OpenAIChatCompletion is bound to provider 'openai'")
        super().__init__(model_id, provider="openai", **kwargs)
