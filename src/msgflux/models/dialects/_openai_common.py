"""What OpenAI's two APIs (Chat Completions and Responses) share on the wire.

Both take the same headers, describe a function tool and an output schema with
the same fields (nested under ``function`` / ``json_schema`` in one, flat in
the other) and report errors inside a 200 answer with the same object.
"""

from __future__ import annotations

from typing import Any

import msgspec

from msgflux.exceptions import ProviderError
from msgflux.models.dialects.base import (
    USER_AGENT,
    Endpoint,
    derived,
    error_from_status,
    join_url,
    schema_json,
)
from msgflux.models.request import OutputSchema, ToolSpec

__all__ = ["WireError", "function_fields", "headers", "in_band_error", "route", "schema_fields"]


def route(endpoint: Endpoint, path: str, stream: bool
          ) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The URL of ``path`` and the headers, made once per endpoint and kind of call
    (the transport caches its request head by them)."""
    return derived(endpoint, (path, stream),
                   lambda: (join_url(endpoint.base_url, path), headers(endpoint, stream)))


def headers(endpoint: Endpoint, stream: bool) -> tuple[tuple[str, str], ...]:
    """Content type, accept, user agent, the bearer key and the caller's extra headers."""
    out = [
        ("content-type", "application/json"),
        ("accept", "text/event-stream" if stream else "application/json"),
        ("user-agent", USER_AGENT),
    ]
    if endpoint.api_key:
        out.append(("authorization", f"Bearer {endpoint.api_key}"))
    out.extend(endpoint.headers)
    return tuple(out)


def function_fields(tool: ToolSpec, strict: bool | None) -> dict[str, Any]:
    """A function tool's ``name``, ``description``, ``parameters`` and ``strict``.

    ``strict``: what to send when the tool does not say (``None`` sends nothing).
    """
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = (
        tool.parameters if tool.parameters is not None else {"type": "object", "properties": {}}
    )
    strict = tool.strict if tool.strict is not None else strict
    if strict is not None:
        function["strict"] = strict
    return function


def schema_fields(output: OutputSchema, strict: bool) -> dict[str, Any]:
    """A ``json_schema`` format's ``name``, ``description``, ``schema`` and ``strict``:
    the strict lowering where the server takes strict schemas, else the logical one."""
    fields: dict[str, Any] = {"name": output.name}
    if output.description:
        fields["description"] = output.description
    if strict:
        fields["schema"] = schema_json(output.strict_schema)
        fields["strict"] = True
    else:
        fields["schema"] = schema_json(output.schema)
    return fields


class WireError(msgspec.Struct, gc=False):
    """The error object: ``{"message", "type", "code"}`` (``code`` a str, or a status)."""

    message: str | None = None
    type: str | None = None
    code: str | int | None = None


def in_band_error(error: WireError | str, provider: str, raw: bytes) -> ProviderError:
    """The typed error for an error object inside a 200 answer or stream."""
    if isinstance(error, str):
        return error_from_status(None, error, provider=provider,
                                 body=raw.decode("utf-8", "replace"))
    status = error.code if isinstance(error.code, int) else None
    return error_from_status(
        status,
        error.message or "error",
        provider=provider,
        code=str(error.code) if error.code is not None else None,
        error_type=error.type,
        body=raw.decode("utf-8", "replace")[:4000],
    )
