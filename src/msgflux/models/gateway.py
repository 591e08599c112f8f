"""``ModelGateway``: try models in order, falling back on availability failures.

A gateway moves to the next model when the current one is unavailable — a
connection or timeout failure, rate limiting, a server error, an overloaded
provider, or a model the key cannot reach (401/403/404) — after that model's
own retries. It never falls back on a bad request or bad input: those would
fail everywhere. A stream falls back while nothing has reached the caller
(streams open at the call, so failures before the first chunk raise there).
``metadata.gateway`` records which model answered and what failed before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgflux.exceptions import (
    AuthenticationError,
    InvalidParameterError,
    ModelGatewayError,
    MsgfluxError,
    NotFoundError,
    PermissionDeniedError,
)

__all__ = ["ModelGateway"]

_UNAVAILABLE = (AuthenticationError, PermissionDeniedError, NotFoundError)


def _falls_back(error: BaseException) -> bool:
    return isinstance(error, MsgfluxError) and (
        error.retryable or isinstance(error, _UNAVAILABLE)
    )


class ModelGateway:
    """Chat models (objects or ``"provider/model"`` paths) tried in order.

    Called like a model: ``gateway(messages, **call_kwargs)`` or
    ``await gateway.acall(...)``; ``model_preference="provider/model"`` tries
    that one first.
    """

    model_type = "chat_completion"

    def __init__(self, models: Sequence[Any], **model_kwargs: Any) -> None:
        if isinstance(models, (str, dict)) or not models:
            raise InvalidParameterError("ModelGateway needs a non-empty list of models")
        from msgflux.models.model import Model

        built = []
        for entry in models:
            if isinstance(entry, dict) and "model" in entry:  # the 0.5.1 {"model_name", "model"}
                entry = entry["model"]
            if isinstance(entry, str):
                entry = Model.chat_completion(entry, **model_kwargs)
            if getattr(entry, "model_type", None) != "chat_completion":
                raise InvalidParameterError(
                    f"ModelGateway takes chat models or 'provider/model' paths, got {entry!r}"
                )
            built.append(entry)
        self.models = built

    @staticmethod
    def _name(model: Any) -> str:
        return f"{model.provider}/{model.model_id}"

    def _order(self, preference: str | None) -> list[Any]:
        if preference is None:
            return list(self.models)
        first = [m for m in self.models if self._name(m) == preference]
        if not first:
            names = [self._name(m) for m in self.models]
            raise InvalidParameterError(f"model_preference {preference!r} is not one of {names}")
        return first + [m for m in self.models if m is not first[0]]

    def _record(self, response: Any, model: Any, errors: list[tuple[str, BaseException]]) -> Any:
        response.metadata["gateway"] = {
            "model": self._name(model),
            "failed": [{"model": name, "error": f"{type(e).__name__}: {e}"} for name, e in errors],
        }
        return response

    def _give_up(self, errors: list[tuple[str, BaseException]]) -> ModelGatewayError:
        lines = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in errors)
        return ModelGatewayError(f"Every model of the gateway failed ({lines})", errors)

    def __call__(self, messages: Any, *, model_preference: str | None = None, **kwargs: Any
                 ) -> Any:
        errors: list[tuple[str, BaseException]] = []
        for model in self._order(model_preference):
            try:
                response = model(messages, **kwargs)
            except Exception as e:
                if not _falls_back(e):
                    raise
                errors.append((self._name(model), e))
                continue
            return self._record(response, model, errors)
        raise self._give_up(errors) from errors[-1][1]

    async def acall(self, messages: Any, *, model_preference: str | None = None, **kwargs: Any
                    ) -> Any:
        errors: list[tuple[str, BaseException]] = []
        for model in self._order(model_preference):
            try:
                response = await model.acall(messages, **kwargs)
            except Exception as e:
                if not _falls_back(e):
                    raise
                errors.append((self._name(model), e))
                continue
            return self._record(response, model, errors)
        raise self._give_up(errors) from errors[-1][1]

    def close(self) -> None:
        for model in self.models:
            model.close()

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()

    def __repr__(self) -> str:
        return f"ModelGateway({[self._name(m) for m in self.models]})"
