"""One chat call, sync or async: prepare, cache, encode, send, decode, shape.

The route of a call reads top to bottom here::

    prepare()          caller input → neutral ChatRequest (+ how to read the answer)
    PreparedCall.run / arun
        cache lookup   a hit is an independent copy
        encode         dialect.build_request(request, endpoint) → HttpRequest
        send           transport.send, retried per RetryPolicy (RetryState)
        decode         dialect.parse_response → Completion (or a typed error)
        shape          text / structured / tool calls → ModelResponse, cached
    StreamCall         the same for a stream, driven by ModelStreamResponse

Everything here takes an explicit :class:`Wiring` — the dialect, endpoint,
transports, profile and cache of one model — never the model itself.

Observation (logging, hooks, OpenTelemetry) is :mod:`msgflux.observe`'s: a call
asks it once for an ``Observation`` (``None`` when nobody listens) and reports
through it from the few places that know the facts.
"""

from __future__ import annotations

import functools
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any

import msgspec

from msgflux._lazy import module
from msgflux._transport.retry import (
    CallBudget,
    RetryState,
    acall_with_retries,
    call_with_retries,
)
from msgflux.dotdict import dotdict
from msgflux.exceptions import (
    MsgfluxError,
    OutputTruncatedError,
    RefusalError,
    ResponseError,
    _redact,
)
from msgflux.models import options as opt
from msgflux.models import pricing
from msgflux.models.dialects.base import Endpoint
from msgflux.models.messages import to_messages
from msgflux.models.request import (
    ChatRequest,
    Completion,
    Delta,
    ToolChoice,
    Usage,
    with_refusal,
)
from msgflux.models.response import ModelResponse, ModelStreamResponse
from msgflux.models.stream import AsyncSource, Replay, SyncSource
from msgflux.models.tool_calls import ToolCallAggregator
from msgflux.observe import _observation

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from msgflux._transport.base import AsyncTransport, Transport
    from msgflux._transport.retry import RetryPolicy
    from msgflux._transport.types import HttpRequest, HttpResponse, Timeouts
    from msgflux.dsl.typed_parsers.base import TypedParser
    from msgflux.models.cache.base import CacheBackend
    from msgflux.models.dialects.base import Dialect, StreamDecoder
    from msgflux.models.partial import PartialJSON, PartialXML
    from msgflux.models.profiles.types import ModelCost, ModelProfile
    from msgflux.models.providers.registry import Provider
    from msgflux.models.request import Message
    from msgflux.models.stream import StreamAssembler
    from msgflux.models.structured import CompiledSchema
    from msgflux.models.structured_modes import Plan
    from msgflux.models.tools import Toolset

__all__ = ["PreparedCall", "StreamCall", "Wiring", "default_transport", "prepare",
           "prepare_plain"]

_UNSET: Any = object()


def default_transport(asynchronous: bool, options: dict[str, Any]) -> Any:
    """msgflux's own HTTP client for one model, made with the model's client options
    (``verify``, ``cert``, ``proxy``, ``trust_env``, ``max_response_bytes``).

    The one place a default transport is made: the test suite swaps it to run the
    transport-independent tests over the httpx backend too.
    """
    if asynchronous:
        from msgflux._transport.async_client import AsyncHTTPTransport

        return AsyncHTTPTransport(**options)
    from msgflux._transport.sync_client import HTTPTransport

    return HTTPTransport(**options)


