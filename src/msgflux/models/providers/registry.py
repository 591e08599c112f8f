"""Providers as data.

A provider is a row: its dialect, default base URL, API-key variables, base-URL
override variables and quirks. Rows come from the bundled models.dev snapshot
(every provider with an ``api`` base URL speaks the OpenAI dialect, or the
Anthropic one when models.dev says so) plus the table below, which adds what
models.dev lacks (native dialects, local engines, endpoints it leaves out) and
the quirks we know. Adding an OpenAI-compatible provider is adding a row.

A provider that speaks OpenAI's Chat Completions may also serve its Responses
API: :func:`serving_row` turns the row into the one a model is reached through,
from the model's id (``responses_models``: ids served only there) and the
model's ``api`` option.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from fnmatch import fnmatchcase

import msgspec

from msgflux.exceptions import InvalidParameterError, MissingAPIKeyError, UnknownProviderError
from msgflux.models.dialects.base import Quirks

__all__ = ["APIS", "Provider", "get_provider", "list_providers", "resolve_api_key",
           "resolve_base_url", "serving_row"]

APIS = ("chat_completions", "responses")
"""Values of a model's ``api`` option: which of OpenAI's two APIs it speaks."""


class Provider(msgspec.Struct, frozen=True):
    """One provider row.

    ``key_env``: variables searched, in order, for the API key;
    ``base_url_env``: variables that override ``base_url``;
    ``key_required``: False for local engines (a key is still sent when set);
    ``engine``: an in-process engine that supplies the base URL (``llamacpp``);
    ``responses_models``: glob patterns of model ids served only by the Responses
    API, which those models then speak unless ``api="chat_completions"`` is given.
    """

    id: str
    dialect: str
    base_url: str | None
    key_env: tuple[str, ...] = ()
    base_url_env: tuple[str, ...] = ()
    key_required: bool = True
    quirks: Quirks = Quirks()
    engine: str | None = None
    name: str | None = None
    responses_models: tuple[str, ...] = ()


def _env_name(provider_id: str) -> str:
    return provider_id.upper().replace("-", "_").replace(".", "_")


def _row(pid: str, dialect: str, base_url: str | None, keys: tuple[str, ...] | None = None,
         *, local: bool = False, quirks: Quirks | None = None, engine: str | None = None,
         base_env: tuple[str, ...] | None = None, name: str | None = None,
         responses_models: tuple[str, ...] = ()) -> Provider:
    env = _env_name(pid)
    return Provider(
        id=pid,
        dialect=dialect,
        base_url=base_url,
        key_env=keys if keys is not None else (f"{env}_API_KEY",),
        base_url_env=base_env if base_env is not None else (f"{env}_BASE_URL",),
        key_required=not local,
        quirks=quirks or Quirks(),
        engine=engine,
        name=name,
        responses_models=responses_models,
    )


_NO_PREFILL = Quirks(prefill="unsupported")
_LLAMACPP = Quirks(prefill_echo="non-stream", none_drops_tools=True,
                   responses_schema="response_format", token_count="llamacpp")

# OpenAI models served only by the Responses API (OpenAI's model pages; models.dev
# has no field that says so, and its families mix them with chat models: gpt-5-chat-latest
# is in family "gpt-codex"): the -pro reasoning models, the codex models, deep research
# and computer use. Dated snapshots (o3-pro-2025-06-10) match too.
_RESPONSES_ONLY = ("*-pro", "*-pro-20*", "*codex*", "*-deep-research", "*-deep-research-20*",
                   "computer-use-preview*")

# What we know beyond models.dev. Keys: provider ids as users type them.
_TABLE: dict[str, Provider] = {
    p.id: p
    for p in (
        _row("openai", "openai", "https://api.openai.com/v1",
             quirks=Quirks(max_tokens_field="max_completion_tokens", prefill="unsupported"),
             name="OpenAI", responses_models=_RESPONSES_ONLY),
        _row("anthropic", "anthropic", "https://api.anthropic.com", name="Anthropic"),
        _row("google", "google", "https://generativelanguage.googleapis.com",
             ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GENERATIVE_AI_API_KEY"),
             base_env=("GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"), name="Google Gemini"),
        _row("groq", "openai", "https://api.groq.com/openai/v1",
             quirks=Quirks(max_tokens_field="max_completion_tokens"), name="Groq"),
        _row("mistral", "openai", "https://api.mistral.ai/v1",
             quirks=Quirks(prefill_message_flag="prefix"), name="Mistral"),
        _row("xai", "openai", "https://api.x.ai/v1", quirks=_NO_PREFILL, name="xAI"),
        _row("cerebras", "openai", "https://api.cerebras.ai/v1",
             quirks=Quirks(max_tokens_field="max_completion_tokens"), name="Cerebras"),
        _row("togetherai", "openai", "https://api.together.xyz/v1", ("TOGETHER_API_KEY",),
             base_env=("TOGETHER_BASE_URL", "TOGETHERAI_BASE_URL"), name="Together AI"),
        _row("deepinfra", "openai", "https://api.deepinfra.com/v1/openai", name="DeepInfra"),
        _row("perplexity", "openai", "https://api.perplexity.ai",
             quirks=Quirks(strict_schema=False), name="Perplexity"),
        _row("cohere", "openai", "https://api.cohere.ai/compatibility/v1", name="Cohere"),
        _row("venice", "openai", "https://api.venice.ai/api/v1", name="Venice"),
        _row("vercel", "openai", "https://ai-gateway.vercel.sh/v1", ("AI_GATEWAY_API_KEY",),
             name="Vercel AI Gateway"),
        _row("aihubmix", "openai", "https://aihubmix.com/v1", name="AIHubMix"),
        _row("openrouter", "openai", "https://openrouter.ai/api/v1",
             quirks=Quirks(reasoning="object"), name="OpenRouter"),
        # Local engines: no key needed.
        _row("ollama", "openai", "http://localhost:11434/v1", local=True, name="Ollama"),
        _row("vllm", "openai", "http://localhost:8000/v1", local=True,
             quirks=Quirks(prefill_fields={"continue_final_message": True,
                                           "add_generation_prompt": False}),
             name="vLLM"),
        _row("lmstudio", "openai", "http://127.0.0.1:1234/v1", local=True, name="LM Studio"),
        _row("sglang", "openai", "http://localhost:30000/v1", local=True, name="SGLang"),
        _row("llamacpp-server", "openai", "http://localhost:8080/v1", local=True,
             base_env=("LLAMACPP_SERVER_BASE_URL", "LLAMACPP_BASE_URL"), quirks=_LLAMACPP,
             name="llama.cpp server"),
        _row("llamacpp", "openai", None, local=True, engine="llamacpp", quirks=_LLAMACPP,
             base_env=(), name="llama.cpp (embedded)"),
    )
}

# Spellings users reach for, mapped to the row id.
_ALIASES = {
    "gemini": "google",
    "together": "togetherai",
    "llama.cpp": "llamacpp",
    "llama-cpp": "llamacpp",
    "lm-studio": "lmstudio",
    "x-ai": "xai",
    "grok": "xai",
}

_DIALECT_BY_NPM = {"@ai-sdk/anthropic": "anthropic"}

_lock = threading.Lock()
_rows: dict[str, Provider] | None = None


def _all_rows() -> Mapping[str, Provider]:
    global _rows
    if _rows is None:
        with _lock:
            if _rows is None:
                _rows = _build_rows()
    return _rows


def _build_rows() -> dict[str, Provider]:
    from msgflux.models._modelsdev import load_providers

    rows: dict[str, Provider] = {}
    for pid, data in load_providers().items():
        if not data.api:
            continue  # models.dev knows no endpoint we can call for it
        keys = tuple(k for k in data.env if k.endswith(("_KEY", "_TOKEN"))) or tuple(data.env)
        rows[pid] = _row(pid, _DIALECT_BY_NPM.get(data.npm or "", "openai"), data.api, keys,
                         name=data.name)
    rows.update(_TABLE)
    return rows


def get_provider(provider_id: str) -> Provider:
    """The row for ``provider_id`` (case-insensitive, aliases accepted)."""
    pid = provider_id.strip().lower()
    pid = _ALIASES.get(pid, pid)
    row = _TABLE.get(pid)
    if row is not None:
        return row
    rows = _all_rows()
    row = rows.get(pid)
    if row is not None:
        return row
    import difflib  # only for this error: keeps it off the import path

    close = difflib.get_close_matches(pid, [*rows, *_ALIASES], n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownProviderError(
        f"Unknown provider {provider_id!r}.{hint} Run `msgflux providers` for the list, "
        "or use an OpenAI-compatible server with "
        "Model.chat_completion('openai/<model>', base_url='http://host:port/v1')."
    )


def list_providers() -> list[Provider]:
    """Every known provider row, sorted by id."""
    return sorted(_all_rows().values(), key=lambda p: p.id)


def resolve_base_url(provider: Provider, base_url: str | None) -> str | None:
    """``base_url`` if given, else the first override variable set, else the row's default."""
    if base_url:
        return base_url
    for name in provider.base_url_env:
        value = os.environ.get(name)
        if value:
            return value
    return provider.base_url


