"""``ModelGateway``: try models in order, falling back on availability failures.

A gateway moves to the next model when the current one is unavailable — a
connection or timeout failure, rate limiting, a server error, an overloaded
provider, or a model the key cannot reach (401/403/404) — after that model's
own retries. It never falls back on a bad request or bad input: those would
fail everywhere. A stream falls back while nothing has reached the caller:
at the call, or — for ``gateway(..., stream=True)`` inside a running event
loop, where the stream starts when iterated — when iteration starts.
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
        order = self._order(model_preference)
        for i, model in enumerate(order):
            try:
                response = model(messages, **kwargs)
            except Exception as e:
                if not _falls_back(e):
                    raise
                errors.append((self._name(model), e))
                continue
            if kwargs.get("stream") and getattr(response, "_source", True) is None:
                # Inside a running event loop the stream starts when it is iterated:
                # the fallback has to happen there.
                rest = [(m, _prepared(m, messages, kwargs)) for m in order[i + 1:]]
                response._call = _FallbackStreamCall(self, response, [(model, response._call),
                                                                      *rest], errors)
                return response
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


def _prepared(model: Any, messages: Any, kwargs: dict[str, Any]) -> Any:
    """The not yet started stream call of ``model`` (no I/O inside a running loop)."""
    try:
        return model(messages, **kwargs)._call
    except Exception as e:
        return e


class _FallbackStreamCall:
    """Stands in for a deferred stream's call: starting it falls back through the models.

    ``ModelStreamResponse`` retries its start through ``retry``/``aretry``; when
    the current model's start fails with an error that falls back (after that
    model's own retries), the next model's call takes over. Nothing has reached
    the caller before the start succeeds.
    """

    def __init__(self, gateway: ModelGateway, response: Any, calls: list[tuple[Any, Any]],
                 errors: list[tuple[str, BaseException]]) -> None:
        self.gateway = gateway
        self.response = response
        self.calls = calls
        self.errors = errors
        self.current = calls[0][1]

    @property
    def known_type(self) -> Any:
        return self.current.known_type

    @property
    def default_type(self) -> Any:
        return self.current.default_type

    @property
    def lead(self) -> Any:
        return self.current.lead

    def open_sync(self) -> Any:
        return self.current.open_sync()

    async def open_async(self) -> Any:
        return await self.current.open_async()

    def finish(self, asm: Any) -> Any:
        return self.current.finish(asm)

    def _candidates(self) -> Any:
        while self.calls:
            model, call = self.calls.pop(0)
            if isinstance(call, BaseException):
                self._failed(model, call)
                continue
            self.current = call
            yield model, call
        errors = self.errors
        raise self.gateway._give_up(errors) from errors[-1][1]

    def _failed(self, model: Any, error: BaseException) -> None:
        if not _falls_back(error):
            raise error
        self.errors.append((self.gateway._name(model), error))

    def retry(self, attempt: Any) -> None:
        for model, call in self._candidates():
            try:
                call.retry(attempt)
            except Exception as e:
                self._failed(model, e)
                continue
            self.gateway._record(self.response, model, self.errors)
            return

    async def aretry(self, attempt: Any) -> None:
        for model, call in self._candidates():
            try:
                await call.aretry(attempt)
            except Exception as e:
                self._failed(model, e)
                continue
            self.gateway._record(self.response, model, self.errors)
            return
