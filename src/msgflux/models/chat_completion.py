"""``ChatCompletionModel``: one model of one provider, callable sync and async.

This class holds a model's identity and options; each call is prepared and run
by :mod:`msgflux.models.call` (argument checking lives in
:mod:`msgflux.models.options`). Everything that can be wrong with the input
fails before the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgflux.exceptions import InvalidParameterError
from msgflux.models.call import PreparedCall, Wiring, prepare, prepare_plain
from msgflux.models.dialects import get_dialect
from msgflux.models.options import (
    LOOP_ARGS,
    TRANSPORT_OPTIONS,
    ModelSettings,
    cache_spec,
    call_sampling,
    serializable_state,
)
from msgflux.models.providers.registry import (
    get_provider,
    resolve_api_key,
    resolve_base_url,
    serving_row,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from msgflux.batch.runner import BatchResult
    from msgflux.models.cache import CacheBackend
    from msgflux.models.profiles.types import ModelProfile
    from msgflux.models.response import ModelResponse, ModelStreamResponse
    from msgflux.models.tokens import TokenCount

__all__ = ["ChatCompletionModel"]

_ENGINE_OPTIONS = ("n_threads", "n_ctx", "n_parallel")


class ChatCompletionModel:
    """A chat model of any provider. Build it with ``mf.Model.chat_completion("provider/model")``.

    Constructor parameters: ``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``, ``reasoning_effort``, ``parallel_tool_calls`` (sampling defaults
    sent with every call); ``base_url``, ``api_key`` (else the provider's
    ``<PROVIDER>_BASE_URL`` / key variables); ``timeout`` (seconds allowed for
    each wait — connect, first byte, every gap between chunks — or a ``Timeouts``
    / dict with ``connect``, ``first_byte``, ``idle``, ``total``); ``max_retries``
    (an int, or a ``mf.RetryPolicy`` that also sets the backoff and the
    ``Retry-After`` cap); ``enable_cache``, ``cache_size`` (the in-memory LRU);
    ``cache`` (``"sqlite:///answers.db"``, ``"redis://host:6379/0"``, ``"memory"``
    or a :class:`~msgflux.models.cache.CacheBackend`), ``cache_ttl`` (seconds);
    ``extra_body`` (provider-specific body fields, sent as given);
    ``extra_headers``; ``check_capabilities`` (refuse requests the model's
    profile says it cannot serve); ``api`` (``"responses"`` or
    ``"chat_completions"``: which of OpenAI's two APIs an OpenAI-compatible
    provider is called through; by default Chat Completions, except for models
    only the Responses API serves); ``transport`` / ``async_transport`` (what
    carries the bytes: any :class:`msgflux.transport.Transport` /
    ``AsyncTransport``; msgflux's own HTTP clients by default); ``http_client``
    (an ``httpx.Client`` and/or ``httpx.AsyncClient``, or a tuple of both: calls go
    through it, with msgflux's timeouts, limits and no redirects on top);
    ``verify``, ``cert``, ``proxy``, ``trust_env`` (TLS and proxy settings of
    msgflux's own clients) and ``max_response_bytes`` (the largest answer, or
    streamed event, accepted: 64 MiB); ``hooks``
    (callables receiving this model's :mod:`msgflux.observe` events);
    ``pricing`` (USD per million tokens: ``{"input", "output", "cache_read",
    "cache_write", "cache_write_1h", "reasoning"}``; without it ``metadata.cost``
    uses the bundled list prices, and only when calls go to the provider's own
    endpoint); ``prompt_cache`` (``True``, ``"1h"`` or a dict with ``auto``, ``ttl``,
    ``key``, ``retention``: the provider's prompt cache; also per call);
    ``n_threads``, ``n_ctx``, ``n_parallel`` (the embedded ``llamacpp`` engine only).
    """

    model_type = "chat_completion"

    def __init__(self, model_id: str, *, provider: str = "openai", **kwargs: Any) -> None:
        settings = ModelSettings(kwargs)
        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidParameterError(f"model_id must be a non-empty str, got {model_id!r}")
        # The provider's row, or the same provider over OpenAI's Responses API.
        row = serving_row(get_provider(provider), model_id, settings.get("api"))
        self.model_id = model_id
        self.provider = row.id
        self._settings = settings
        spec = cache_spec(settings.options)
        self._response_cache: CacheBackend | None = None
        if spec is not None:  # (the cache modules load only for a model that caches)
            from msgflux.models.cache import open_cache

            self._response_cache = open_cache(spec, settings.get("cache_size", 128),
                                              settings.get("cache_ttl"))
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
            pricing=settings.pricing,
            hooks=settings.hooks,
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
        return dict(self._settings.sampling())  # a copy: the model keeps its own

    def serialize(self) -> dict[str, Any]:
        """A JSON-serialisable description of this model; never contains the API key."""
        state = {"model_id": self.model_id, **serializable_state(self._settings.options)}
        return {"msgflux_type": "model", "provider": self.provider,
                "model_type": self.model_type, "state": state}

    @property
    def profile(self) -> ModelProfile | None:
        """The model's profile from the bundled models.dev data (``None`` when unknown)."""
        return self._wiring.profile

    @property
    def hooks(self) -> tuple[Any, ...]:
        """The hooks given at construction (``msgflux.observe`` events of this model)."""
        return self._wiring.hooks

    # -------------------------------------------------------------- calling

    def prepare(self, messages: Any, *, system_prompt: str | None = None,
                prefilling: str | None = None, stream: bool = False,
                generation_schema: Any = None, typed_parser: str | None = None,
                tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                timeout: Any = None, max_retries: Any = None, prompt_cache: Any = None,
                structured_mode: Any = None,
                max_validation_retries: Any = None, **sampling: Any) -> PreparedCall:
        """Check a call and build its request without sending anything.

        Takes what calling the model takes (except the tool loop's keywords);
        ``.run()`` / ``await .arun()`` sends exactly that one request, ``.request``
        is the provider-neutral request.
        """
        return self._prepare(messages, system_prompt, prefilling, stream, generation_schema,
                             typed_parser, tool_schemas, tool_choice, extra_body, timeout,
                             max_retries, prompt_cache, structured_mode,
                             max_validation_retries, sampling, ())

    def _prepare(self, messages: Any, system_prompt: Any, prefilling: Any, stream: Any,
                 generation_schema: Any, typed_parser: Any, tool_schemas: Any, tool_choice: Any,
                 extra_body: Any, timeout: Any, max_retries: Any, prompt_cache: Any,
                 structured_mode: Any, max_validation_retries: Any, sampling: dict[str, Any],
                 extra: tuple[str, ...]) -> PreparedCall:
        if (tool_schemas is None and prefilling is None
                and typed_parser is None and tool_choice is None and extra_body is None
                and prompt_cache is None and structured_mode is None
                and max_validation_retries is None and not sampling):
            # A plain call (most calls), or one with a schema alone, takes the short way
            # (the same request).
            return prepare_plain(self._wiring, self._settings, messages, system_prompt, stream,
                                 timeout, max_retries, generation_schema)
        return prepare(self._wiring, self._settings, messages, system_prompt=system_prompt,
                       prefilling=prefilling, stream=stream,
                       generation_schema=generation_schema, typed_parser=typed_parser,
                       tool_schemas=tool_schemas, tool_choice=tool_choice,
                       extra_body=extra_body, timeout=timeout, max_retries=max_retries,
                       structured_mode=structured_mode,
                       max_validation_retries=max_validation_retries,
                       prompt_cache=prompt_cache, sampling=call_sampling(sampling, extra))

    def __call__(self, messages: Any, *, system_prompt: str | None = None,
                 prefilling: str | None = None, stream: bool = False,
                 generation_schema: Any = None, typed_parser: str | None = None,
                 tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                 timeout: Any = None, max_retries: Any = None, prompt_cache: Any = None,
                 structured_mode: Any = None,
                 max_validation_retries: Any = None, run_tools: bool = False,
                 max_steps: Any = None, tool_errors: Any = None, **sampling: Any
                 ) -> ModelResponse | ModelStreamResponse:
        """Send ``messages`` and return the answer (see :mod:`msgflux.models.response`).

        Sampling options (``temperature``, ``max_tokens``, ``top_p``, ``stop``,
        ``seed``, ``reasoning_effort``, ``parallel_tool_calls``) override the
        model's for this call. ``generation_schema`` answers are planned per model
        (``structured_mode=`` forces a mode) and re-asked up to
        ``max_validation_retries`` times when they do not validate.
        ``run_tools=True`` runs the functions among ``tool_schemas`` and calls the
        model again until it answers (``max_steps``, ``tool_errors``): see
        :mod:`msgflux.models.tool_loop`.
        """
        call = self._prepare(messages, system_prompt, prefilling, stream, generation_schema,
                             typed_parser, tool_schemas, tool_choice, extra_body, timeout,
                             max_retries, prompt_cache, structured_mode,
                             max_validation_retries, sampling, LOOP_ARGS)
        if run_tools:
            from msgflux.models.tool_loop import ToolLoop

            return ToolLoop(call, max_steps, tool_errors).run()
        return call.answer()

    async def acall(self, messages: Any, *, system_prompt: str | None = None,
                    prefilling: str | None = None, stream: bool = False,
                    generation_schema: Any = None, typed_parser: str | None = None,
                    tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                    timeout: Any = None, max_retries: Any = None, prompt_cache: Any = None,
                    structured_mode: Any = None,
                    max_validation_retries: Any = None, run_tools: bool = False,
                    max_steps: Any = None, tool_errors: Any = None, **sampling: Any
                    ) -> ModelResponse | ModelStreamResponse:
        """The async twin of calling the model, with the same semantics."""
        call = self._prepare(messages, system_prompt, prefilling, stream, generation_schema,
                             typed_parser, tool_schemas, tool_choice, extra_body, timeout,
                             max_retries, prompt_cache, structured_mode,
                             max_validation_retries, sampling, LOOP_ARGS)
        if run_tools:
            from msgflux.models.tool_loop import ToolLoop

            return await ToolLoop(call, max_steps, tool_errors).arun()
        return await call.aanswer()

    # -------------------------------------------------------------- counting

    def count_tokens(self, messages: Any, *, system_prompt: str | None = None,
                     tool_schemas: Any = None, generation_schema: Any = None,
                     prefilling: str | None = None, timeout: Any = None,
                     max_retries: Any = None) -> TokenCount:
        """The prompt's size in tokens, as this model would be sent it.

        Counted by the provider where it can (Anthropic, Gemini, a llama.cpp server:
        ``exact`` is True), estimated from the characters elsewhere (``exact`` is
        False). Takes what calling the model takes.
        """
        from msgflux.models.tokens import count

        return count(self._counted(messages, system_prompt, tool_schemas, generation_schema,
                                   prefilling, timeout, max_retries))

    async def acount_tokens(self, messages: Any, *, system_prompt: str | None = None,
                            tool_schemas: Any = None, generation_schema: Any = None,
                            prefilling: str | None = None, timeout: Any = None,
                            max_retries: Any = None) -> TokenCount:
        """The async twin of :meth:`count_tokens`."""
        from msgflux.models.tokens import acount

        return await acount(self._counted(messages, system_prompt, tool_schemas,
                                          generation_schema, prefilling, timeout, max_retries))

    def _counted(self, messages: Any, system_prompt: Any, tool_schemas: Any,
                 generation_schema: Any, prefilling: Any, timeout: Any, max_retries: Any
                 ) -> PreparedCall:
        return prepare(self._wiring, self._settings, messages, system_prompt=system_prompt,
                       tool_schemas=tool_schemas, generation_schema=generation_schema,
                       prefilling=prefilling, timeout=timeout, max_retries=max_retries,
                       check=False)

    # -------------------------------------------------------------- batches

    def batch(self, inputs: Iterable[Any], *, concurrency: int | None = None,
              rpm: float | None = None, tpm: float | None = None, checkpoint: Any = None,
              progress: Any = None, **call_kwargs: Any) -> BatchResult:
        """Run every input and return the results in input order (blocking).

        Each input is what calling the model accepts: a prompt, a list of messages,
        or a dict of call arguments with ``messages`` (and an ``id`` kept on the
        result). ``call_kwargs`` (``system_prompt``, ``generation_schema``,
        ``tool_schemas``...) apply to every item. ``concurrency``: calls in flight
        (default 16; the engine's ``n_parallel`` slots for ``llamacpp``);
        ``rpm``/``tpm``: requests and tokens per minute; ``checkpoint``: a SQLite
        file where each finished item is stored, so a rerun does only what is
        missing; ``progress``: a bar on a terminal (``None``), always (``True``),
        never (``False``). One item's failure is kept on its result, never raised.
        """
        from msgflux.batch.runner import run_batch

        slots = self._slots() if concurrency is None else concurrency
        return run_batch(self, inputs, concurrency=slots, rpm=rpm, tpm=tpm,
                         checkpoint=checkpoint, progress=progress, **call_kwargs)

    async def abatch(self, inputs: Iterable[Any], *, concurrency: int | None = None,
                     rpm: float | None = None, tpm: float | None = None,
                     checkpoint: Any = None, progress: Any = None,
                     **call_kwargs: Any) -> BatchResult:
        """:meth:`batch` on the running event loop."""
        from msgflux.batch.runner import arun_batch

        slots = self._slots() if concurrency is None else concurrency
        return await arun_batch(self, inputs, concurrency=slots, rpm=rpm, tpm=tpm,
                                checkpoint=checkpoint, progress=progress, **call_kwargs)

    def _slots(self) -> int:
        """Default calls in flight: an embedded engine's parallel slots, else 16."""
        if self._wiring.row.engine is not None:
            return self._settings.get("n_parallel") or 1
        return 16

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
