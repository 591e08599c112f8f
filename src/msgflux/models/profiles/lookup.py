"""Find the profile of what a user typed: ``"openai/gpt-4o"``, ``"GPT-4o"``,
``"claude-3-5-sonnet-latest"``, ``"gpt-4o-2024-08-06"``, ``("gemini-2.0-flash-exp", "gemini")``.

Resolution inside one provider, first hit wins:

1. the id as given, then case-, ``.``- and ``_``-insensitively (``claude-3.5-sonnet``
   finds ``claude-3-5-sonnet-…``);
2. for aggregators whose ids are ``vendor/model``: a unique id ending in ``/<id>``;
3. the id with ``-latest`` appended, then its newest dated snapshot
   (``claude-3-5-sonnet`` → ``claude-3-5-sonnet-20241022``);
4. steps 1-3 again after removing one version suffix at a time: a date
   (``-2024-08-06``, ``-20241022``, ``@20241022``, OpenAI's ``-0613``), a Gemini
   version (``-001``, ``-exp``, the date of ``-preview-05-20``) or ``-latest``/``:latest``.

Without ``provider_id``: a ``provider/`` prefix naming a known provider (or alias:
``gemini`` → ``google``, ``together`` → ``togetherai``…) selects it; otherwise
first-party providers are searched first (so ``gpt-4o`` is OpenAI's, not a reseller's),
then every other provider, exact ids before loose matches. A provider models.dev does
not list (``vllm``, ``ollama``, ``llamacpp``…) has no profiles: their models are
whatever the user serves, and resellers' prices would be wrong for them.

Everything is cached: the first lookup costs the data load (~15 ms), later ones a
dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from msgflux.models import _modelsdev
from msgflux.models._modelsdev import MODELS_DEV_URL, ModelData, ProviderData, RefreshResult
from msgflux.models.profiles.types import (
    CostTier,
    ModelCapabilities,
    ModelCost,
    ModelLimits,
    ModelModalities,
    ModelProfile,
    ProviderProfile,
)

__all__ = [
    "ensure_profiles_loaded",
    "get_model_profile",
    "get_provider_profile",
    "list_model_profiles",
    "refresh_profiles",
    "resolve_provider_id",
]

# Spellings users (and LiteLLM / pydantic-ai / msgflux 0.5.1 code) use for providers
# models.dev names differently. Keys are normalised by _normalise_provider.
_PROVIDER_ALIASES = {
    "gemini": "google",
    "google-genai": "google",
    "google-gla": "google",
    "google-ai-studio": "google",
    "vertex": "google-vertex",
    "vertexai": "google-vertex",
    "vertex-ai": "google-vertex",
    "google-vertexai": "google-vertex",
    "bedrock": "amazon-bedrock",
    "aws-bedrock": "amazon-bedrock",
    "azure-openai": "azure",
    "mistralai": "mistral",
    "grok": "xai",
    "x-ai": "xai",
    "together": "togetherai",
    "together-ai": "togetherai",
    "fireworks": "fireworks-ai",
    "fireworksai": "fireworks-ai",
    "moonshot": "moonshotai",
    "hf": "huggingface",
    "novita": "novita-ai",
    "zhipu": "zhipuai",
    "dashscope": "alibaba",
    "github": "github-models",
    "copilot": "github-copilot",
    "cloudflare": "cloudflare-workers-ai",
    "workers-ai": "cloudflare-workers-ai",
    "meta": "llama",
    "meta-llama": "llama",
}

# Searched first when no provider is given: the model makers, whose ids resellers copy.
_FIRST_PARTY = (
    "openai",
    "anthropic",
    "google",
    "mistral",
    "xai",
    "deepseek",
    "cohere",
    "llama",
    "alibaba",
    "moonshotai",
    "zai",
    "minimax",
    "perplexity",
)

_DATE = r"\d{4}-?\d{2}-?\d{2}"
# One version suffix; stripped repeatedly by _without_suffixes.
_SUFFIX = re.compile(
    rf"(?:[-@]{_DATE}"  # -2024-08-06, -20241022, @20241022 (Vertex)
    r"|-(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # OpenAI's MMDD snapshots: -0613, -0125
    r"|(?:(?<=-preview)|(?<=-exp))-\d{2}-\d{2}"  # Gemini preview dates: -preview-05-20
    r"|-\d{3}"  # Gemini stable versions: -001, -002
    r"|-exp(?:erimental)?"
    r"|[-@:]latest)$",
    re.IGNORECASE,
)
_DATED = re.compile(rf"^(.+)-({_DATE})$")
_LOOSE = str.maketrans({".": "-", "_": "-", " ": "-"})


def _loose(model_id: str) -> str:
    return model_id.lower().translate(_LOOSE)


def _normalise_provider(provider_id: str) -> str:
    return provider_id.strip().lower().replace("_", "-").replace(" ", "-")


def _without_suffixes(model_id: str) -> list[str]:
    """``model_id`` then each shorter form obtained by removing one more version suffix."""
    forms = [model_id]
    while (match := _SUFFIX.search(forms[-1])) and match.start() > 0:
        forms.append(forms[-1][: match.start()])
    return forms


class _ProviderIndex:
    """Lookup tables for one provider's model ids, built on first use."""

    __slots__ = ("dated", "loose", "models", "tails")

    def __init__(self, models: Mapping[str, ModelData]) -> None:
        self.models = models
        self.loose: dict[str, str] = {}
        self.dated: dict[str, tuple[str, str]] = {}  # loose base -> (date digits, id), newest
        tails: dict[str, str | None] = {}
        for model_id in sorted(models):
            key = _loose(model_id)
            self.loose.setdefault(key, model_id)
            if match := _DATED.match(key):
                digits = match.group(2).replace("-", "")
                best = self.dated.get(match.group(1))
                if best is None or digits > best[0]:
                    self.dated[match.group(1)] = (digits, model_id)
            if "/" in key:
                tail = key.rsplit("/", 1)[1]
                # A tail shared by two vendors' models is ambiguous: drop it.
                tails[tail] = None if tail in tails else model_id
        self.tails = {tail: mid for tail, mid in tails.items() if mid is not None}

    def exact(self, model_id: str) -> str | None:
        if model_id in self.models:
            return model_id
        return self.loose.get(_loose(model_id))

    def fuzzy(self, model_id: str) -> str | None:
        for form in _without_suffixes(model_id):
            key = _loose(form)
            found = (
                self.loose.get(key)
                or self.tails.get(key)
                or self.loose.get(f"{key}-latest")
                or self.dated.get(key, (None, None))[1]
            )
            if found is not None:
                return found
        return None


