"""Argument checking and coercion for chat models, at construction and per call.

Everything a caller can get wrong is found here, before any network call, and
raised as :class:`~msgflux.exceptions.InvalidParameterError` with what was wrong
and how to fix it. What comes out is typed: :class:`ModelSettings` for a model,
:class:`Timeouts`, :class:`RetryPolicy`, tool specs and a tool choice for a call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from msgflux.exceptions import InvalidParameterError, PrefillNotSupportedError
from msgflux.models.messages import cache_hint
from msgflux.models.request import PromptCache, ToolChoice, ToolSpec

if TYPE_CHECKING:
    from msgflux._transport.retry import RetryPolicy
    from msgflux._transport.types import Timeouts
    from msgflux.dsl.typed_parsers.base import TypedParser
    from msgflux.models.profiles.types import ModelCost
    from msgflux.models.providers.registry import Provider

__all__ = [
    "CALL_ARGS",
    "INIT_ARGS",
    "LOOP_ARGS",
    "SAMPLING",
    "TRANSPORT_OPTIONS",
    "ModelSettings",
    "call_sampling",
    "check_base_url",
    "check_prefilling",
    "check_sampling",
    "extra_body",
    "hooks",
    "pricing",
    "prompt_cache",
    "retry_policy",
    "serializable_state",
    "timeouts",
    "tool_choice",
    "tool_spec",
    "typed_parser",
]

# Constructor arguments that are ours; anything else is a typo or belongs in extra_body.
INIT_ARGS = (
    "base_url", "api_key", "temperature", "max_tokens", "top_p", "stop", "seed",
    "reasoning_effort", "parallel_tool_calls", "timeout", "max_retries", "enable_cache",
    "cache_size", "cache", "cache_ttl", "extra_body", "extra_headers", "check_capabilities",
    "n_threads", "n_ctx", "n_parallel", "transport", "async_transport", "api", "hooks",
    "pricing", "prompt_cache", "prompt_cache_retention", "http_client", "verify", "cert",
    "proxy", "trust_env", "max_response_bytes",
)
# Options of msgflux's own HTTP clients (HTTPTransport / AsyncHTTPTransport).
TRANSPORT_OPTIONS = ("verify", "cert", "proxy", "trust_env", "max_response_bytes")
CALL_ARGS = (
    "messages", "system_prompt", "prefilling", "stream", "generation_schema", "typed_parser",
    "tool_schemas", "tool_choice", "extra_body", "timeout", "max_retries", "prompt_cache",
    "structured_mode", "max_validation_retries",
)
# Sampling options: set on the model, overridable on each call (same checks both ways).
SAMPLING = ("temperature", "max_tokens", "top_p", "stop", "seed", "reasoning_effort",
            "parallel_tool_calls")
# Keywords of model(...) / acall(...) that drive the tool loop (not prepare()).
LOOP_ARGS = ("run_tools", "max_steps", "tool_errors")
_SECRET_HEADER_WORDS = ("auth", "key", "token", "secret", "cookie", "signature")
_OBJECTS = ("transport", "async_transport", "hooks", "http_client")  # live: never serialized


class ModelSettings:
    """A model's constructor options, checked once.

    ``options``: the validated keywords as given (minus the API key), which
    ``serialize()`` writes back; ``timeouts``, ``policy`` and ``prompt_cache``: the
    coerced defaults each call starts from; ``pricing`` (the caller's prices, or
    ``None``) and ``hooks``.
    """

    __slots__ = ("_sampling", "check_capabilities", "hooks", "options", "policy", "pricing",
                 "prompt_cache", "timeouts")

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        unknown = sorted(set(kwargs) - set(INIT_ARGS))
        if unknown:
            raise InvalidParameterError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} for a chat model. "
                f"Accepted: {', '.join(INIT_ARGS)}. Provider-specific body fields go in "
                f"extra_body={{...}}."
            )
        self.options = _checked(kwargs)
        self.timeouts = timeouts(self.options.get("timeout"))
        self.policy = retry_policy(self.options.get("max_retries"))
        self.pricing = pricing(self.options.get("pricing"))
        self.hooks = hooks(self.options.get("hooks"))
        self.prompt_cache = prompt_cache(self.options.get("prompt_cache"),
                                         self.options.get("prompt_cache_retention"))
        self._sampling = {k: v for k in SAMPLING if (v := self.options.get(k)) is not None}
        self.check_capabilities = bool(self.options.get("check_capabilities", True))

    def get(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def sampling(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The model's sampling options with a call's (checked) ``overrides`` on top
        (read only: without overrides it is the model's own dict)."""
        if not overrides:
            return self._sampling
        return {**self._sampling, **overrides}