class Wiring:
    """Where one model's calls go and what carries them, built once per model.

    What costs something is made on first use: the endpoint of an embedded
    engine (it starts the engine), the default transports, the profile.
    Transports handed in by the caller are theirs to close.
    """

    __slots__ = ("_async_transport", "_endpoint", "_lock", "_missing", "_own_async",
                 "_own_sync", "_prices", "_profile", "_transport", "api_key", "base_url", "cache",
                 "client_options", "dialect", "engine_options", "headers", "hooks", "model_id",
                 "plain", "plans", "pricing", "provider", "row", "structured_start")

    def __init__(self, model_id: str, row: Provider, dialect: Dialect, *,
                 api_key: str | None, base_url: str | None, headers: dict[str, Any] | None,
                 engine_options: dict[str, Any], cache: CacheBackend | None,
                 transport: Transport | None, async_transport: AsyncTransport | None,
                 pricing: ModelCost | None = None, hooks: tuple[Any, ...] = (),
                 http_client: Any = None, client_options: dict[str, Any] | None = None
                 ) -> None:
        self.model_id = model_id
        self.row = row
        self.provider = row.id
        self.dialect = dialect
        self.api_key = api_key
        self.base_url = base_url
        self.headers = tuple((k.lower(), str(v)) for k, v in (headers or {}).items())
        self.engine_options = engine_options
        self.cache = cache
        self.client_options = client_options or {}
        self._missing: str | None = None
        if http_client is not None:  # the caller's httpx client(s) carry the calls
            from msgflux._transport.httpx_backend import transports_for

            sync, asyn = transports_for(http_client, self.client_options)
            if (sync is None) != (asyn is None):
                self._missing = "blocking calls" if sync is None else "acall()"
            transport = transport or sync
            async_transport = async_transport or asyn
        self._transport = transport
        self._async_transport = async_transport
        self._own_sync = transport is None
        self._own_async = async_transport is None
        self._lock = threading.Lock()
        self._profile: Any = _UNSET
        self._prices: Any = _UNSET
        self.pricing = pricing
        self.hooks = hooks
        self._endpoint: Endpoint | None = None
        # The structured mode this model's calls start from once a provider refused a
        # better one (set by structured_modes.remember).
        self.structured_start: str | None = None
        # The request of a plain call, without its messages, per stream flag (prepare).
        self.plain: dict[bool, ChatRequest] = {}
        # The plan of a call with a schema alone, per schema and starting mode (plan).
        self.plans: dict[tuple[CompiledSchema, str | None], tuple[Plan, str]] = {}
        if row.engine is None:
            self._endpoint = self._build_endpoint(base_url)

    def plan(self, compiled: CompiledSchema) -> tuple[Plan, str]:
        """The plan of a call that asks for ``compiled`` and nothing else about its
        answer, and its first mode: made once per schema and starting mode (a refused
        mode moves ``structured_start``, and with it the plan)."""
        key = (compiled, self.structured_start)
        found = self.plans.get(key)
        if found is None:
            from msgflux.models.structured_modes import plan_structured

            plan = plan_structured(self, compiled, None, None, None, None)
            assert plan is not None  # a schema always has a plan
            if len(self.plans) >= 256:  # more schemas than one model is asked for
                self.plans.clear()
            found = self.plans[key] = (plan, plan.modes[0])
        return found

    # -------------------------------------------------------------- endpoint

    def _build_endpoint(self, base_url: str | None) -> Endpoint:
        from msgflux.exceptions import InvalidParameterError

        if not base_url:
            raise InvalidParameterError(
                f"Provider {self.provider!r} has no default base URL: pass base_url=..."
            )
        opt.check_base_url(base_url)  # from the environment too
        return Endpoint(self.provider, base_url.rstrip("/"), self.api_key, self.headers,
                        self.row.quirks)

    @property
    def endpoint_ready(self) -> bool:
        """False until an embedded engine was started (starting it blocks)."""
        return self._endpoint is not None

    @property
    def endpoint(self) -> Endpoint:
        endpoint = self._endpoint
        if endpoint is None:
            with self._lock:
                if self._endpoint is None:
                    self._endpoint = self._build_endpoint(self._engine_base_url())
                endpoint = self._endpoint
        return endpoint

    async def aendpoint(self) -> Endpoint:
        """The endpoint, starting an embedded engine off the event loop."""
        import asyncio

        return await asyncio.to_thread(lambda: self.endpoint)

    def _engine_base_url(self) -> str:
        from msgflux.models.providers.llamacpp import EngineOptions, get_engine, resolve_gguf

        engine = get_engine(resolve_gguf(self.model_id), EngineOptions(**self.engine_options))
        return engine.base_url

    # -------------------------------------------------------------- transports

    def transport(self) -> Transport:
        transport = self._transport
        return transport if transport is not None else self._default("_transport")

    def async_transport(self) -> AsyncTransport:
        transport = self._async_transport
        return transport if transport is not None else self._default("_async_transport")

    def _default(self, slot: str) -> Any:
        """The default transport for ``slot``, made once (the clients load sockets, ssl
        and asyncio: only when first needed)."""
        if self._missing is not None:
            from msgflux.exceptions import InvalidParameterError

            # Going around the caller's client (its proxy, its CAs) would surprise.
            raise InvalidParameterError(
                f"this model's http_client has no client for {self._missing}: pass both, "
                "http_client=(httpx.Client(...), httpx.AsyncClient(...))"
            )
        with self._lock:
            transport = getattr(self, slot)
            if transport is None:
                transport = default_transport(slot == "_async_transport", self.client_options)
                setattr(self, slot, transport)
        return transport

    def close(self) -> None:
        """Close the pools of the transports this wiring made."""
        if self._own_sync and self._transport is not None:
            self._transport.close()
        if self._own_async and self._async_transport is not None:
            self._async_transport.close()

    async def aclose(self) -> None:
        if self._own_async and self._async_transport is not None:
            await self._async_transport.aclose()
        if self._own_sync and self._transport is not None:
            self._transport.close()

    # -------------------------------------------------------------- profile and errors

    @property
    def profile(self) -> ModelProfile | None:
        """The model's profile from the bundled models.dev data (``None`` when unknown)."""
        if self._profile is _UNSET:
            from msgflux.models.profiles import get_model_profile

            self._profile = get_model_profile(self.model_id, provider_id=self.provider)
        return self._profile

    # -------------------------------------------------------------- usage of several calls

    def usage_of(self, meta: dotdict | None, total: Usage | None = None) -> Usage | None:
        """The usage in ``meta`` (a response's metadata) added to ``total``."""
        usage = meta.get("usage") if meta is not None else None
        if usage is None:
            return total
        own = Usage(**{k: v for k, v in usage.items() if k in Usage.__struct_fields__})
        return own.plus(total)

    def set_usage(self, meta: dotdict, usage: Usage | None) -> None:
        """Put ``usage`` (the sum over several calls) and its cost in ``meta``."""
        if usage is not None:
            meta["usage"] = _usage_dict(usage)
            meta["cost"], meta["cost_breakdown"] = pricing.cost(self.prices, usage)

    @property
    def prices(self) -> ModelCost | None:
        """What this model's tokens cost (see :mod:`msgflux.models.pricing`)."""
        if self._prices is _UNSET:
            self._prices = pricing.prices(self.pricing, self.profile, self.row.base_url,
                                          self.base_url)
        return self._prices

    def observe(self, request: ChatRequest, policy: RetryPolicy
                ) -> _observation.Observation | None:
        """This call's observation, or ``None`` when nobody listens."""
        return _observation.begin(self.provider, self.model_id, request, policy.max_retries,
                                  self.hooks)

    def error(self, status: int, headers: list[tuple[str, str]], body: bytes) -> MsgfluxError:
        """The typed error for a non-2xx answer, with the key masked if quoted back."""
        from msgflux._transport.retry import retry_after_from_headers

        if 300 <= status < 400:
            error: MsgfluxError = _redirect_error(status, headers, self.provider)
        else:
            error = self.dialect.parse_error(status, headers, body, self.provider,
                                             retry_after=retry_after_from_headers(headers))
        return _redact(error, self.api_key)


