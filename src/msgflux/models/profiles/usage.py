"""Price a provider's usage report with a model's profile (for ``metadata.cost``)."""

from __future__ import annotations

from typing import Any

from msgflux.models.profiles.types import ModelProfile

__all__ = ["usage_cost"]


def usage_cost(profile: ModelProfile | None, usage: Any) -> float | None:
    """USD cost of ``usage`` (an object or dict with msgflux's normalised counts), or ``None``.

    ``usage`` has ``prompt_tokens`` (including ``cached_tokens`` and
    ``cache_write_tokens``) and ``completion_tokens`` (including ``reasoning_tokens``);
    missing or ``None`` counts are 0. ``None`` when there is no profile, no usage or
    a needed price is unknown: an unknown cost is never reported as 0.
    """
    if profile is None or usage is None:
        return None
    get = usage.get if isinstance(usage, dict) else lambda name: getattr(usage, name, None)
    return profile.cost.calculate(
        input_tokens=get("prompt_tokens") or 0,
        output_tokens=get("completion_tokens") or 0,
        cached_tokens=get("cached_tokens") or 0,
        cache_write_tokens=get("cache_write_tokens") or 0,
        reasoning_tokens=get("reasoning_tokens") or 0,
    )