def resolve_api_key(provider: Provider, api_key: str | None) -> str | None:
    """``api_key`` if given, else the first key variable set; an error if one is required."""
    if api_key:
        return api_key
    for name in provider.key_env:
        value = os.environ.get(name)
        if value:
            return value
    if provider.key_required:
        names = " or ".join(provider.key_env) or "the provider's key variable"
        raise MissingAPIKeyError(
            f"No API key for provider {provider.id!r}: set {names} "
            f"(e.g. export {provider.key_env[0] if provider.key_env else 'API_KEY'}=...) "
            "or pass api_key= to Model.chat_completion()."
        )
    return None


def serving_row(row: Provider, model_id: str, api: str | None) -> Provider:
    """``row`` as it serves ``model_id``: its own, or the same provider over the Responses API.

    ``api`` (one of :data:`APIS`, as ``options`` checked it) is for providers
    that speak OpenAI's Chat Completions; ``None`` means the Responses API for
    the ids in ``row.responses_models``, else the row's own dialect. Over Responses no
    assistant turn is continued, and models whose profile says they do not reason
    are not asked for encrypted reasoning (they refuse the request).
    """
    if api is None:
        model = model_id.lower()
        if not any(fnmatchcase(model, pattern) for pattern in row.responses_models):
            return row
        api = "responses"
    if row.dialect != "openai":
        raise InvalidParameterError(
            f"api={api!r} chooses between OpenAI's Chat Completions and Responses APIs; "
            f"provider {row.id!r} speaks its own ({row.dialect}). Drop api=."
        )
    if api == "chat_completions":
        return row
    from msgflux.models.profiles import get_model_profile

    profile = get_model_profile(model_id, provider_id=row.id)
    reasons = profile.capabilities.reasoning if profile is not None else True
    quirks = msgspec.structs.replace(row.quirks, prefill="unsupported",
                                     encrypted_reasoning=reasons)
    return msgspec.structs.replace(row, dialect="openai_responses", quirks=quirks)
