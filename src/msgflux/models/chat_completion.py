"""``ChatCompletionModel``: one model of one provider, callable sync and async.

Each call runs the same pure steps on both paths — normalise the input, build
the neutral :class:`~msgflux.models.request.ChatRequest`, consult the cache,
let the provider's dialect encode it — then hands bytes to the transport and
the answer back through the dialect, shaped by output mode (text, structured,
tool calls). Everything that can be wrong with the input fails before the
network.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from msgflux.dotdict import dotdict
from msgflux.exceptions import (
    InvalidParameterError,
    MsgfluxError,
    OutputTruncatedError,
    PrefillNotSupportedError,
    RefusalError,
    _redact,
)
from msgflux.models.cache import ResponseCache, cache_key
from msgflux.models.dialects import get_dialect
from msgflux.models.dialects.base import Endpoint
from msgflux.models.messages import to_messages
from msgflux.models.providers.registry import (
    get_provider,
    resolve_api_key,
    resolve_base_url,
)
from msgflux.models.request import (
    ChatRequest,
    Completion,
    Delta,
    ImagePart,
    TextPart,
    ToolChoice,
    ToolSpec,
    Usage,
    with_refusal,
)
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.structured import CompiledSchema, compile_schema, decode_structured
from msgflux.models.tool_calls import ToolCallAggregator

if TYPE_CHECKING:
    from msgflux._transport.retry import RetryPolicy
    from msgflux._transport.types import Timeouts
    from msgflux.models.stream import AsyncSource, StreamAssembler, SyncSource

__all__ = ["ChatCompletionModel"]

_SENTINEL: Any = object()

# Constructor arguments that are ours; anything else is a typo or belongs in extra_body.
_INIT_ARGS = (
    "base_url", "api_key", "temperature", "max_tokens", "top_p", "stop", "seed",
    "reasoning_effort", "parallel_tool_calls", "timeout", "max_retries", "enable_cache",
    "cache_size", "extra_body", "extra_headers", "check_capabilities", "n_threads", "n_ctx",
    "n_parallel",
)
_CALL_ARGS = (
    "messages", "system_prompt", "prefilling", "stream", "generation_schema", "typed_parser",
    "tool_schemas", "tool_choice", "extra_body", "timeout", "max_retries",
)
_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "signature")


def _loop_running() -> bool:
    """Is an event loop running in this thread? (asyncio is not imported just to ask.)"""
    aio = sys.modules.get("asyncio")
    return aio is not None and aio._get_running_loop() is not None


class _Call(msgspec.Struct):
    """One prepared call: the neutral request plus how to read the answer."""

    request: ChatRequest
    compiled: CompiledSchema | None
    parser: Any
    parser_name: str | None
    timeouts: Any
    policy: Any


class ChatCompletionModel:
    """A chat model of any provider. Build it with ``mf.Model.chat_completion("provider/model")``.

    Constructor parameters: ``temperature``, ``max_tokens``, ``top_p``, ``stop``,
    ``seed``, ``reasoning_effort``, ``parallel_tool_calls`` (sampling defaults
    sent with every call); ``base_url``, ``api_key`` (else the provider's
    ``<PROVIDER>_BASE_URL`` / key variables); ``timeout`` (seconds for the whole
    attempt, or a ``Timeouts`` / dict with ``connect``, ``first_byte``, ``idle``,
    ``total``); ``max_retries`` (an int, or a ``mf.RetryPolicy`` that also sets the
    backoff and the ``Retry-After`` cap); ``enable_cache``, ``cache_size``;
    ``extra_body`` (provider-specific body fields, sent as given);
    ``extra_headers``; ``check_capabilities`` (refuse requests the model's
    profile says it cannot serve); ``n_threads``, ``n_ctx``, ``n_parallel`` (the
    embedded ``llamacpp`` engine only).
    """

    model_type = "chat_completion"

    def __init__(self, model_id: str, *, provider: str = "openai", **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(_INIT_ARGS))
        if unknown:
            raise InvalidParameterError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} for a chat model. "
                f"Accepted: {', '.join(_INIT_ARGS)}. Provider-specific body fields go in "
                f"extra_body={{...}}."
            )
        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidParameterError(f"model_id must be a non-empty str, got {model_id!r}")
        row = get_provider(provider)
        self.model_id = model_id
        self.provider = row.id
        self._row = row
        self._options = _validated_options(kwargs)
        opts = self._options
        self._base_url_arg: str | None = opts.get("base_url")
        self._api_key = resolve_api_key(row, kwargs.get("api_key"))
        self._explicit_key = kwargs.get("api_key") is not None
        self._endpoint_value: Endpoint | None = None
        self._endpoint_lock = threading.Lock()
        if row.engine is None:
            self._endpoint_value = self._build_endpoint(resolve_base_url(row, self._base_url_arg))
        self._dialect = get_dialect(row.dialect)
        self._timeouts = _timeouts(opts.get("timeout"))
        self._policy = _policy(opts.get("max_retries"))
        self._response_cache: ResponseCache | None = (
            ResponseCache(opts.get("cache_size", 128)) if opts.get("enable_cache") else None
        )
        self._transport: Any = None
        self._atransport: Any = None
        self._transport_lock = threading.Lock()
        self._profile: Any = _SENTINEL

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
        keys = ("temperature", "max_tokens", "top_p", "stop", "seed", "reasoning_effort")
        return {k: self._options[k] for k in keys if self._options.get(k) is not None}

    def serialize(self) -> dict[str, Any]:
        """A JSON-serialisable description of this model; never contains the API key."""
        state: dict[str, Any] = {"model_id": self.model_id}
        for key, value in self._options.items():
            if key == "api_key" or value is None:
                continue
            if key == "extra_headers":
                value = {k: v for k, v in value.items()
                         if not any(w in k.lower() for w in _SECRET_HEADER_WORDS)}
            elif key == "timeout" and not isinstance(value, (int, float)):
                value = msgspec.to_builtins(_timeouts(value))
            elif key == "max_retries" and not isinstance(value, int):
                value = msgspec.to_builtins(_policy(value))
            state[key] = value
        return {"msgflux_type": "model", "provider": self.provider,
                "model_type": self.model_type, "state": state}

    @property
    def profile(self) -> Any:
        """The model's profile from the bundled models.dev data (``None`` when unknown)."""
        if self._profile is _SENTINEL:
            from msgflux.models.profiles import get_model_profile

            self._profile = get_model_profile(self.model_id, provider_id=self.provider)
        return self._profile

    # -------------------------------------------------------------- endpoint and transport

    def _build_endpoint(self, base_url: str | None) -> Endpoint:
        if not base_url:
            raise InvalidParameterError(
                f"Provider {self.provider!r} has no default base URL: pass base_url=..."
            )
        headers = tuple((k.lower(), str(v)) for k, v in
                        (self._options.get("extra_headers") or {}).items())
        return Endpoint(self.provider, base_url.rstrip("/"), self._api_key, headers,
                        self._row.quirks)

    @property
    def _endpoint(self) -> Endpoint:
        endpoint = self._endpoint_value
        if endpoint is None:
            with self._endpoint_lock:
                if self._endpoint_value is None:
                    self._endpoint_value = self._build_endpoint(self._engine_base_url())
                endpoint = self._endpoint_value
        return endpoint

    def _engine_base_url(self) -> str:
        from msgflux.models.providers.llamacpp import EngineOptions, get_engine, resolve_gguf

        opts = {k: self._options[k] for k in ("n_threads", "n_ctx", "n_parallel")
                if self._options.get(k) is not None}
        return get_engine(resolve_gguf(self.model_id), EngineOptions(**opts)).base_url

    def _sync_transport(self) -> Any:
        transport = self._transport
        if transport is None:
            with self._transport_lock:
                if self._transport is None:
                    from msgflux._transport.sync_client import SyncTransport

                    self._transport = SyncTransport()
                transport = self._transport
        return transport

    def _async_transport(self) -> Any:
        transport = self._atransport
        if transport is None:
            with self._transport_lock:
                if self._atransport is None:
                    from msgflux._transport.async_client import AsyncTransport

                    self._atransport = AsyncTransport()
                transport = self._atransport
        return transport

    def close(self) -> None:
        """Close this model's connection pools (sync; async pools of finished loops too)."""
        if self._transport is not None:
            self._transport.close()

    async def aclose(self) -> None:
        """Close this model's connection pools."""
        if self._atransport is not None:
            await self._atransport.aclose()
        self.close()

    def __enter__(self) -> ChatCompletionModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatCompletionModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- preparing a call

    def _prepare(self, messages: Any, system_prompt: str | None, prefilling: str | None,
                 stream: bool, generation_schema: Any, typed_parser: str | None,
                 tool_schemas: Any, tool_choice: Any, extra_body: Any, timeout: Any,
                 max_retries: Any) -> _Call:
        opts = self._options
        msgs = to_messages(messages, system_prompt)
        tools = _tool_specs(tool_schemas)
        choice = _tool_choice(tool_choice, tools)
        compiled = compile_schema(generation_schema) if generation_schema is not None else None
        parser = parser_name = None
        if typed_parser is not None:
            if not isinstance(typed_parser, str):
                raise InvalidParameterError(
                    f"typed_parser must be a parser name such as 'typed_xml', got {typed_parser!r}"
                )
            if compiled is not None:
                raise InvalidParameterError(
                    "Pass either generation_schema or typed_parser, not both."
                )
            from msgflux.dsl.typed_parsers import get_typed_parser

            parser = get_typed_parser(typed_parser)
            parser_name = typed_parser
        if prefilling is not None:
            if not isinstance(prefilling, str):
                raise InvalidParameterError("prefilling must be a str")
            if compiled is not None:
                raise InvalidParameterError(
                    "prefilling cannot be combined with generation_schema: the schema already "
                    "fixes how the answer starts."
                )
            if self._row.quirks.prefill == "unsupported":
                raise PrefillNotSupportedError(
                    f"Provider {self.provider!r} does not continue a trailing assistant "
                    "message, so prefilling cannot work there. Use a provider that does "
                    "(anthropic, mistral, vllm, llamacpp, llamacpp-server, ...)."
                )
        extra = opts.get("extra_body")
        if extra_body is not None:
            if not isinstance(extra_body, Mapping):
                raise InvalidParameterError("extra_body must be a dict")
            extra = {**(extra or {}), **extra_body}
        stop = opts.get("stop")
        max_tokens = opts.get("max_tokens")
        if max_tokens is None and getattr(self._dialect, "REQUIRES_MAX_TOKENS", False):
            max_tokens = self._profile_output_limit()
        request = ChatRequest(
            model=self.model_id,
            messages=msgs,
            temperature=opts.get("temperature"),
            top_p=opts.get("top_p"),
            max_tokens=max_tokens,
            stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop else None),
            seed=opts.get("seed"),
            reasoning_effort=opts.get("reasoning_effort"),
            tools=tools,
            tool_choice=choice,
            parallel_tool_calls=opts.get("parallel_tool_calls") if tools else None,
            output=compiled.output if compiled is not None else None,
            prefill=prefilling,
            stream=bool(stream),
            extra=extra,
        )
        if opts.get("check_capabilities", True):
            self._check(request)
        return _Call(
            request,
            compiled,
            parser,
            parser_name,
            _timeouts(timeout) if timeout is not None else self._timeouts,
            _policy(max_retries) if max_retries is not None else self._policy,
        )

    def _profile_output_limit(self) -> int | None:
        """The model's output limit from its profile (for dialects that require max_tokens)."""
        profile = self.profile
        limit = profile.limits.output if profile is not None else None
        return limit or None

    def _check(self, request: ChatRequest) -> None:
        profile = self.profile
        if profile is None:
            return
        from msgflux.models.profiles import check_request

        chars = 0
        images = False
        for message in request.messages:
            content = message.content
            if isinstance(content, str):
                chars += len(content)
            elif content:
                for part in content:
                    if isinstance(part, TextPart):
                        chars += len(part.text)
                    elif isinstance(part, ImagePart):
                        images = True
        check_request(
            profile,
            has_tools=bool(request.tools),
            has_schema=request.output is not None,
            has_images=images,
            # ~4 characters a token in English; divide by 6 so the estimate stays low.
            estimated_prompt_tokens=chars // 6,
            max_tokens=request.max_tokens,
        )

    # -------------------------------------------------------------- shaping answers

    def _metadata(self, usage: Usage | None, finish_reason: str | None, model: str | None,
                  refusal: str | None) -> dotdict:
        return dotdict(
            usage=_usage_dict(usage) if usage is not None else None,
            finish_reason=finish_reason,
            model=model or self.model_id,
            provider=self.provider,
            cost=self._cost(usage),
            refusal=refusal,
        )

    def _cost(self, usage: Usage | None) -> float | None:
        if usage is None:
            return None
        profile = self.profile
        if profile is None:
            return None
        return profile.cost.calculate(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens or 0,
            cache_write_tokens=usage.cache_write_tokens or 0,
            reasoning_tokens=usage.reasoning_tokens or 0,
        )

    def _with_prefill(self, text: str | None, prefill: str | None) -> str:
        text = text or ""
        if prefill is not None and not self._row.quirks.prefill_echoed(stream=False):
            return prefill + text
        return text

    def _decode_text(self, call: _Call, text: str, finish_reason: str | None,
                     refusal: str | None) -> tuple[str, Any]:
        """The answer by output mode. ``text`` includes a refusal's text, if any: a text
        call answers with it; a structured call raises RefusalError, as a refusal is
        no malformed answer."""
        if refusal is not None and (call.compiled is not None or call.parser is not None):
            raise RefusalError(refusal, raw=text)
        if call.compiled is not None:
            if finish_reason == "length":
                raise OutputTruncatedError(
                    "The structured answer was cut off at the token limit "
                    "(finish_reason 'length'); raise max_tokens.", raw=text,
                )
            return "structured", decode_structured(call.compiled, text)
        if call.parser is not None:
            return "structured", call.parser.decode(text)
        return "text_generation", text

    def _shape(self, call: _Call, completion: Completion) -> ModelResponse:
        refusal = completion.refusal
        meta = self._metadata(completion.usage, completion.finish_reason, completion.model,
                              refusal)
        if completion.tool_calls:
            agg = ToolCallAggregator.from_calls(completion.tool_calls)
            agg.text = completion.text or None
            agg.reasoning = completion.reasoning
            agg.reasoning_blocks = completion.reasoning_blocks
            return ModelResponse(agg, "tool_call", meta, completion.reasoning)
        text = self._with_prefill(completion.text, call.request.prefill)
        if refusal is not None:
            text = with_refusal(text, refusal)
        kind, data = self._decode_text(call, text, completion.finish_reason, refusal)
        return ModelResponse(data, kind, meta, completion.reasoning)

    # -------------------------------------------------------------- the network

    def _attempt(self, http_request: Any, call: _Call) -> bytes:
        response = self._sync_transport().send(http_request, call.timeouts)
        if not 200 <= response.status < 300:
            raise self._error(response.status, response.headers, response.body)
        return response.body

    async def _aattempt(self, http_request: Any, call: _Call) -> bytes:
        response = await self._async_transport().send(http_request, call.timeouts)
        if not 200 <= response.status < 300:
            raise self._error(response.status, response.headers, response.body)
        return response.body

    def _error(self, status: int, headers: list[tuple[str, str]], body: bytes) -> Exception:
        from msgflux._transport.retry import retry_after_from_headers

        error = self._dialect.parse_error(status, headers, body, self.provider,
                                          retry_after=retry_after_from_headers(headers))
        return _redact(error, self._api_key)  # some servers quote the key back

    def _parse(self, body: bytes, call: _Call) -> Completion:
        try:
            return self._dialect.parse_response(body, call.request, self.provider)
        except MsgfluxError as e:  # an in-band error may quote the key back
            _redact(e, self._api_key)
            raise

    def _cached(self, call: _Call) -> tuple[bytes | None, ModelResponse | None]:
        """The cache key of a whole (non-stream) call and a copy of its hit, if any."""
        cache = self._response_cache
        if cache is None:
            return None, None
        key = cache_key(self.provider, self._endpoint.base_url, call.request, call.parser_name)
        hit = cache.get(key)
        return key, (hit.copy() if hit is not None else None)

    def _answer(self, call: _Call, key: bytes | None, body: bytes) -> ModelResponse:
        """Shape the answer; keep a copy under ``key`` so callers cannot change the cache."""
        result = self._shape(call, self._parse(body, call))
        if key is not None:
            self._response_cache.set(key, result.copy())  # type: ignore[union-attr]
        return result

    # -------------------------------------------------------------- calling

    def __call__(self, messages: Any, *, system_prompt: str | None = None,
                 prefilling: str | None = None, stream: bool = False,
                 generation_schema: Any = None, typed_parser: str | None = None,
                 tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                 timeout: Any = None, max_retries: Any = None
                 ) -> ModelResponse | ModelStreamResponse:
        """Send ``messages`` and return the answer (see the module and response docs)."""
        call = self._prepare(messages, system_prompt, prefilling, stream, generation_schema,
                             typed_parser, tool_schemas, tool_choice, extra_body, timeout,
                             max_retries)
        if call.request.stream:
            response = ModelStreamResponse(_StreamCall(self, call))
            if response.response_type is None or not _loop_running():
                response._start_sync()
            return response
        key, hit = self._cached(call)
        if hit is not None:
            return hit
        from msgflux._transport.retry import call_with_retries

        http_request = self._dialect.build_request(call.request, self._endpoint)
        body = call_with_retries(lambda: self._attempt(http_request, call), call.policy)
        return self._answer(call, key, body)

    async def acall(self, messages: Any, *, system_prompt: str | None = None,
                    prefilling: str | None = None, stream: bool = False,
                    generation_schema: Any = None, typed_parser: str | None = None,
                    tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
                    timeout: Any = None, max_retries: Any = None
                    ) -> ModelResponse | ModelStreamResponse:
        """The async twin of calling the model, with the same semantics."""
        call = self._prepare(messages, system_prompt, prefilling, stream, generation_schema,
                             typed_parser, tool_schemas, tool_choice, extra_body, timeout,
                             max_retries)
        if self._endpoint_value is None:
            import asyncio

            await asyncio.to_thread(lambda: self._endpoint)  # an engine start must not block
        if call.request.stream:
            response = ModelStreamResponse(_StreamCall(self, call))
            await response._start_async()
            return response
        key, hit = self._cached(call)
        if hit is not None:
            return hit
        from msgflux._transport.retry import acall_with_retries

        http_request = self._dialect.build_request(call.request, self._endpoint)
        body = await acall_with_retries(lambda: self._aattempt(http_request, call), call.policy)
        return self._answer(call, key, body)


