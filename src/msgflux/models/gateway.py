"""``ModelGateway``: try models in order, falling back on availability failures.

A gateway moves to the next model when the current one is unavailable — a
connection or timeout failure, rate limiting, a server error, an overloaded
provider, or a model the key cannot reach (401/403/404) — after that model's
own retries. It never falls back on a bad request or bad input: those would
fail everywhere. Each fallback is reported (``msgflux.observe.GatewayFallback``,
a WARNING on logger ``msgflux.gateway``). A stream falls back while nothing has reached the caller:
at the call, or — for ``gateway(..., stream=True)`` inside a running event
loop, where the stream starts when iterated — when iteration starts.
``metadata.gateway`` records which model answered and what failed before it;
``metadata.attempts`` counts the attempts of every model tried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from msgflux.exceptions import (
    AuthenticationError,
    InvalidParameterError,
    ModelGatewayError,
    MsgfluxError,
    NotFoundError,
    PermissionDeniedError,
)
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.observe import _observation

if TYPE_CHECKING:
    from msgflux.dotdict import dotdict
    from msgflux.models.call import PreparedCall
    from msgflux.models.request import Delta, Usage
    from msgflux.models.response import StreamCall
    from msgflux.models.stream import AsyncSource, StreamAssembler, SyncSource

__all__ = ["ChatModel", "FallbackStreamCall", "ModelGateway"]

_UNAVAILABLE = (AuthenticationError, PermissionDeniedError, NotFoundError)
T = TypeVar("T")
_Response = TypeVar("_Response", ModelResponse, ModelStreamResponse)


def _falls_back(error: BaseException) -> bool:
    return isinstance(error, MsgfluxError) and (
        error.retryable or isinstance(error, _UNAVAILABLE)
    )


class ChatModel(Protocol):
    """What a gateway needs of a model; :class:`ChatCompletionModel` is one."""

    provider: str
    model_id: str
    model_type: str

    def prepare(self, messages: Any, **kwargs: Any) -> PreparedCall: ...

    def __call__(self, messages: Any, **kwargs: Any) -> ModelResponse | ModelStreamResponse: ...

    async def acall(self, messages: Any, **kwargs: Any
                    ) -> ModelResponse | ModelStreamResponse: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


def _name(model: ChatModel) -> str:
    return f"{model.provider}/{model.model_id}"


class _Fallback(Generic[T]):
    """Who is tried next and what failed so far, sans-I/O, for every way of calling.

    Iterating yields each model's target in order (a target that is an exception —
    the model refused the input — counts as that model's failure); :meth:`give_up`
    is the error once every one failed with an error that falls back.
    """

    def __init__(self, entries: list[tuple[ChatModel, T | Exception]]) -> None:
        self.entries = entries
        self.errors: list[tuple[str, BaseException]] = []
        self.model = entries[0][0]
        self.index = 0

    def __iter__(self) -> Iterator[T]:
        for index, (model, target) in enumerate(self.entries):
            self.model = model
            self.index = index
            if isinstance(target, Exception):
                self.failed(target)
                continue
            yield target

    def give_up(self) -> ModelGatewayError:
        lines = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in self.errors)
        error = ModelGatewayError(f"Every model of the gateway failed ({lines})", self.errors)
        error.__cause__ = self.errors[-1][1]
        return error

    def failed(self, error: BaseException) -> None:
        """Note the current model's failure, or raise it when it must not fall back."""
        if not _falls_back(error):
            raise error
        self.errors.append((_name(self.model), error))
        following = self.entries[self.index + 1:]
        _observation.fallback(self.model, error, _name(following[0][0]) if following else None)

    def record(self) -> dict[str, Any]:
        """``metadata.gateway``: which model answered and what failed before it."""
        return {
            "model": _name(self.model),
            "failed": [{"model": name, "error": f"{type(e).__name__}: {e}"}
                       for name, e in self.errors],
        }

    def answered(self, response: _Response) -> _Response:
        self.account(response.metadata)
        return response

    def account(self, meta: dotdict) -> None:
        """Add ``metadata.gateway``, and the failed models' attempts to ``attempts``."""
        meta["gateway"] = self.record()
        failed = sum(getattr(e, "attempts", None) or 1 for _, e in self.errors)
        meta["attempts"] = meta.get("attempts", 1) + failed


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

        built: list[ChatModel] = []
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

    def _order(self, preference: str | None) -> list[ChatModel]:
        if preference is None:
            return list(self.models)
        first = [m for m in self.models if _name(m) == preference]
        if not first:
            names = [_name(m) for m in self.models]
            raise InvalidParameterError(f"model_preference {preference!r} is not one of {names}")
        return first + [m for m in self.models if m is not first[0]]

    def __call__(self, messages: Any, *, model_preference: str | None = None, **kwargs: Any
                 ) -> ModelResponse | ModelStreamResponse:
        order = self._order(model_preference)
        if kwargs.get("stream"):
            return ModelStreamResponse.open(_stream_call(order, messages, kwargs))
        fallback = _Fallback([(model, model) for model in order])
        for model in fallback:
            try:
                return fallback.answered(model(messages, **kwargs))
            except Exception as e:
                fallback.failed(e)
        raise fallback.give_up()

    async def acall(self, messages: Any, *, model_preference: str | None = None, **kwargs: Any
                    ) -> ModelResponse | ModelStreamResponse:
        order = self._order(model_preference)
        if kwargs.get("stream"):
            return await ModelStreamResponse.aopen(_stream_call(order, messages, kwargs))
        fallback = _Fallback([(model, model) for model in order])
        for model in fallback:
            try:
                return fallback.answered(await model.acall(messages, **kwargs))
            except Exception as e:
                fallback.failed(e)
        raise fallback.give_up()

    def batch(self, inputs: Any, **options: Any) -> Any:
        """Run every input through the gateway (see ``ChatCompletionModel.batch``):
        each item falls back across the models like a single call."""
        from msgflux.batch.runner import run_batch

        return run_batch(self, inputs, **options)

    async def abatch(self, inputs: Any, **options: Any) -> Any:
        """:meth:`batch` on the running event loop."""
        from msgflux.batch.runner import arun_batch

        return await arun_batch(self, inputs, **options)

    def close(self) -> None:
        for model in self.models:
            model.close()

    async def aclose(self) -> None:
        for model in self.models:
            await model.aclose()

    def __repr__(self) -> str:
        return f"ModelGateway({[_name(m) for m in self.models]})"


