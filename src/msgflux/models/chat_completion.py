"""``ChatCompletionModel``: one model of one provider, callable sync and async.

This class holds a model's identity and options; each call is prepared and run
by :mod:`msgflux.models.call` (argument checking lives in
:mod:`msgflux.models.options`). Everything that can be wrong with the input
fails before the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgflux.exceptions import InvalidParameterError
from msgflux.models.cache import ResponseCache
from msgflux.models.call import PreparedCall, Wiring, prepare
from msgflux.models.dialects import get_dialect
from msgflux.models.options import TRANSPORT_OPTIONS, ModelSettings, serializable_state
from msgflux.models.providers.registry import get_provider, resolve_api_key, resolve_base_url

if TYPE_CHECKING:
    from msgflux.models.profiles.types import ModelProfile
    from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = ["ChatCompletionModel"]

_ENGINE_OPTIONS = ("n_threads", "n_ctx", "n_parallel")
_SAMPLING = ("temperature", "max_tokens", "top_p", "stop", "seed", "reasoning_effort")


class ChatCompletionModel:
    """A chat model of any provider. Build it with ``mf.Model.chat_completion("provider/model")``.

    Constructor parameters: ``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``, ``reasoning_effort``, ``parallel_tool_calls`` (sampling defaults
    sent with every call); ``base_url``, ``api_key`` (else the provider's
    ``<PROVIDER>_BASE_URL`` / key variables); ``timeout`` (seconds allowed for
    each wait — connect, first byte, every gap between chunks — or a ``Timeouts``
    / dict with ``connect``, ``first_byte``, ``idle``, ``total``); ``max_retries``
    (an int, or a ``mf.RetryPolicy`` that also sets the backoff and the
    ``Retry-After`` cap); ``enable_cache``, ``cache_size``;
    ``extra_body`` (provider-specific body fields, sent as given);
    ``extra_headers``; ``check_capabilities`` (refuse requests the model's
    profile says it cannot serve); ``transport`` / ``async_transport`` (what
    carries the bytes: any :class:`msgflux.transport.Transport` /
    ``AsyncTransport``; msgflux's own HTTP clients by default); ``http_client``
    (an ``httpx.Client`` and/or ``httpx.AsyncClient``, or a tuple of both: calls go
    through it, with msgflux's timeouts, limits and no redirects on top);
    ``verify``, ``cert``, ``proxy``, ``trust_env`` (TLS and proxy settings of
    msgflux's own clients) and ``max_response_bytes`` (the largest answer, or
    streamed event, accepted: 64 MiB); ``n_threads``,
    ``n_ctx``, ``n_parallel`` (the embedded ``llamacpp`` engine only).
    """

    model_type = "chat_completion"

    def __init__(self, model_id: str, *, provider: str = "openai", **kwargs: Any) -> None:
        settings = ModelSettings(kwargs)
        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidParameterError(f"model_id must be a non-empty str, got {model_id!r}")
        row = get_provider(provider)
        self.model_id = model_id
        self.provider = row.id
        self._settings = settings
        self._response_cache: ResponseCache | None = (
            ResponseCache(settings.get("cache_size", 128)) if settings.get("enable_cache")
            else None
        )
        base_url = settings.get("base_url")
        self._wiring = Wiring(
            model_id, row, get_dialect(row.dialect),
            api_key=resolve_api_key(row, kwargs.get("api_key")),
            base_url=resolve_base_url(row, base_url) if row.engine is None else base_url,
            headers=settings.get("extra_headers"),
            engine_options={k: settings.get(k) for k in _ENGINE_OPTIONS
                            if settings.get(k) is not None},
            cache=self._response_cache,
            transport=settings.get("transport"),
            async_transport=settings.get("async_transport"),
            http_client=settings.get("http_client"),
            client_options={k: settings.get(k) for k in TRANSPORT_OPTIONS
                            if settings.get(k) is not None},
        )

    # -------------------------------------------------------------- identity

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.provider}/{self.model_id})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChatCompletionModel):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.provider, self.model_id))

    def get_model_info(self) -> dict[str, str]:
        return {"model_id": self.model_id, "provider": self.provider}

    def instance_type(self) -> dict[str, str]:
        return {"model_type": self.model_type}

    @property
    def sampling_params(self) -> dict[str, Any]:
        """The sampling defaults this model sends (only those that were set)."""
        return {k: self._settings.get(k) for k in _SAMPLING if self._settings.get(k) is not None}

    def serialize(self) -> dict[str, Any]:
        """A JSON-serialisable description of this model; never contains the API key."""
        state = {"model_id": self.model_id, **serializable_state(self._settings.options)}
        return {"msgflux_type": "model", "provider": self.provider,
                "model_type": self.model_type, "state": state}

    @property
    def profile(self) -> ModelProfile | None:
        """The model's profile from the bundled models.dev data (``None`` when unknown)."""
        return self._wiring.profile

    # -------------------------------------------------------------- calling

    def prepare(self, messages: Any, *, system_prompt: str | None = None,
                prefilling: str | None = None, stream: bool = False,
                generation_schema: Any = None, typed_parser: str | None = None,
                tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                timeout: Any = None, max_retries: Any = None) -> PreparedCall:
        """Check a call and build its request without sending anything.

        Takes what calling the model takes; ``.run()`` / ``await .arun()`` sends it,
        ``.request`` is the provider-neutral request.
        """
        return prepare(self._wiring, self._settings, messages, system_prompt=system_prompt,
                       prefilling=prefilling, stream=stream,
                       generation_schema=generation_schema, typed_parser=typed_parser,
                       tool_schemas=tool_schemas, tool_choice=tool_choice,
                       extra_body=extra_body, timeout=timeout, max_retries=max_retries)

    def __call__(self, messages: Any, *, system_prompt: str | None = None,
                 prefilling: str | None = None, stream: bool = False,
                 generation_schema: Any = None, typed_parser: str | None = None,
                 tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                 timeout: Any = None, max_retries: Any = None
                 ) -> ModelResponse | ModelStreamResponse:
        """Send ``messages`` and return the answer (see :mod:`msgflux.models.response`)."""
        return self.prepare(
            messages, system_prompt=system_prompt, prefilling=prefilling, stream=stream,
            generation_schema=generation_schema, typed_parser=typed_parser,
            tool_schemas=tool_schemas, tool_choice=tool_choice, extra_body=extra_body,
            timeout=timeout, max_retries=max_retries,
        ).run()

    async def acall(self, messages: Any, *, system_prompt: str | None = None,
                    prefilling: str | None = None, stream: bool = False,
                    generation_schema: Any = None, typed_parser: str | None = None,
                    tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                    timeout: Any = None, max_retries: Any = None
                    ) -> ModelResponse | ModelStreamResponse:
        """The async twin of calling the model, with the same semantics."""
        return await self.prepare(
            messages, system_prompt=system_prompt, prefilling=prefilling, stream=stream,
            generation_schema=generation_schema, typed_parser=typed_parser,
            tool_schemas=tool_schemas, tool_choice=tool_choice, extra_body=extra_body,
            timeout=timeout, max_retries=max_retries,
        ).arun()

    # -------------------------------------------------------------- closing

    def close(self) -> None:
        """Close this model's connection pools (sync; async pools of finished loops too)."""
        self._wiring.close()

    async def aclose(self) -> None:
        """Close this model's connection pools."""
        await self._wiring.aclose()

    def __enter__(self) -> ChatCompletionModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatCompletionModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