def _redirect_error(status: int, headers: list[tuple[str, str]], provider: str) -> MsgfluxError:
    """A redirect is never followed (it could carry the API key to another host): say
    where it pointed, so the caller can decide to use that address."""
    from msgflux._transport.types import header
    from msgflux.exceptions import APIStatusError

    location = header(headers, "location")
    where = f"redirected to {location}" if location else "redirected (no Location given)"
    return APIStatusError(
        f"the server {where}; msgflux never follows redirects, since they could carry the API "
        "key to another host. If the new address is right, use it as base_url.",
        status=status, provider=provider,
    )


# ---------------------------------------------------------------- preparing


def prepare(wiring: Wiring, settings: opt.ModelSettings, messages: Any, *,
            system_prompt: str | None = None, prefilling: str | None = None,
            stream: bool = False, generation_schema: Any = None, typed_parser: Any = None,
            tool_schemas: Any = None, tool_choice: Any = None, extra_body: Any = None,
            timeout: Any = None, max_retries: Any = None, prompt_cache: Any = None,
            structured_mode: Any = None, max_validation_retries: Any = None,
            sampling: dict[str, Any] | None = None, check: bool = True) -> PreparedCall:
    """Check the caller's input and build the neutral request (no I/O); ``check=False``
    skips the profile's capability checks (to count an oversized prompt, say).

    ``sampling``: the call's own sampling options (checked by
    :func:`~msgflux.models.options.call_sampling`), over the model's. A structured
    call is planned by :mod:`msgflux.models.structured_modes` (its first mode shapes
    the request); the tools' names are made valid for every provider by
    :mod:`msgflux.models.tools`.
    """
    msgs = to_messages(messages, system_prompt)
    # Tools, schemas and modes load their modules only when a call uses them: a plain
    # call (and the cold start of a first one) does without.
    tools = None
    if tool_schemas is not None:
        tools = module("msgflux.models.tools").toolset(tool_schemas)
    specs = tools.specs if tools is not None else ()
    choice = opt.tool_choice(tool_choice, specs)
    if tools is not None and tools.renamed:
        msgs = tools.to_wire(msgs)
        if choice is not None and choice.name is not None:
            choice = ToolChoice(choice.mode, tools.wire(choice.name))
    compiled = None
    if generation_schema is not None:
        from msgflux.models.structured import compile_schema

        compiled = compile_schema(generation_schema)
    parser = opt.typed_parser(typed_parser)
    opt.check_prefilling(prefilling, compiled is not None, wiring.row)
    plan = None
    if not (compiled is None and parser is None and structured_mode is None
            and max_validation_retries is None):
        from msgflux.models.structured_modes import plan_structured

        plan = plan_structured(wiring, compiled, parser, typed_parser, structured_mode,
                               max_validation_retries)
    if plan is not None and plan.parser is not None:
        parser = plan.parser  # structured_mode="typed_xml" names the parser
        typed_parser = plan.modes[0]
    options = settings.sampling(sampling)
    base = _request(
        wiring, options, msgs, bool(stream),
        tools=tools.wire_specs if tools is not None else (),
        tool_choice=choice,
        parallel_tool_calls=options.get("parallel_tool_calls") if specs else None,
        prefill=prefilling,
        extra=opt.extra_body(settings.get("extra_body"), extra_body),
        cache=(opt.prompt_cache(prompt_cache) if prompt_cache is not None
               else settings.prompt_cache),
    )
    mode = plan.modes[0] if plan is not None else None
    request = plan.apply(base, mode) if plan is not None else base
    if check and settings.check_capabilities:
        _check_capabilities(wiring, request)
    return PreparedCall(
        wiring,
        request,
        compiled,
        parser,
        typed_parser if parser is not None else None,
        opt.timeouts(timeout) if timeout is not None else settings.timeouts,
        opt.retry_policy(max_retries) if max_retries is not None else settings.policy,
        plan=plan,
        mode=mode,
        base=base,
        tools=tools,
    )