class _StreamCall:
    """What a ModelStreamResponse needs from its model: opening, retrying, finishing."""

    __slots__ = ("call", "default_type", "known_type", "lead", "model")

    def __init__(self, model: ChatCompletionModel, call: _Call) -> None:
        self.model = model
        self.call = call
        request = call.request
        structured = call.compiled is not None or call.parser is not None
        self.default_type = "structured" if structured else "text_generation"
        tools_possible = bool(request.tools) and not (
            request.tool_choice is not None and request.tool_choice.mode == "none"
        )
        self.known_type = None if tools_possible else self.default_type
        # When the server streams only the continuation, the prefix leads the stream.
        prefill = request.prefill
        echoed = model._row.quirks.prefill_echoed(stream=True)
        self.lead = Delta(text=prefill) if prefill and not echoed else None

    def open_sync(self) -> SyncSource:
        from msgflux.models.stream import SyncSource

        model = self.model
        http_request = model._dialect.build_request(self.call.request, model._endpoint)
        stream = model._sync_transport().open_stream(http_request, self.call.timeouts)
        if not 200 <= stream.status < 300:
            body = stream.read()
            stream.close()
            raise model._error(stream.status, stream.headers, body)
        return SyncSource(stream, model._dialect.stream_decoder(self.call.request, model.provider),
                          model._api_key)

    async def open_async(self) -> AsyncSource:
        from msgflux.models.stream import AsyncSource

        model = self.model
        http_request = model._dialect.build_request(self.call.request, model._endpoint)
        stream = await model._async_transport().open_stream(http_request, self.call.timeouts)
        if not 200 <= stream.status < 300:
            body = await stream.read()
            await stream.aclose()
            raise model._error(stream.status, stream.headers, body)
        return AsyncSource(stream, model._dialect.stream_decoder(self.call.request,
                                                                 model.provider),
                           model._api_key)

    def retry(self, attempt: Callable[[], None]) -> None:
        from msgflux._transport.retry import call_with_retries

        call_with_retries(attempt, self.call.policy)

    async def aretry(self, attempt: Callable[[], Any]) -> None:
        from msgflux._transport.retry import acall_with_retries

        await acall_with_retries(attempt, self.call.policy)

    def finish(self, asm: StreamAssembler) -> tuple[str, Any, dotdict]:
        model = self.model
        refusal = asm.refusal
        meta = model._metadata(asm.usage, asm.finish_reason, asm.model, refusal)
        agg = asm.aggregator()
        if agg is not None:
            return "tool_call", agg, meta
        kind, data = model._decode_text(self.call, asm.text, asm.finish_reason, refusal)
        return kind, data, meta


