"""``Model``: the factory that turns ``"provider/model-id"`` into a model object."""

from __future__ import annotations

from typing import Any

from msgflux.exceptions import InvalidParameterError

__all__ = ["Model"]

_TYPES = ("chat_completion",)


class Model:
    """Factory of models; only classmethods.

    ``Model.chat_completion("openai/gpt-4o", temperature=0)`` splits the path on
    the first ``/`` only, so ``"openrouter/openai/gpt-4o"`` is provider
    ``openrouter`` with model id ``openai/gpt-4o``.
    """

    @classmethod
    def chat_completion(cls, model_path: str, **kwargs: Any) -> Any:
        provider, model_id = _split(model_path)
        if "provider" in kwargs:
            raise InvalidParameterError(
                f"provider= is not a parameter: the provider is the part of the model path "
                f"before the first '/' (here {provider!r})"
            )
        from msgflux.models.providers.registry import get_provider

        row = get_provider(provider)
        if row.id == "openai":
            from msgflux.models.providers.openai import OpenAIChatCompletion

            return OpenAIChatCompletion(model_id, **kwargs)
        from msgflux.models.chat_completion import ChatCompletionModel

        return ChatCompletionModel(model_id, provider=row.id, **kwargs)

    @classmethod
    def model_types(cls) -> list[str]:
        return list(_TYPES)

    @classmethod
    def providers(cls) -> dict[str, list[str]]:
        """Provider ids by model type."""
        from msgflux.models.providers.registry import list_providers

        return {"chat_completion": [p.id for p in list_providers()]}

    @classmethod
    def from_serialized(cls, provider: str | dict[str, Any], model_type: str | None = None,
                        state: dict[str, Any] | None = None) -> Any:
        """Rebuild a model from ``serialize()`` output (the dict, or its three parts)."""
        if isinstance(provider, dict):
            data = provider
            provider = data.get("provider")  # type: ignore[assignment]
            model_type = data.get("model_type")
            state = data.get("state")
        if model_type not in _TYPES:
            raise InvalidParameterError(
                f"Model type {model_type!r} is not supported; known: {', '.join(_TYPES)}"
            )
        if not isinstance(provider, str) or not isinstance(state, dict) or \
                "model_id" not in state:
            raise InvalidParameterError(
                "from_serialized needs the dict serialize() returned "
                "(provider, model_type and a state with model_id)"
            )
        kwargs = dict(state)
        model_id = kwargs.pop("model_id")
        return cls.chat_completion(f"{provider}/{model_id}", **kwargs)


def _split(model_path: Any) -> tuple[str, str]:
    if not isinstance(model_path, str):
        raise InvalidParameterError(
            f"model path must be a str like 'openai/gpt-4o', got {type(model_path).__name__}"
        )
    provider, sep, model_id = model_path.partition("/")
    if not sep or not provider.strip() or not model_id.strip():
        raise InvalidParameterError(
            f"model path {model_path!r} must be 'provider/model-id', e.g. 'openai/gpt-4o' or "
            "'llamacpp/smollm2'"
        )
    return provider.strip(), model_id.strip()