def call_sampling(kwargs: Mapping[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """A call's sampling keywords, checked like the constructor's; ``None`` values mean
    "the model's value". Any other keyword is an error listing what a call takes
    (``extra``: further keywords the caller accepts, for the message)."""
    if not kwargs:  # most calls
        return {}
    unknown = sorted(set(kwargs) - set(SAMPLING))
    if unknown:
        accepted = ", ".join((*CALL_ARGS[1:], *SAMPLING, *extra))
        raise InvalidParameterError(
            f"Unknown call parameter(s) {', '.join(map(repr, unknown))}. Accepted: {accepted}. "
            "Provider-specific body fields go in extra_body={...}."
        )
    given = {k: v for k, v in kwargs.items() if v is not None}
    return check_sampling(given)


def _integer(opts: Mapping[str, Any], name: str, low: int) -> None:
    """``opts[name]``, when given, is an int (not a bool) of at least ``low``."""
    value = opts.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(f"{name} must be an int >= {low}, got {value!r}")


def check_sampling(opts: dict[str, Any]) -> dict[str, Any]:
    """Check the sampling options in ``opts`` (others are left alone); returns ``opts``."""

    def number(name: str, low: float, high: float) -> None:
        value = opts.get(name)
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                low <= value <= high):  # "not" also refuses NaN
            raise InvalidParameterError(
                f"{name} must be a number between {low} and {high}, got {value!r}")

    number("temperature", 0, 2)
    number("top_p", 0, 1)
    _integer(opts, "max_tokens", 1)
    _integer(opts, "seed", -(2**63))
    value = opts.get("parallel_tool_calls")
    if value is not None and not isinstance(value, bool):
        raise InvalidParameterError(f"parallel_tool_calls must be True or False, got {value!r}")
    stop = opts.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop))):
        raise InvalidParameterError(f"stop must be a str or a list of str, got {stop!r}")
    effort = opts.get("reasoning_effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidParameterError(
            f"reasoning_effort must be a str such as 'low', 'medium' or 'high', got {effort!r}"
        )
    return opts


def _checked(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(kwargs)
    opts.pop("api_key", None)
    check_sampling(opts)

    retry_policy(opts.get("max_retries"))
    _integer(opts, "cache_size", 1)
    _integer(opts, "n_threads", 1)
    _integer(opts, "n_ctx", 256)
    _integer(opts, "n_parallel", 1)
    for name in ("enable_cache", "check_capabilities"):
        value = opts.get(name)
        if value is not None and not isinstance(value, bool):
            raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    for name in ("extra_body", "extra_headers"):
        value = opts.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidParameterError(f"{name} must be a dict, got {type(value).__name__}")
        if value is not None:
            opts[name] = dict(value)
    base_url = opts.get("base_url")
    if base_url is not None:
        check_base_url(base_url)
    api = opts.get("api")
    if api is not None:
        from msgflux.models.providers.registry import APIS

        if api not in APIS:
            raise InvalidParameterError(
                "api must be 'chat_completions' or 'responses' (OpenAI's two APIs), "
                f"got {api!r}"
            )
    _check_transports(opts)
    _check_cache(opts)
    timeouts(opts.get("timeout"))
    return opts


def _check_cache(opts: Mapping[str, Any]) -> None:
    if opts.get("cache") is not None:  # (the cache modules load only for a model that caches)
        from msgflux.models.cache import check_cache_spec

        check_cache_spec(opts.get("cache"))
    if opts.get("cache") is not None and opts.get("enable_cache") is False:
        raise InvalidParameterError(
            "cache=... turns the cache on, but enable_cache=False turns it off: drop one"
        )
    number = opts.get("cache_ttl")
    if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                               or not number > 0):
        raise InvalidParameterError(
            f"cache_ttl must be a positive number of seconds, got {number!r}"
        )


def cache_spec(options: Mapping[str, Any]) -> Any:
    """What the cache options ask for: a ``cache=`` value, ``"memory"`` for
    ``enable_cache=True``, or ``None`` (no cache)."""
    spec = options.get("cache")
    if spec is None and options.get("enable_cache"):
        spec = "memory"
    return spec