# ---------------------------------------------------------------- argument checking


def _validated_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    opts = dict(kwargs)
    opts.pop("api_key", None)

    def number(name: str, low: float, high: float | None = None) -> None:
        value = opts.get(name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low or (
                high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f">= {low}"
            raise InvalidParameterError(f"{name} must be a number {bound}, got {value!r}")

    def integer(name: str, low: int) -> None:
        value = opts.get(name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidParameterError(f"{name} must be an int >= {low}, got {value!r}")

    number("temperature", 0, 2)
    number("top_p", 0, 1)
    integer("max_tokens", 1)
    integer("seed", -(2**63))
    _policy(opts.get("max_retries"))
    integer("cache_size", 1)
    integer("n_threads", 1)
    integer("n_ctx", 256)
    integer("n_parallel", 1)
    stop = opts.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop))):
        raise InvalidParameterError(f"stop must be a str or a list of str, got {stop!r}")
    for name in ("extra_body", "extra_headers"):
        value = opts.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidParameterError(f"{name} must be a dict, got {type(value).__name__}")
        if value is not None:
            opts[name] = dict(value)
    effort = opts.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidParameterError(
            f"reasoning_effort must be a str such as 'low', 'medium' or 'high', got {effort!r}"
        )
    base_url = opts.get("base_url")
    if base_url is not None and not (isinstance(base_url, str)
                                     and base_url.startswith(("http://", "https://"))):
        raise InvalidParameterError(
            f"base_url must be an http(s) URL such as 'http://localhost:8000/v1', got {base_url!r}"
        )
    _timeouts(opts.get("timeout"))
    return opts