class _Resolver:
    """Indexes and built profiles for one loaded copy of the data."""

    def __init__(self, providers: Mapping[str, ProviderData]) -> None:
        self.providers = providers
        self.indexes: dict[str, _ProviderIndex] = {}
        self.profiles: dict[tuple[str, str], ModelProfile] = {}
        self.lookups: dict[tuple[str, str | None], ModelProfile | None] = {}
        self.provider_profiles: dict[str, ProviderProfile] = {}
        rest = sorted(pid for pid in providers if pid not in _FIRST_PARTY)
        self.search_order = [pid for pid in _FIRST_PARTY if pid in providers] + rest

    def provider_id(self, provider_id: str) -> str | None:
        if provider_id in self.providers:
            return provider_id
        key = _normalise_provider(provider_id)
        key = _PROVIDER_ALIASES.get(key, key)
        return key if key in self.providers else None

    def index(self, provider_id: str) -> _ProviderIndex:
        index = self.indexes.get(provider_id)
        if index is None:
            index = self.indexes[provider_id] = _ProviderIndex(self.providers[provider_id].models)
        return index

    def profile(self, provider_id: str, model_id: str) -> ModelProfile:
        key = (provider_id, model_id)
        profile = self.profiles.get(key)
        if profile is None:
            data = self.providers[provider_id].models[model_id]
            profile = self.profiles[key] = _to_profile(provider_id, data)
        return profile

    def find_in(self, provider_id: str, model_id: str) -> ModelProfile | None:
        index = self.index(provider_id)
        found = index.exact(model_id) or index.fuzzy(model_id)
        return None if found is None else self.profile(provider_id, found)

    def find(self, model_id: str, provider_id: str | None) -> ModelProfile | None:
        model_id = model_id.strip()
        if provider_id is not None:
            pid = self.provider_id(provider_id)
            if pid is None:
                return None
            found = self.find_in(pid, model_id)
            if found is None and "/" in model_id:
                prefix, rest = model_id.split("/", 1)
                if self.provider_id(prefix) == pid:
                    found = self.find_in(pid, rest)
            return found
        if "/" in model_id:
            prefix, rest = model_id.split("/", 1)
            pid = self.provider_id(prefix)
            if pid is not None:
                return self.find_in(pid, rest)
        first_party = [pid for pid in self.search_order if pid in _FIRST_PARTY]
        for pid in first_party:
            if found := self.find_in(pid, model_id):
                return found
        others = self.search_order[len(first_party) :]
        for pid in others:
            if found_id := self.index(pid).exact(model_id):
                return self.profile(pid, found_id)
        for pid in others:
            if found_id := self.index(pid).fuzzy(model_id):
                return self.profile(pid, found_id)
        return None

    def lookup(self, model_id: str, provider_id: str | None) -> ModelProfile | None:
        key = (model_id, provider_id)
        try:
            return self.lookups[key]
        except KeyError:
            pass
        found = self.find(model_id, provider_id)
        # Bounded: a process asking for endless distinct unknown ids must not leak memory.
        if len(self.lookups) >= 4096:
            self.lookups.clear()
        self.lookups[key] = found
        return found

    def provider_profile(self, provider_id: str) -> ProviderProfile:
        profile = self.provider_profiles.get(provider_id)
        if profile is None:
            data = self.providers[provider_id]
            models = {mid: self.profile(provider_id, mid) for mid in data.models}
            profile = self.provider_profiles[provider_id] = ProviderProfile(
                id=provider_id,
                name=data.name,
                api_base=data.api,
                env_vars=data.env,
                doc_url=data.doc,
                npm=data.npm,
                models=MappingProxyType(models),
            )
        return profile