def _stream_call(order: list[ChatModel], messages: Any, kwargs: dict[str, Any]
                 ) -> FallbackStreamCall:
    """Every model's stream call, prepared now (no I/O). The first model's bad input
    fails at the call; another model's is met when its turn comes."""
    calls: list[tuple[ChatModel, StreamCall | Exception]] = []
    for model in order:
        try:
            calls.append((model, model.prepare(messages, **kwargs).stream_call()))
        except Exception as e:
            if not calls:
                raise
            calls.append((model, e))
    return FallbackStreamCall(calls)


class FallbackStreamCall:
    """A stream call that falls back through a gateway's models while it starts.

    It implements :class:`~msgflux.models.response.StreamCall` over the models'
    own stream calls: ``ModelStreamResponse`` retries its start through
    :meth:`retry` / :meth:`aretry`; when the current model's start fails with an
    error that falls back (after that model's own retries), the next model's call
    takes over. Nothing has reached the caller before the start succeeds;
    :meth:`finish` records which model answered in ``metadata.gateway``.
    """

    def __init__(self, calls: list[tuple[ChatModel, StreamCall | Exception]]) -> None:
        first = calls[0][1]
        assert not isinstance(first, Exception)
        self.fallback = _Fallback(calls)
        self.current: StreamCall = first

    @property
    def known_type(self) -> str | None:
        return self.current.known_type

    @property
    def default_type(self) -> str:
        return self.current.default_type

    @property
    def lead(self) -> Delta | None:
        return self.current.lead

    @property
    def partial(self) -> Callable[[], Any] | None:
        return self.current.partial

    def open_sync(self) -> SyncSource:
        return self.current.open_sync()

    async def open_async(self) -> AsyncSource:
        return await self.current.open_async()

    def finish(self, asm: StreamAssembler) -> tuple[str, Any, dotdict]:
        kind, data, meta = self.current.finish(asm)
        self.fallback.account(meta)
        for _, call in self.fallback.entries:  # tokens the models before were billed
            if call is not self.current and getattr(call, "spent_usage", None) is not None:
                from msgflux.models.call import add_spent

                add_spent(meta, call)
        return kind, data, meta

    def spent(self, usage: Usage) -> None:
        self.current.spent(usage)

    def broken(self, error: BaseException) -> None:
        self.current.broken(error)

    def retry(self, attempt: Callable[[], None]) -> None:
        for call in self.fallback:
            self.current = call
            try:
                return call.retry(attempt)
            except Exception as e:
                self.fallback.failed(e)
        raise self.fallback.give_up()

    async def aretry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        for call in self.fallback:
            self.current = call
            try:
                return await call.aretry(attempt)
            except Exception as e:
                self.fallback.failed(e)
        raise self.fallback.give_up()