def prepare_plain(wiring: Wiring, settings: opt.ModelSettings, messages: Any,
                  system_prompt: str | None = None, stream: bool = False, timeout: Any = None,
                  max_retries: Any = None, schema: Any = None, check: bool = True
                  ) -> PreparedCall:
    """:func:`prepare` for a plain call (most calls: no tools, prefill or per-call options
    beside these): the model's request with these messages, made from a template built
    once per model. With a ``schema`` alone, the structured plan is the model's for
    that schema (see :meth:`Wiring.plan`)."""
    template = wiring.plain.get(stream)
    if template is None:
        template = wiring.plain[stream] = _plain_template(wiring, settings, bool(stream))
    request = msgspec.structs.replace(template, messages=to_messages(messages, system_prompt))
    timeouts = opt.timeouts(timeout) if timeout is not None else settings.timeouts
    policy = opt.retry_policy(max_retries) if max_retries is not None else settings.policy
    if schema is None:
        if check and settings.check_capabilities and wiring.profile is not None:
            _check_capabilities(wiring, request)
        return PreparedCall(wiring, request, None, None, None, timeouts, policy)
    compiled = module("msgflux.models.structured").compile_schema(schema)
    plan, mode = wiring.plan(compiled)
    shaped = plan.apply(request, mode)
    if check and settings.check_capabilities and wiring.profile is not None:
        _check_capabilities(wiring, shaped)
    return PreparedCall(wiring, shaped, compiled, None, None, timeouts, policy, plan=plan,
                        mode=mode, base=request)


def _plain_template(wiring: Wiring, settings: opt.ModelSettings, stream: bool) -> ChatRequest:
    """The request of a plain call to this model, without its messages (see prepare)."""
    return _request(wiring, settings.sampling(), (), stream,
                    extra=opt.extra_body(settings.get("extra_body"), None),
                    cache=settings.prompt_cache)


def _request(wiring: Wiring, options: dict[str, Any], messages: tuple[Message, ...],
             stream: bool, **rest: Any) -> ChatRequest:
    """A request of this model: ``messages``, the sampling ``options`` in force (the
    profile's output limit where the dialect requires one) and ``rest``."""
    stop = options.get("stop")
    max_tokens = options.get("max_tokens")
    if max_tokens is None and wiring.dialect.REQUIRES_MAX_TOKENS:
        max_tokens = profile_output_limit(wiring)
    return ChatRequest(
        model=wiring.model_id,
        messages=messages,
        temperature=options.get("temperature"),
        top_p=options.get("top_p"),
        max_tokens=max_tokens,
        stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop else None),
        seed=options.get("seed"),
        reasoning_effort=options.get("reasoning_effort"),
        stream=stream,
        **rest,
    )


def profile_output_limit(wiring: Wiring) -> int | None:
    """The model's output limit from its profile (for dialects that require max_tokens)."""
    profile = wiring.profile
    return (profile.limits.output or None) if profile is not None else None


def _check_capabilities(wiring: Wiring, request: ChatRequest) -> None:
    """Refuse what the model's profile says it cannot serve (before the network).

    The prompt's size is the local lower bound of :mod:`msgflux.models.tokens`: an
    exact count would cost a request to the provider before every call, and the
    provider refuses an oversized prompt itself; the bound never refuses one that fits.
    """
    profile = wiring.profile
    if profile is None:
        return
    prompt_tokens, images = module("msgflux.models.tokens").lower_bound(request)
    output = request.output
    module("msgflux.models.profiles").check_request(
        profile,
        has_tools=bool(request.tools) or (output is not None and output.mode == "tool"),
        has_schema=output is not None and output.mode == "json_schema",
        has_images=images,
        estimated_prompt_tokens=prompt_tokens,
        max_tokens=request.max_tokens,
    )


# ---------------------------------------------------------------- one call


