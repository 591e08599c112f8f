"""What a call cost, and when that cannot be known.

The bundled models.dev prices are the provider's own list prices: they apply
only when calls go to the provider's own endpoint. Behind any other base URL (a
local server, a proxy, a self-hosted deployment) the price is unknown unless
the caller gives one (``pricing=``), and unknown stays ``None`` — never $0,
never a guess.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from msgflux._transport.urls import Origin, split_url
from msgflux.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from msgflux.dotdict import dotdict
    from msgflux.models.profiles.types import ModelCost, ModelProfile
    from msgflux.models.request import Usage

__all__ = ["cost", "own_endpoint", "prices"]


def own_endpoint(default_url: str | None, base_url: str | None) -> bool:
    """Does ``base_url`` reach the provider's own endpoint (same scheme, host and port
    as its default base URL)?"""
    if not default_url or not base_url:
        return False
    origin = _origin(base_url)
    return origin is not None and origin == _origin(default_url)


def _origin(url: str) -> Origin | None:
    # The transport's own splitter (loaded anyway): urllib.parse would add ~4 ms to a
    # first call.
    try:
        return split_url(url).origin
    except InvalidParameterError:  # a malformed URL reaches no known endpoint
        return None


def prices(given: ModelCost | None, profile: ModelProfile | None, default_url: str | None,
           base_url: str | None) -> ModelCost | None:
    """The prices to charge: the caller's, else the profile's list prices when calls go
    to the provider's own endpoint, else ``None`` (unknown)."""
    if given is not None:
        return given
    if profile is None or not profile.cost.known or not own_endpoint(default_url, base_url):
        return None
    return profile.cost


def cost(table: ModelCost | None, usage: Usage | None
         ) -> tuple[float | None, dotdict | None]:
    """``(cost in USD, its breakdown)`` of ``usage`` at ``table``'s prices; ``(None,
    None)`` when either is unknown."""
    if table is None or usage is None:
        return None, None
    parts = table.breakdown(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens or 0,
        cache_write_tokens=usage.cache_write_tokens or 0,
        reasoning_tokens=usage.reasoning_tokens or 0,
        cache_write_1h_tokens=usage.cache_write_1h_tokens or 0,
    )
    if parts is None:
        return None, None
    from msgflux.dotdict import dotdict

    total = table.calculate(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cached_tokens=usage.cached_tokens or 0,
        cache_write_tokens=usage.cache_write_tokens or 0,
        reasoning_tokens=usage.reasoning_tokens or 0,
        cache_write_1h_tokens=usage.cache_write_1h_tokens or 0,
    )
    return total, dotdict(parts)