def _timeouts(value: Any) -> Timeouts:
    from msgflux._transport.types import Timeouts

    if value is None:
        return Timeouts()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        limit = float(value)
        defaults = Timeouts()
        return Timeouts(connect=min(defaults.connect or limit, limit), first_byte=limit,
                        idle=limit, total=limit)
    if isinstance(value, Mapping):
        fields = Timeouts.__struct_fields__
        unknown = sorted(str(k) for k in value if k not in fields)
        try:
            if unknown:
                raise msgspec.ValidationError(f"unknown key(s) {', '.join(unknown)}")
            value = msgspec.convert(dict(value), Timeouts)
        except msgspec.ValidationError as e:
            raise InvalidParameterError(
                f"timeout dict: {e}; keys are connect, first_byte, idle, total (seconds)"
            ) from None
    if not isinstance(value, Timeouts):
        raise InvalidParameterError(
            f"timeout must be seconds (a positive number), a dict or a Timeouts, got {value!r}"
        )
    for name in value.__struct_fields__:
        limit = getattr(value, name)
        # "not limit > 0" also refuses NaN: a limit that can never be met is a mistake.
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                                  or not limit > 0):
            raise InvalidParameterError(
                f"timeout {name} must be a positive number of seconds or None, got {limit!r}"
            )
    return value