class PreparedCall:
    """A checked call, ready to send: ``run()`` (blocking) or ``await arun()``.

    ``request`` is the neutral :class:`~msgflux.models.request.ChatRequest`;
    :meth:`http_request` shows what would be sent (the headers hold the key).
    ``run()`` sends exactly this one request; :meth:`answer` (what calling the
    model does) adds what a structured call needs to land: another mode when the
    provider refuses this one, and asking again when the answer does not validate.

    ``plan`` / ``mode``: how a structured answer is asked for (``None`` for a text
    call); ``base``: the request before the mode shaped it; ``tools``: the call's
    :class:`~msgflux.models.tools.Toolset` (functions to run, provider-safe names).
    """

    __slots__ = ("base", "compiled", "mode", "observer", "parser", "parser_name", "plan",
                 "policy", "request", "timeouts", "tools", "wiring")

    def __init__(self, wiring: Wiring, request: ChatRequest, compiled: CompiledSchema | None,
                 parser: TypedParser | None, parser_name: str | None, timeouts: Timeouts,
                 policy: RetryPolicy, *, plan: Plan | None = None, mode: str | None = None,
                 base: ChatRequest | None = None, tools: Toolset | None = None) -> None:
        self.wiring = wiring
        self.request = request
        self.compiled = compiled
        self.parser = parser
        self.parser_name = parser_name
        self.timeouts = timeouts
        self.policy = policy
        self.plan = plan
        self.mode = mode
        self.base = base if base is not None else request
        self.tools = tools
        # Sees the status and headers of every HTTP answer of this call, retries
        # included (a batch runner reads rate-limit headers from them).
        self.observer: Callable[[int, list[tuple[str, str]]], object] | None = None

    def __repr__(self) -> str:
        return f"PreparedCall({self.wiring.provider}/{self.request.model})"

    def derive(self, request: ChatRequest, *, mode: str | None = None,
               base: ChatRequest | None = None) -> PreparedCall:
        """This call with another request (a later step of a loop, another mode, a retry)."""
        call = PreparedCall(self.wiring, request, self.compiled, self.parser, self.parser_name,
                            self.timeouts, self.policy, plan=self.plan,
                            mode=mode if mode is not None else self.mode,
                            base=base if base is not None else self.base, tools=self.tools)
        call.observer = self.observer
        return call

    def answer(self) -> ModelResponse | ModelStreamResponse:
        """Run the call as calling the model does (see the class doc)."""
        if self.plan is None:
            return self.run()
        return module("msgflux.models.structured_modes").answer(self)

    async def aanswer(self) -> ModelResponse | ModelStreamResponse:
        if self.plan is None:
            return await self.arun()
        return await module("msgflux.models.structured_modes").aanswer(self)

    def http_request(self) -> HttpRequest:
        return self.wiring.dialect.build_request(self.request, self.wiring.endpoint)

    def stream_call(self) -> StreamCall:
        """The stream side of this call, for a ModelStreamResponse to drive (a cached
        answer is played back as a stream)."""
        return StreamCall(self, *self._lookup())

    # -------------------------------------------------------------- running

    def run(self) -> ModelResponse | ModelStreamResponse:
        if self.request.stream:
            return ModelStreamResponse.open(self.stream_call())
        key, hit = (None, None) if self.wiring.cache is None else self._lookup()
        if hit is not None:
            return self._shape(hit)
        http = self.http_request()
        obs = self.wiring.observe(self.request, self.policy)
        send = self._send if obs is None else obs.attempt(self._send)
        started = monotonic()
        state: RetryState | None = None  # made once an attempt failed
        try:
            try:
                response = send(http, obs, self.timeouts)  # the first attempt: its own limits
            except MsgfluxError as error:
                budget, state = self._retries(started, obs)
                response = call_with_retries(lambda: send(http, obs, budget.timeouts()), state,
                                             failed=error)
            completion, result = self._answer(response.body, state, obs)
        except BaseException as error:
            _failed(error, state, obs)
            raise
        if key is not None:
            self.store(key, completion)
        return result

    async def arun(self) -> ModelResponse | ModelStreamResponse:
        if not self.wiring.endpoint_ready:
            await self.wiring.aendpoint()  # an engine start must not block the loop
        # Without a cache (the default) no lookup, and no coroutine for one.
        key, hit = (None, None) if self.wiring.cache is None else await self._alookup()
        if self.request.stream:
            return await ModelStreamResponse.aopen(StreamCall(self, key, hit))
        if hit is not None:
            return self._shape(hit)
        http = self.http_request()
        obs = self.wiring.observe(self.request, self.policy)
        send = self._asend if obs is None else obs.aattempt(self._asend)
        started = monotonic()
        state: RetryState | None = None  # made once an attempt failed
        try:
            try:
                response = await send(http, obs, self.timeouts)
            except MsgfluxError as error:
                budget, state = self._retries(started, obs)
                response = await acall_with_retries(
                    lambda: send(http, obs, budget.timeouts()), state, failed=error)
            completion, result = self._answer(response.body, state, obs)
        except BaseException as error:
            _failed(error, state, obs)
            raise
        if key is not None:
            await self._astore(key, completion)
        return result

    def _retries(self, started: float, obs: _observation.Observation | None
                 ) -> tuple[CallBudget, RetryState]:
        """The budget and the retry state of a call whose first attempt (begun at
        ``started``) failed: retries get what is left of the call's time."""
        budget = CallBudget(self.timeouts, False, started)
        return budget, RetryState(self.policy, obs and obs.retried, budget.deadline)

    def _send(self, http: HttpRequest, obs: _observation.Observation | None,
              timeouts: Timeouts) -> HttpResponse:
        if obs is not None:
            obs.sending(http)
        response = self.wiring.transport().send(http, timeouts)
        return self._checked(response, obs)

    async def _asend(self, http: HttpRequest, obs: _observation.Observation | None,
                     timeouts: Timeouts) -> HttpResponse:
        if obs is not None:
            obs.sending(http)
        response = await self.wiring.async_transport().send(http, timeouts)
        return self._checked(response, obs)

    def _checked(self, response: HttpResponse, obs: _observation.Observation | None
                 ) -> HttpResponse:
        if obs is not None:
            obs.responded(response.status, response.timings)
        if self.observer is not None:
            self.observer(response.status, response.headers)
        if not 200 <= response.status < 300:
            raise self.wiring.error(response.status, response.headers, response.body)
        return response

    # -------------------------------------------------------------- cache

    def _lookup(self) -> tuple[bytes | None, Completion | None]:
        """The cache key of this call (``None`` without a cache) and its stored answer."""
        cache = self.wiring.cache
        if cache is None:
            return None, None
        key = module("msgflux.models.cache.base").cache_key(
            self.wiring.provider, self.wiring.endpoint.base_url, self.request, self.parser_name)
        return key, cache.get(key)

    async def _alookup(self) -> tuple[bytes | None, Completion | None]:
        cache = self.wiring.cache
        if cache is not None and cache.blocking:  # a network store: off the event loop
            import asyncio

            return await asyncio.to_thread(self._lookup)
        return self._lookup()

    def store(self, key: bytes, completion: Completion) -> None:
        """Keep ``completion`` (its text as the caller sees it) under ``key``."""
        cache = self.wiring.cache
        if cache is not None:
            cache.set(key, completion)

    async def _astore(self, key: bytes, completion: Completion) -> None:
        cache = self.wiring.cache
        if cache is not None and cache.blocking:
            import asyncio

            await asyncio.to_thread(self.store, key, completion)
        else:
            self.store(key, completion)

    def _answer(self, body: bytes, state: RetryState | None,
                obs: _observation.Observation | None) -> tuple[Completion, ModelResponse]:
        """Decode and shape the answer (an answer that does not shape is not cached)."""
        wiring = self.wiring
        try:
            completion = wiring.dialect.parse_response(body, self.request, wiring.provider)
        except MsgfluxError as e:  # an in-band error may quote the key back
            _redact(e, wiring.api_key)
            raise
        prefill = self.request.prefill
        if prefill is not None and not wiring.row.quirks.prefill_echoed(stream=False):
            completion.text = prefill + (completion.text or "")  # as the caller sees it
        result = self._shape(completion, 1 if state is None else state.retries + 1)
        if obs is not None:
            obs.answered(result.metadata, completion.usage, completion.usage, completion.id,
                         result.data)
        return completion, result

    # -------------------------------------------------------------- shaping

    def _shape(self, completion: Completion, attempts: int = 1) -> ModelResponse:
        refusal = completion.refusal
        meta = functools.partial(metadata, self.wiring, completion.usage,
                                 completion.finish_reason, completion.model, refusal,
                                 completion.id, attempts)  # made when read
        if completion.tool_calls:
            calls = completion.tool_calls
            if self.tools is not None and self.tools.renamed:
                calls = self.tools.from_wire(calls)
            agg = ToolCallAggregator.from_calls(calls)
            agg.text = completion.text or None
            agg.reasoning = completion.reasoning
            agg.reasoning_blocks = completion.reasoning_blocks
            return ModelResponse(agg, "tool_call", None, completion.reasoning, meta)
        text = completion.text or ""
        if refusal is not None:
            text = with_refusal(text, refusal)
        try:
            kind, data = self.decode_text(text, completion.finish_reason, refusal)
        except ResponseError as e:
            e.metadata = meta()  # the usage of a failed attempt still counts
            raise
        return ModelResponse(data, kind, None, completion.reasoning, meta)

    def decode_text(self, text: str, finish_reason: str | None, refusal: str | None
                    ) -> tuple[str, Any]:
        """``(response_type, data)`` of a text answer, by output mode.

        ``text`` includes a refusal's text, if any: a text call answers with it; a
        structured call raises RefusalError, as a refusal is no malformed answer.
        """
        if refusal is not None and (self.compiled is not None or self.parser is not None):
            raise RefusalError(refusal, raw=text)
        compiled = self.compiled
        if compiled is not None:
            if finish_reason == "length":
                raise OutputTruncatedError(
                    "The structured answer was cut off at the token limit "
                    "(finish_reason 'length'); raise max_tokens.", raw=text,
                )
            structured = module("msgflux.models.structured")
            mode = self.mode
            if self.parser is None:  # a JSON mode; a prompted one may wrap the JSON in prose
                return "structured", structured.decode_structured(
                    compiled, text, lenient=mode == "prompt" or mode == "json_object")
            return "structured", structured.validate_value(compiled, self.parser.decode(text),
                                                           text, lax=True)
        if finish_reason == "length" and self.request.max_tokens is None:
            _warn_cut(self.wiring)
        if self.parser is not None:
            return "structured", self.parser.decode(text)
        return "text_generation", text