def check_base_url(url: Any) -> None:
    """A base URL msgflux can append API paths to, holding no secret it could show.

    A query or fragment would end up in the middle of every request URL, and
    credentials would show in ``serialize()`` and messages: both are refused
    (without echoing them).
    """
    if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        shown = url if not isinstance(url, str) else url.partition("?")[0].partition("#")[0]
        raise InvalidParameterError(
            f"base_url must be an http(s) URL such as 'http://localhost:8000/v1', got {shown!r}"
        )
    from msgflux._transport.urls import safe_url

    if "?" in url or "#" in url:
        raise InvalidParameterError(
            f"base_url {safe_url(url)!r} must not hold a query or fragment ('?...' or '#...'): "
            "msgflux appends the API path to it. Send query parameters through a custom "
            "transport, and keys through api_key= or extra_headers="
        )
    if "@" in url.partition("://")[2].partition("/")[0]:
        raise InvalidParameterError(
            f"base_url {safe_url(url)!r} holds credentials (user:password@): they would show "
            "wherever the URL does. Pass them as api_key= or extra_headers={'Authorization': ...}"
        )


def _check_transports(opts: Mapping[str, Any]) -> None:
    from msgflux._transport.base import AsyncTransport, Transport

    for name, protocol in (("transport", Transport), ("async_transport", AsyncTransport)):
        value = opts.get(name)
        if value is not None and not isinstance(value, protocol):
            raise InvalidParameterError(
                f"{name} must implement msgflux.transport.{protocol.__name__} "
                f"(send, open_stream, close), got {type(value).__name__}"
            )
    client = opts.get("http_client")
    if client is not None:
        from msgflux._transport.httpx_backend import split_clients

        sync, asyn = split_clients(client)
        if (sync is not None and opts.get("transport") is not None) or (
                asyn is not None and opts.get("async_transport") is not None):
            raise InvalidParameterError(
                "pass either http_client= or transport=/async_transport= for the same kind "
                "of call, not both")
    own = [k for k in TRANSPORT_OPTIONS if k in opts and k != "max_response_bytes"]
    custom = [k for k in ("transport", "async_transport", "http_client")
              if opts.get(k) is not None]
    if own and custom:
        raise InvalidParameterError(
            f"{', '.join(own)} configure(s) msgflux's own HTTP client, but {custom[0]}= "
            "replaces it: configure the transport or httpx client you pass instead"
        )
    if own or "max_response_bytes" in opts:
        from msgflux._transport.settings import check_client_options

        check_client_options({k: opts[k] for k in TRANSPORT_OPTIONS if k in opts})


