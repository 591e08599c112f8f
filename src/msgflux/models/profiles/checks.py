"""Pre-flight checks of a request against a model's profile (pure, no I/O, ~1 µs).

The chat model calls :func:`check_request` before any network call, so that a request
the model cannot serve fails with a message that says what models.dev states and how to
proceed, instead of a provider's 400. Only explicit statements count: a capability that
models.dev leaves unstated (``None``) or a limit it does not know never raises.
"""

from __future__ import annotations

from msgflux.exceptions import CapabilityError, ContextWindowExceededError
from msgflux.models.profiles.types import ModelProfile

__all__ = ["check_request"]

_OVERRIDE = (
    "If you know better (newer model version, self-hosted variant), pass "
    "check_capabilities=False to skip the profile checks."
)


def check_request(
    profile: ModelProfile | None,
    *,
    has_tools: bool = False,
    has_schema: bool = False,
    has_images: bool = False,
    estimated_prompt_tokens: int | None = None,
    max_tokens: int | None = None,
) -> None:
    """Raise if the profile says the model cannot take this request; do nothing otherwise.

    ``has_schema`` means native structured output (a JSON schema ``response_format``).
    ``estimated_prompt_tokens`` should not overestimate (a false alarm blocks a call
    that would have worked); it is compared with ``limits.input`` when models.dev gives
    one, else with ``limits.context``; with ``max_tokens`` the sum is compared with
    ``limits.context``.

    Raises :class:`~msgflux.exceptions.CapabilityError` (tools, schema, images,
    ``max_tokens`` above the output limit) or
    :class:`~msgflux.exceptions.ContextWindowExceededError`.
    """
    if profile is None:
        return
    caps = profile.capabilities
    name = f"{profile.provider_id}/{profile.id}"
    if has_tools and not caps.tool_call:
        raise CapabilityError(
            f"{name} does not support tool calling according to its models.dev profile, "
            f"but the request has tool_schemas. Remove the tools or pick a model with "
            f"tool calling. {_OVERRIDE}"
        )
    if has_schema and caps.structured_output is False:
        raise CapabilityError(
            f"{name} does not support structured output according to its models.dev "
            f"profile, but the request has a generation_schema. Use a typed_parser "
            f"(e.g. typed_parser='typed_xml') or pick another model. {_OVERRIDE}"
        )
    if has_images and "image" not in profile.modalities.input:
        accepted = ", ".join(profile.modalities.input)
        raise CapabilityError(
            f"{name} takes {accepted} input according to its models.dev profile, but the "
            f"request contains images. Remove them or pick a vision model. {_OVERRIDE}"
        )
    limits = profile.limits
    if max_tokens is not None and limits.output is not None and max_tokens > limits.output:
        raise CapabilityError(
            f"max_tokens={max_tokens} is more than {name} can write in one answer "
            f"({limits.output} tokens according to its models.dev profile). Lower max_tokens. "
            f"{_OVERRIDE}"
        )
    if estimated_prompt_tokens is None:
        return
    prompt_cap = limits.input or limits.context
    if prompt_cap is not None and estimated_prompt_tokens > prompt_cap:
        raise ContextWindowExceededError(
            f"the prompt is about {estimated_prompt_tokens} tokens, more than {name} accepts "
            f"({prompt_cap} tokens according to its models.dev profile). Shorten the messages "
            f"or pick a model with a larger context window. {_OVERRIDE}"
        )
    if (
        max_tokens is not None
        and limits.context is not None
        and estimated_prompt_tokens + max_tokens > limits.context
    ):
        raise ContextWindowExceededError(
            f"the prompt (about {estimated_prompt_tokens} tokens) plus max_tokens={max_tokens} "
            f"exceeds {name}'s context window of {limits.context} tokens (models.dev profile). "
            f"Lower max_tokens to at most {max(limits.context - estimated_prompt_tokens, 0)} "
            f"or shorten the messages. {_OVERRIDE}"
        )