_resolver_cache: _Resolver | None = None


def _resolver() -> _Resolver:
    global _resolver_cache
    providers = _modelsdev.load_providers()
    resolver = _resolver_cache
    # A reload or refresh gives a new mapping object: everything derived is rebuilt.
    if resolver is None or resolver.providers is not providers:
        resolver = _resolver_cache = _Resolver(providers)
    return resolver


def _positive(value: int | None) -> int | None:
    # models.dev writes 0 for limits it does not know.
    return value if value else None


def _hour_write(provider_id: str, input_price: float | None) -> float | None:
    """The price of a cache write kept for an hour, which models.dev does not list:
    Anthropic prices it at twice the base input price (its prompt-caching pricing)."""
    if provider_id != "anthropic" or input_price is None:
        return None
    return 2 * input_price


def _to_profile(provider_id: str, data: ModelData) -> ModelProfile:
    cost = data.cost
    return ModelProfile(
        id=data.id,
        name=data.name,
        provider_id=provider_id,
        capabilities=ModelCapabilities(
            tool_call=data.tool_call,
            structured_output=data.structured_output,
            reasoning=data.reasoning,
            attachment=data.attachment,
            temperature=data.temperature,
        ),
        modalities=ModelModalities(
            input=data.modalities.input or ("text",), output=data.modalities.output or ("text",)
        ),
        limits=ModelLimits(
            context=_positive(data.limit.context),
            output=_positive(data.limit.output),
            input=_positive(data.limit.input),
        ),
        cost=ModelCost()
        if cost is None
        else ModelCost(
            input_per_million=cost.input,
            output_per_million=cost.output,
            cache_read_per_million=cost.cache_read,
            cache_write_per_million=cost.cache_write,
            reasoning_per_million=cost.reasoning,
            input_audio_per_million=cost.input_audio,
            output_audio_per_million=cost.output_audio,
            tiers=tuple(
                CostTier(
                    above_input_tokens=t.tier.size,
                    input_per_million=t.input,
                    output_per_million=t.output,
                    cache_read_per_million=t.cache_read,
                    cache_write_per_million=t.cache_write,
                    reasoning_per_million=t.reasoning,
                )
                for t in cost.tiers
                if t.tier.type == "context"
            ),
            cache_write_1h_per_million=_hour_write(provider_id, cost.input),
        ),
        knowledge=data.knowledge,
        release_date=data.release_date,
        last_updated=data.last_updated,
        open_weights=data.open_weights,
        family=data.family,
        status=data.status,
    )