def serializable_state(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options as ``serialize()`` writes them: JSON-able, no secrets, no live objects."""
    state: dict[str, Any] = {}
    for key, value in options.items():
        if value is None or key in _OBJECTS:
            continue
        if key in ("pricing", "prompt_cache") and isinstance(value, msgspec.Struct):
            value = msgspec.to_builtins(value)
        if key == "cache" and not (isinstance(value, str) and "@" not in value):
            continue  # a backend object, or a URL with credentials in it
        if key == "extra_headers":
            value = {k: v for k, v in value.items()
                     if not any(w in k.lower() for w in _SECRET_HEADER_WORDS)}
        elif key == "verify" and not isinstance(value, (bool, str)):
            value = str(value) if hasattr(value, "__fspath__") else None  # an SSLContext
        elif key == "cert":  # paths only: a key's password stays out
            value = [str(f) for f in ((value,) if not isinstance(value, tuple) else value[:2])]
        elif key == "proxy":
            from msgflux._transport.urls import without_userinfo

            value = without_userinfo(value)
        if value is None:
            continue
        elif key == "timeout" and not isinstance(value, (int, float)):
            value = msgspec.to_builtins(timeouts(value))
        elif key == "max_retries" and not isinstance(value, int):
            value = msgspec.to_builtins(retry_policy(value))
        state[key] = value
    return state


# ---------------------------------------------------------------- time and retries


def timeouts(value: Any) -> Timeouts:
    """``timeout=``: seconds for each wait, a dict of phases, or a ``Timeouts``."""
    from msgflux._transport.types import Timeouts

    if value is None:
        return Timeouts()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return Timeouts.each(float(value))
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
        if limit is not None and limit is not msgspec.UNSET and (
                isinstance(limit, bool) or not isinstance(limit, (int, float))
                or not limit > 0):
            raise InvalidParameterError(
                f"timeout {name} must be a positive number of seconds or None, got {limit!r}"
            )
    return value


def retry_policy(max_retries: Any) -> RetryPolicy:
    """``max_retries=``: an int, a ``RetryPolicy``, or the dict ``serialize()`` wrote."""
    from msgflux._transport.retry import RetryPolicy

    if max_retries is None:
        return RetryPolicy()
    if isinstance(max_retries, Mapping):
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


# ---------------------------------------------------------------- tools


# A dict first: isinstance then answers without the Mapping ABC's check (a Python call).
MAPPING = (dict, Mapping)


def tool_spec(tool: Any, i: int) -> ToolSpec:
    """``tool_schemas[i]`` given as an OpenAI-shaped function tool dict → a neutral ToolSpec."""
    if not isinstance(tool, MAPPING):
        raise InvalidParameterError(
            f"tool_schemas[{i}] must be a function or a tool dict, got {type(tool).__name__}"
        )
    function = tool.get("function", tool) if tool.get("type", "function") == "function" \
        else None
    if not isinstance(function, MAPPING):
        raise InvalidParameterError(
            f"tool_schemas[{i}] must be a function tool: "
            '{"type": "function", "function": {"name": ..., "parameters": {...}}}'
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidParameterError(f"tool_schemas[{i}] has no function name")
    params = function.get("parameters")
    if params is not None and (not isinstance(params, MAPPING)
                               or params.get("type", "object") != "object"):
        raise InvalidParameterError(
            f"tool {name!r}: parameters must be a JSON Schema object "
            '({"type": "object", "properties": {...}})'
        )
    description = function.get("description")
    strict = function.get("strict")
    return ToolSpec(
        name,
        description if isinstance(description, str) else None,
        dict(params) if params is not None else None,
        strict if isinstance(strict, bool) else None,
        tool_cache(tool, function, name),
    )


def tool_choice(choice: Any, tools: tuple[ToolSpec, ...]) -> ToolChoice | None:
    """``tool_choice=``: ``auto``, ``required`` (``any``), ``none`` or a tool name."""
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


# ---------------------------------------------------------------- output and body


def typed_parser(name: Any) -> TypedParser | None:
    """``typed_parser=``: a registered parser name. Beside ``generation_schema`` it says
    how the answer is written (the schema's fields are asked for in that format, and
    the decoded answer is validated against the schema)."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidParameterError(
            f"typed_parser must be a parser name such as 'typed_xml', got {name!r}"
        )
    from msgflux.dsl.typed_parsers import get_typed_parser

    return get_typed_parser(name)


def check_prefilling(prefilling: Any, has_schema: bool, row: Provider) -> None:
    """``prefilling=``: a str, without a schema, on a provider that continues a turn."""
    if prefilling is None:
        return
    if not isinstance(prefilling, str):
        raise InvalidParameterError("prefilling must be a str")
    if has_schema:
        raise InvalidParameterError(
            "prefilling cannot be combined with generation_schema: the schema already "
            "fixes how the answer starts."
        )
    if row.dialect == "openai_responses":
        from msgflux.models.dialects.openai_responses import PREFILL_REFUSED

        raise PrefillNotSupportedError(PREFILL_REFUSED)
    if row.quirks.prefill == "unsupported":
        raise PrefillNotSupportedError(
            f"Provider {row.id!r} does not continue a trailing assistant "
            "message, so prefilling cannot work there. Use a provider that does "
            "(anthropic, mistral, vllm, llamacpp, llamacpp-server, ...)."
        )


def extra_body(model_extra: dict[str, Any] | None, call_extra: Any) -> dict[str, Any] | None:
    """The call's ``extra_body`` over the model's (keys of the call win)."""
    if call_extra is None:
        return model_extra
    if not isinstance(call_extra, Mapping):
        raise InvalidParameterError("extra_body must be a dict")
    return {**(model_extra or {}), **call_extra}


# ---------------------------------------------------------------- observation, cost, caching


def hooks(value: Any) -> tuple[Any, ...]:
    """``hooks=``: callables that receive this model's events (msgflux.observe)."""
    if value is None:
        return ()
    if callable(value):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise InvalidParameterError(
            f"hooks must be a list of callables taking one event, got {type(value).__name__}")
    from msgflux.observe._observation import check_hook

    for hook in value:
        check_hook(hook)
    return tuple(value)