def _policy(max_retries: Any) -> RetryPolicy:
    from msgflux._transport.retry import RetryPolicy

    if max_retries is None:
        return RetryPolicy()
    if isinstance(max_retries, Mapping):  # what serialize() writes for a RetryPolicy
        try:
            max_retries = msgspec.convert(dict(max_retries), RetryPolicy)
        except msgspec.ValidationError as e:
            raise InvalidParameterError(
                f"max_retries dict: {e}; keys are max_retries, backoff_base, backoff_max, "
                "retry_after_max"
            ) from None
    if isinstance(max_retries, RetryPolicy):
        fields = (max_retries.max_retries, max_retries.backoff_base, max_retries.backoff_max,
                  max_retries.retry_after_max)
        if isinstance(fields[0], int) and all(
                not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0
                for v in fields):
            return max_retries
        raise InvalidParameterError(f"max_retries: every RetryPolicy field must be >= 0, "
                                    f"got {max_retries!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InvalidParameterError(
            f"max_retries must be an int >= 0 or a mf.RetryPolicy, got {max_retries!r}"
        )
    return RetryPolicy(max_retries=max_retries)


def _tool_specs(tool_schemas: Any) -> tuple[ToolSpec, ...]:
    if not tool_schemas:
        return ()
    if isinstance(tool_schemas, (dict, str)) or not isinstance(tool_schemas, (list, tuple)):
        raise InvalidParameterError(
            "tool_schemas must be a list of tool dicts like "
            '{"type": "function", "function": {"name": ..., "parameters": {...}}}'
        )
    specs = []
    seen = set()
    for i, tool in enumerate(tool_schemas):
        if not isinstance(tool, Mapping):
            raise InvalidParameterError(f"tool_schemas[{i}] must be a dict")
        function = tool.get("function", tool) if tool.get("type", "function") == "function" \
            else None
        if not isinstance(function, Mapping):
            raise InvalidParameterError(
                f"tool_schemas[{i}] must be a function tool: "
                '{"type": "function", "function": {"name": ..., "parameters": {...}}}'
            )
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(f"tool_schemas[{i}] has no function name")
        if name in seen:
            raise InvalidParameterError(f"tool_schemas has two tools named {name!r}")
        seen.add(name)
        params = function.get("parameters")
        if params is not None and (not isinstance(params, Mapping)
                                   or params.get("type", "object") != "object"):
            raise InvalidParameterError(
                f"tool {name!r}: parameters must be a JSON Schema object "
                '({"type": "object", "properties": {...}})'
            )
        description = function.get("description")
        strict = function.get("strict")
        specs.append(ToolSpec(
            name,
            description if isinstance(description, str) else None,
            dict(params) if params is not None else None,
            strict if isinstance(strict, bool) else None,
        ))
    return tuple(specs)


def _tool_choice(choice: Any, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    if choice is None:
        return None
    if not tools:
        raise InvalidParameterError("tool_choice was given without tool_schemas")
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
        choice = name
    if choice in ("auto", "required", "none"):
        return ToolChoice(choice)
    if choice == "any":
        return ToolChoice("required")
    names = [t.name for t in tools]
    if isinstance(choice, str) and choice in names:
        return ToolChoice("tool", choice)
    raise InvalidParameterError(
        f"tool_choice must be 'auto', 'required', 'none' or one of the tool names {names}, "
        f"got {choice!r}"
    )


def _usage_dict(usage: Usage) -> dotdict:
    out = dotdict(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                  total_tokens=usage.total_tokens)
    if usage.cached_tokens is not None:
        out["cached_tokens"] = usage.cached_tokens
    if usage.cache_write_tokens is not None:
        out["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens is not None:
        out["reasoning_tokens"] = usage.reasoning_tokens
    return out