# ---------------------------------------------------------------- public API


def get_model_profile(model_id: str, provider_id: str | None = None) -> ModelProfile | None:
    """The profile of ``model_id`` (optionally ``"provider/model"``), or ``None`` if unknown.

    Never raises for an unknown or malformed id and never touches the network: the
    data is the bundled models.dev snapshot, or the copy :func:`refresh_profiles` saved.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        return None
    if provider_id is not None and not isinstance(provider_id, str):
        return None
    return _resolver().lookup(model_id, provider_id)


def get_provider_profile(provider_id: str) -> ProviderProfile | None:
    """The provider's base URL, key variables, docs and model profiles; ``None`` if unknown."""
    if not isinstance(provider_id, str):
        return None
    resolver = _resolver()
    pid = resolver.provider_id(provider_id)
    return None if pid is None else resolver.provider_profile(pid)


def resolve_provider_id(provider_id: str) -> str | None:
    """models.dev's id for a provider name or alias (``"gemini"`` → ``"google"``), or ``None``."""
    if not isinstance(provider_id, str):
        return None
    return _resolver().provider_id(provider_id)


def list_model_profiles(
    provider_id: str | None = None,
    *,
    tool_call: bool | None = None,
    structured_output: bool | None = None,
    reasoning: bool | None = None,
    input_modality: str | None = None,
    min_context: int | None = None,
    max_output_cost: float | None = None,
    search: str | None = None,
) -> list[ModelProfile]:
    """Profiles sorted by provider then id, filtered by whichever criteria are given.

    ``tool_call``/``structured_output``/``reasoning``: keep models whose flag equals
    the value (``structured_output=True`` drops models whose entry does not say);
    ``input_modality``: e.g. ``"image"``; ``min_context``: known context of at least
    this many tokens; ``max_output_cost``: known output price (USD per million tokens)
    at most this; ``search``: case-insensitive substring of the id or the name.
    An unknown ``provider_id`` gives an empty list.
    """
    resolver = _resolver()
    if provider_id is None:
        provider_ids = sorted(resolver.providers)
    else:
        pid = resolver.provider_id(provider_id)
        provider_ids = [] if pid is None else [pid]
    needle = search.lower() if search else None
    result = []
    for pid in provider_ids:
        for mid in sorted(resolver.providers[pid].models):
            profile = resolver.profile(pid, mid)
            caps = profile.capabilities
            if (
                (tool_call is not None and caps.tool_call != tool_call)
                or (structured_output is not None and caps.structured_output != structured_output)
                or (reasoning is not None and caps.reasoning != reasoning)
                or (input_modality is not None and input_modality not in profile.modalities.input)
                or (
                    min_context is not None
                    and (profile.limits.context is None or profile.limits.context < min_context)
                )
                or (
                    max_output_cost is not None
                    and (
                        profile.cost.output_per_million is None
                        or profile.cost.output_per_million > max_output_cost
                    )
                )
                or (
                    needle is not None
                    and needle not in profile.id.lower()
                    and needle not in profile.name.lower()
                )
            ):
                continue
            result.append(profile)
    return result


def refresh_profiles(*, timeout: float = 30.0, url: str = MODELS_DEV_URL) -> RefreshResult:
    """Download the latest models.dev data into the user cache and use it from now on.

    The only function here that uses the network. On failure the current data stays
    in use and the error is raised (see :func:`msgflux.models._modelsdev.refresh`).
    """
    # The new data comes as a new mapping, so _resolver() rebuilds its indexes on next use.
    return _modelsdev.refresh(timeout=timeout, url=url)


def ensure_profiles_loaded(*, background: bool = False) -> None:
    """0.5.1 compatibility: loads the local data now (there is nothing to fetch).

    ``background`` is accepted and ignored: loading takes ~15 ms and needs no network.
    """
    del background
    _modelsdev.load_providers()