# pricing= keys (USD per million tokens) -> ModelCost fields
_PRICES = {"input": "input_per_million", "output": "output_per_million",
           "cache_read": "cache_read_per_million", "cache_write": "cache_write_per_million",
           "cache_write_1h": "cache_write_1h_per_million",
           "reasoning": "reasoning_per_million"}


def pricing(value: Any) -> ModelCost | None:
    """``pricing=``: the caller's prices in USD per million tokens, as a dict with
    ``input`` and ``output`` and optionally ``cache_read``, ``cache_write``,
    ``cache_write_1h`` and ``reasoning`` (or a ``ModelCost``, for tiers)."""
    from msgflux.models.profiles.types import ModelCost

    if value is None:
        return None
    if isinstance(value, Mapping):
        fields = {**{f: f for f in _PRICES.values()}, **_PRICES}
        unknown = sorted(set(value) - set(fields) - {"tiers"})
        if unknown:
            raise InvalidParameterError(
                f"pricing: unknown key(s) {', '.join(map(repr, unknown))}; keys are "
                f"{', '.join(_PRICES)} (USD per million tokens)"
            )
        converted = {fields[k]: v for k, v in value.items() if k != "tiers"}
        if "tiers" in value:
            converted["tiers"] = value["tiers"]
        try:
            value = msgspec.convert(converted, ModelCost)
        except msgspec.ValidationError as e:
            raise InvalidParameterError(f"pricing: {e}") from None
    if not isinstance(value, ModelCost):
        raise InvalidParameterError(
            "pricing must be a dict of USD per million tokens such as "
            f"{{'input': 3.0, 'output': 15.0, 'cache_read': 0.3}}, got {value!r}"
        )
    prices = [getattr(value, f) for f in _PRICES.values()]
    prices += [getattr(t, f) for t in value.tiers for f in _PRICES.values() if hasattr(t, f)]
    if not value.known or any(
            p is not None and (isinstance(p, bool) or not 0 <= p < float("inf"))
            for p in prices):
        raise InvalidParameterError(
            "pricing needs 'input' and 'output', and every price must be a number >= 0 "
            f"(USD per million tokens), got {value!r}"
        )
    return value


_RETENTION = ("in_memory", "24h")


def prompt_cache(value: Any, retention: Any = None) -> PromptCache | None:
    """``prompt_cache=``: ``True`` (automatic breakpoints, 5 minutes), ``"5m"``/``"1h"``
    (automatic, that long), a dict with ``auto``, ``ttl``, ``key`` and ``retention``,
    or a ``PromptCache``. ``retention`` is 0.5.1's ``prompt_cache_retention=``."""
    if value is None or value is False:
        cache = None
    elif isinstance(value, PromptCache):
        cache = value
    elif value is True or value in ("5m", "1h"):
        cache = PromptCache(auto=True, ttl="1h" if value == "1h" else "5m")
    elif isinstance(value, Mapping):
        try:
            cache = msgspec.convert(dict(value), PromptCache)
        except msgspec.ValidationError as e:
            raise InvalidParameterError(
                f"prompt_cache dict: {e}; keys are auto (bool), ttl ('5m' or '1h'), key "
                "(str) and retention ('in_memory' or '24h')"
            ) from None
    else:
        raise InvalidParameterError(
            "prompt_cache must be True, '5m', '1h', a dict such as {'auto': True, 'ttl': "
            f"'1h', 'key': 'user-42'}} or a PromptCache, got {value!r}"
        )
    if retention is not None:
        cache = msgspec.structs.replace(cache or PromptCache(), retention=retention)
    if cache is not None:
        if cache.ttl not in ("5m", "1h"):
            raise InvalidParameterError(f"prompt_cache ttl must be '5m' or '1h', got "
                                        f"{cache.ttl!r}")
        if cache.retention is not None and cache.retention not in _RETENTION:
            raise InvalidParameterError(
                f"prompt cache retention must be 'in_memory' or '24h', got {cache.retention!r}")
        if cache.key is not None and not cache.key:
            raise InvalidParameterError("prompt_cache key must be a non-empty str")
    return cache


def tool_cache(tool: Mapping[str, Any], function: Mapping[str, Any], name: str) -> Any:
    """A breakpoint on one tool: ``cache_control``/``cache`` on the tool or its function."""
    for where in (tool, function):
        for key in ("cache_control", "cache"):
            if key in where:
                return cache_hint(where[key], f"tool {name!r}")
    return None
