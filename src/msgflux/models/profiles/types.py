"""What msgflux knows about a model: capabilities, modalities, limits and prices.

Frozen msgspec Structs (immutable, hashable, JSON-encodable with ``msgspec.json.encode``).
Profiles are shared between callers, so sequences are tuples, never lists.

``None`` always means *not stated by models.dev*, never "no" or "free": e.g.
``capabilities.structured_output is None`` for a model whose entry says nothing about
structured output, ``cost.input_per_million is None`` when the price is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = [
    "CostTier",
    "ModelCapabilities",
    "ModelCost",
    "ModelLimits",
    "ModelModalities",
    "ModelProfile",
    "ProviderProfile",
]

_PER_MILLION = 1_000_000


class ModelCapabilities(msgspec.Struct, frozen=True):
    """What the model accepts; ``None`` where models.dev does not say."""

    tool_call: bool = False
    structured_output: bool | None = None
    reasoning: bool = False
    attachment: bool = False
    temperature: bool | None = None


class ModelModalities(msgspec.Struct, frozen=True):
    """Input and output modalities, e.g. ``("text", "image", "pdf")`` and ``("text",)``."""

    input: tuple[str, ...] = ("text",)
    output: tuple[str, ...] = ("text",)


class ModelLimits(msgspec.Struct, frozen=True):
    """Token limits; ``None`` when unknown.

    ``context`` is the whole window (prompt + output), ``output`` the most tokens one
    answer may have, ``input`` the prompt cap where it is lower than ``context``
    (e.g. 272k of gpt-5's 400k window).
    """

    context: int | None = None
    output: int | None = None
    input: int | None = None


class CostTier(msgspec.Struct, frozen=True):
    """Prices that apply to the whole request once the prompt has more than
    ``above_input_tokens`` tokens (e.g. Gemini 2.5 Pro above 200k). ``None`` fields
    fall back to the base price."""

    above_input_tokens: int
    input_per_million: float | None = None
    output_per_million: float | None = None
    cache_read_per_million: float | None = None
    cache_write_per_million: float | None = None
    reasoning_per_million: float | None = None


class ModelCost(msgspec.Struct, frozen=True):
    """Prices in USD per million tokens; ``None`` when models.dev gives none.

    Token-count convention of :meth:`calculate` (the OpenAI one, which msgflux's
    normalised usage follows): ``input_tokens`` is the *whole* prompt and already
    includes ``cached_tokens`` (read from the provider's prompt cache) and
    ``cache_write_tokens`` (written to it); ``output_tokens`` is the whole answer and
    already includes ``reasoning_tokens``. Each token is charged once, at the most
    specific price known: cached tokens at ``cache_read_per_million`` (the input
    price when that is unknown), cache writes at ``cache_write_per_million`` (else
    the input price), reasoning at ``reasoning_per_million`` (else the output price),
    the rest at the input/output prices. Anthropic's usage, where ``input_tokens``
    excludes cache reads and writes, must be summed up first.

    ``cache_write_1h_tokens`` (part of ``cache_write_tokens``) are writes kept for
    an hour, charged at ``cache_write_1h_per_million``; they have no fallback price
    (they cost more than a plain write), so the cost is unknown without it.
    """

    input_per_million: float | None = None
    output_per_million: float | None = None
    cache_read_per_million: float | None = None
    cache_write_per_million: float | None = None
    reasoning_per_million: float | None = None
    input_audio_per_million: float | None = None
    output_audio_per_million: float | None = None
    tiers: tuple[CostTier, ...] = ()
    cache_write_1h_per_million: float | None = None

    @property
    def known(self) -> bool:
        """True when both the input and the output price are known."""
        return self.input_per_million is not None and self.output_per_million is not None

    @property
    def input_per_token(self) -> float | None:
        return _per_token(self.input_per_million)

    @property
    def output_per_token(self) -> float | None:
        return _per_token(self.output_per_million)

    @property
    def cache_read_per_token(self) -> float | None:
        return _per_token(self.cache_read_per_million)

    def calculate(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> float | None:
        """The request's cost in USD, or ``None`` when a price it needs is unknown.

        See the class docstring for what each count includes. Counts that do not
        add up (more cached than prompt tokens) are clamped rather than raised on,
        because this runs on providers' usage reports after the call succeeded.
        """
        parts = self._parts(input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                            reasoning_tokens, cache_write_1h_tokens)
        # Summed in token x USD-per-million and divided once: fewer rounding steps.
        return None if parts is None else sum(parts.values()) / _PER_MILLION

    def breakdown(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> dict[str, float] | None:
        """:meth:`calculate` part by part (USD): ``input`` (the uncached prompt),
        ``cache_read``, ``cache_write``, ``output`` (the answer without reasoning) and
        ``reasoning``; ``None`` when a price it needs is unknown."""
        parts = self._parts(input_tokens, output_tokens, cached_tokens, cache_write_tokens,
                            reasoning_tokens, cache_write_1h_tokens)
        return None if parts is None else {k: v / _PER_MILLION for k, v in parts.items()}

    def _parts(self, input_tokens: int, output_tokens: int, cached_tokens: int,
               cache_write_tokens: int, reasoning_tokens: int, cache_write_1h_tokens: int
               ) -> dict[str, float] | None:
        """Each part's tokens x USD per million."""
        tier = self._tier_for(input_tokens)
        base = self if tier is None else tier
        input_rate = _first(base.input_per_million, self.input_per_million)
        output_rate = _first(base.output_per_million, self.output_per_million)
        if input_rate is None or output_rate is None:
            return None
        cache_read_rate = _first(base.cache_read_per_million, self.cache_read_per_million)
        cache_write_rate = _first(base.cache_write_per_million, self.cache_write_per_million)
        reasoning_rate = _first(base.reasoning_per_million, self.reasoning_per_million)

        cached = max(cached_tokens, 0)
        written = max(cache_write_tokens, 0)
        hour = min(max(cache_write_1h_tokens, 0), written)
        long_rate = self.cache_write_1h_per_million
        if hour and long_rate is None:
            return None
        reasoning = min(max(reasoning_tokens, 0), max(output_tokens, 0))
        uncached = max(input_tokens - cached - written, 0)
        answer = max(output_tokens - reasoning, 0)
        return {
            "input": uncached * input_rate,
            "cache_read": cached * _first(cache_read_rate, input_rate),
            "cache_write": (written - hour) * _first(cache_write_rate, input_rate)
            + (hour * long_rate if hour else 0.0),
            "output": answer * output_rate,
            "reasoning": reasoning * _first(reasoning_rate, output_rate),
        }

    def _tier_for(self, input_tokens: int) -> CostTier | None:
        chosen = None
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens and (
                chosen is None or tier.above_input_tokens > chosen.above_input_tokens
            ):
                chosen = tier
        return chosen


class ModelProfile(msgspec.Struct, frozen=True):
    """One model of one provider, from models.dev.

    ``id`` is the id models.dev uses (a lookup of ``gpt-4o-2024-08-06`` or
    ``gemini-2.0-flash-exp`` may resolve to another, close id; see
    :func:`msgflux.models.profiles.get_model_profile`). Dates are ISO strings as
    models.dev gives them (``knowledge`` may be ``"2023-09"``). ``status`` is
    ``"deprecated"``, ``"beta"``, ``"alpha"`` or ``None``.
    """

    id: str
    name: str
    provider_id: str
    capabilities: ModelCapabilities
    modalities: ModelModalities
    limits: ModelLimits
    cost: ModelCost
    knowledge: str | None = None
    release_date: str | None = None
    last_updated: str | None = None
    open_weights: bool = False
    family: str | None = None
    status: str | None = None

    @property
    def context_length(self) -> int | None:
        """0.5.1's name for ``limits.context``."""
        return self.limits.context


class ProviderProfile(msgspec.Struct, frozen=True):
    """A provider: base URL (``None`` when its own SDK knows it), key variables, docs."""

    id: str
    name: str
    api_base: str | None
    env_vars: tuple[str, ...]
    doc_url: str | None
    npm: str | None
    models: Mapping[str, ModelProfile]


def _per_token(per_million: float | None) -> float | None:
    return None if per_million is None else per_million / _PER_MILLION


def _first(value: float | None, fallback: float | None) -> float | None:
    return fallback if value is None else value