def _warn_cut(wiring: Wiring) -> None:
    """Warn that an answer hit a limit nobody chose: the provider's or the engine's default."""
    import sys
    import warnings

    from msgflux.exceptions import OutputTruncatedWarning

    # Point the warning at the caller's line, however deep in msgflux it was found.
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("msgflux"):
        frame, level = frame.f_back, level + 1
    where = ("the embedded engine's default cap (EngineOptions.n_predict, 512 tokens)"
             if wiring.row.engine else "the provider's default limit")
    warnings.warn(
        f"{wiring.provider}/{wiring.model_id}: the answer stopped at {where} "
        "(finish_reason 'length') and is probably cut off; pass max_tokens=N to allow "
        "a longer one.",
        OutputTruncatedWarning, stacklevel=level,
    )


def metadata(wiring: Wiring, usage: Usage | None, finish_reason: str | None,
             model: str | None, refusal: str | None, id: str | None,
             attempts: int = 1) -> dotdict:
    """``response.metadata``: usage, finish reason, model, provider, cost (USD, ``None``
    when unknown) and its breakdown, refusal, the provider's id of the answer (what an
    OpenAI Responses ``previous_response_id`` names), and how many attempts the call made.

    ``usage`` is the whole call's: every attempt that was billed tokens counts.
    """
    prices = wiring.prices
    cost, breakdown = pricing.cost(prices, usage) if prices is not None else (None, None)
    return dotdict(
        usage=_usage_dict(usage) if usage is not None else None,
        finish_reason=finish_reason,
        model=model or wiring.model_id,
        provider=wiring.provider,
        cost=cost,
        cost_breakdown=breakdown,
        refusal=refusal,
        id=id,
        attempts=attempts,
    )


def add_spent(meta: dotdict, call: StreamCall) -> None:
    """Add to ``meta`` (another model's answer) what ``call``'s abandoned attempts were
    billed, at ``call``'s own prices (a gateway that fell back from a broken stream)."""
    usage = call.spent_usage
    if usage is None:
        return
    cost, _ = pricing.cost(call.call.wiring.prices, usage)
    total = meta.get("usage")
    mine = Usage(**total) if total else None
    meta["usage"] = _usage_dict(usage.plus(mine))
    meta["cost"] = None if cost is None or meta.get("cost") is None else meta["cost"] + cost
    meta["cost_breakdown"] = None  # one breakdown cannot hold two models' prices


def _failed(error: BaseException, state: RetryState | None,
            obs: _observation.Observation | None) -> None:
    """A call raised: say how many attempts it made (a gateway sums them), and report it."""
    if isinstance(error, MsgfluxError):
        error.attempts = 1 if state is None else state.retries + 1
    if obs is not None:
        obs.failed(error)


def _usage_dict(usage: Usage) -> dotdict:
    out = dotdict(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                  total_tokens=usage.total_tokens)
    if usage.cached_tokens is not None:
        out["cached_tokens"] = usage.cached_tokens
    if usage.cache_write_tokens is not None:
        out["cache_write_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens is not None:
        out["reasoning_tokens"] = usage.reasoning_tokens
    if usage.cache_write_1h_tokens is not None:
        out["cache_write_1h_tokens"] = usage.cache_write_1h_tokens
    return out


# ---------------------------------------------------------------- the stream call


class StreamCall:
    """A prepared call's stream side (the :class:`~msgflux.models.response.StreamCall`
    protocol): opening, retrying its start, finishing the answer.

    ``key``: where the finished answer is cached (``None``: no cache); ``replay``:
    a cached answer, streamed back instead of asking the provider.
    """

    __slots__ = ("budget", "call", "default_type", "http", "key", "known_type", "lead", "obs",
                 "replay", "spent_usage", "state")

    def __init__(self, call: PreparedCall, key: bytes | None = None,
                 replay: Completion | None = None) -> None:
        self.call = call
        self.key = key
        self.replay = replay
        self.budget: CallBudget | None = None  # set when the start is (re)tried
        request = call.request
        structured = call.compiled is not None or call.parser is not None
        self.default_type = "structured" if structured else "text_generation"
        tools_possible = bool(request.tools) and not (
            request.tool_choice is not None and request.tool_choice.mode == "none"
        )
        self.known_type: str | None = None if tools_possible else self.default_type
        # When the server streams only the continuation, the prefix leads the stream.
        prefill = request.prefill
        echoed = call.wiring.row.quirks.prefill_echoed(stream=True)
        # A cached answer's text already holds the prefix.
        self.lead = Delta(text=prefill) if prefill and not echoed and replay is None else None
        self.http: HttpRequest | None = None  # encoded once, when the start begins
        self.obs: _observation.Observation | None = None
        self.state: RetryState | None = None
        self.spent_usage: Usage | None = None  # billed to attempts that were abandoned

    @property
    def partial(self) -> Callable[[], PartialJSON | PartialXML] | None:
        """The partial-object reader of a structured stream (JSON, or a typed parser's)."""
        call = self.call
        if call.parser is None and call.compiled is None:
            return None  # a text stream
        from msgflux.models.partial import PartialJSON, PartialXML

        if call.parser is not None:
            lowered = call.compiled.lowered if call.compiled is not None else None
            return functools.partial(PartialXML, call.parser,
                                     lowered is not None and lowered.wrapped)
        return functools.partial(PartialJSON, call.compiled.lowered)  # type: ignore[union-attr]

    def open_sync(self) -> SyncSource:
        if self.replay is not None:
            replay = Replay(self.replay)
            return SyncSource(replay, replay)
        call, wiring, obs = self.call, self.call.wiring, self.obs
        http = self.http or call.http_request()
        if obs is not None:
            obs.sending(http)
        stream = wiring.transport().open_stream(http, self._timeouts())
        if obs is not None:
            obs.responded(stream.status, getattr(stream, "timings", None))
        if call.observer is not None:
            call.observer(stream.status, stream.headers)
        if not 200 <= stream.status < 300:
            body = stream.read()
            stream.close()
            raise wiring.error(stream.status, stream.headers, body)
        return SyncSource(stream, self._decoder(), wiring.api_key)

    async def open_async(self) -> AsyncSource:
        if self.replay is not None:
            replay = Replay(self.replay)
            return AsyncSource(replay, replay)
        call, wiring, obs = self.call, self.call.wiring, self.obs
        if not wiring.endpoint_ready:
            await wiring.aendpoint()
        http = self.http or call.http_request()
        if obs is not None:
            obs.sending(http)
        stream = await wiring.async_transport().open_stream(http, self._timeouts())
        if obs is not None:
            obs.responded(stream.status, getattr(stream, "timings", None))
        if call.observer is not None:
            call.observer(stream.status, stream.headers)
        if not 200 <= stream.status < 300:
            body = await stream.read()
            await stream.aclose()
            raise wiring.error(stream.status, stream.headers, body)
        return AsyncSource(stream, self._decoder(), wiring.api_key)

    def _decoder(self) -> StreamDecoder:
        wiring = self.call.wiring
        return wiring.dialect.stream_decoder(self.call.request, wiring.provider)

    def _timeouts(self) -> Timeouts:
        budget = self.budget
        return budget.timeouts() if budget is not None else self.call.timeouts

    def _begin(self) -> RetryState:
        """The start begins: encode once, ask whether anybody observes this call, and
        give the start its time budget (retries included)."""
        call = self.call
        self.http = call.http_request()
        # A cached answer played back is no call to the provider: nothing to observe.
        obs = self.obs = (call.wiring.observe(call.request, call.policy)
                          if self.replay is None else None)
        budget = self.budget = CallBudget(call.timeouts, True)
        state = self.state = RetryState(call.policy, obs and obs.retried, budget.deadline)
        return state

    def retry(self, attempt: Callable[[], None]) -> None:
        state, obs = self._begin(), self.obs
        try:
            call_with_retries(attempt if obs is None else obs.attempt(attempt), state)
        except BaseException as error:
            _failed(error, state, obs)
            raise

    async def aretry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        wiring = self.call.wiring
        if not wiring.endpoint_ready:
            await wiring.aendpoint()  # encoding needs the engine's URL: start it off the loop
        state, obs = self._begin(), self.obs
        try:
            await acall_with_retries(attempt if obs is None else obs.aattempt(attempt), state)
        except BaseException as error:
            _failed(error, state, obs)
            raise

    def spent(self, usage: Usage) -> None:
        self.spent_usage = usage.plus(self.spent_usage)

    def broken(self, error: BaseException) -> None:
        if self.obs is not None:
            self.obs.failed(error, broken=True)

    def finish(self, asm: StreamAssembler) -> tuple[str, Any, dotdict]:
        usage = asm.usage.plus(self.spent_usage) if asm.usage is not None else self.spent_usage
        state = self.state
        refusal = asm.refusal
        meta = metadata(self.call.wiring, usage, asm.finish_reason, asm.model, refusal,
                        asm.id, state.retries + 1 if state is not None else 1)
        try:
            agg = asm.aggregator()
            if agg is not None:
                kind, data = "tool_call", agg
            else:
                kind, data = self.call.decode_text(asm.text, asm.finish_reason, refusal)
        except BaseException as error:
            if self.obs is not None:
                self.obs.failed(error)
            raise
        # A refused stream interleaves the refusal with the text: it is not kept.
        if self.key is not None and self.replay is None and refusal is None:
            self.call.store(self.key, Completion(
                text=asm.text, reasoning=asm.reasoning,
                reasoning_blocks=asm.reasoning_blocks(),
                tool_calls=agg.to_calls() if agg is not None else (),
                finish_reason=asm.finish_reason, native_finish_reason=asm.native_finish_reason,
                usage=asm.usage, model=asm.model, id=asm.id))
        tools = self.call.tools
        if agg is not None and tools is not None and tools.renamed:
            agg.rename(tools.user)  # the caller's names (the cache keeps the wire's)
        if self.obs is not None:
            self.obs.answered(meta, usage, asm.usage, asm.id, data)
        return kind, data, meta
