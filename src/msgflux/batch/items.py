"""A batch's items: what one input may be, and what one result holds.

An input is what calling the model accepts: a prompt (``str``), a list of
messages, or a dict of call arguments with ``messages`` and optionally ``id``
(kept on the result) — ``{"id": 7, "messages": "Hi", "temperature": 0}``.
Arguments given to the batch itself apply to every item; an item's own win.

A result (:class:`BatchItem`) holds plain data only — the answer's text, the
structured object as a dict, or the tool calls as ``get_calls()`` gives them —
so it reads the same whether it was just made or read back from a checkpoint.
"""

from __future__ import annotations

from typing import Any

import msgspec

from msgflux.exceptions import InvalidParameterError, MsgfluxError, ProviderError

__all__ = ["BatchError", "BatchItem", "call_arguments", "failed", "succeeded"]

# What an item dict may carry besides ``messages`` and ``id``.
_CALL_KEYS = frozenset({
    "system_prompt", "prefilling", "generation_schema", "typed_parser", "tool_schemas",
    "tool_choice", "extra_body", "timeout", "max_retries", "model_preference",
})


class BatchError(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why one item failed: the exception's type name, its message, the HTTP status."""

    type: str
    message: str
    status: int | None = None


class BatchItem(msgspec.Struct):
    """The outcome of one input, at ``index`` in the input order.

    ``output``: the text, the structured answer (a dict), or the tool calls
    (``[{"id", "type", "function": {"name", "arguments"}}]``); ``error`` is set
    instead when the item failed.
    """

    index: int
    id: Any = None
    output: Any = None
    response_type: str | None = None
    usage: dict[str, int] | None = None
    cost: float | None = None
    finish_reason: str | None = None
    model: str | None = None
    error: BatchError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def call_arguments(item: Any, shared: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """``(id, messages, call kwargs)`` of one input, or InvalidParameterError.

    An input given as an exception (a line of an input file that did not parse)
    fails its item with that exception.
    """
    if isinstance(item, BaseException):
        raise item
    if isinstance(item, (str, list, tuple)):
        return None, item, shared
    if isinstance(item, dict):
        if "messages" not in item:
            raise InvalidParameterError(
                "A batch input dict needs 'messages' (a prompt or a list of messages), e.g. "
                f"{{'id': 1, 'messages': 'Hi'}}; got keys {sorted(item)}"
            )
        unknown = set(item) - _CALL_KEYS - {"messages", "id"}
        if unknown or item.get("stream"):
            raise InvalidParameterError(
                f"A batch input dict may hold 'id', 'messages' and call arguments "
                f"({', '.join(sorted(_CALL_KEYS))}); not {sorted(unknown or {'stream'})}"
            )
        kwargs = {**shared, **{k: v for k, v in item.items() if k not in ("messages", "id")}}
        return item.get("id"), item["messages"], kwargs
    raise InvalidParameterError(
        f"A batch input is a prompt (str), a list of messages or a dict with 'messages'; "
        f"got {type(item).__name__}"
    )


def succeeded(index: int, item_id: Any, response: Any) -> BatchItem:
    """The result of one answered call (``ResponseError`` if the answer cannot be read)."""
    meta = response.metadata
    kind = response.response_type
    data = response.consume()
    if kind == "tool_call":
        data = data.get_calls()
    usage = meta.get("usage")
    return BatchItem(
        index=index, id=item_id, output=data, response_type=kind,
        usage=dict(usage) if usage is not None else None, cost=meta.get("cost"),
        finish_reason=meta.get("finish_reason"), model=meta.get("model"),
    )


def failed(index: int, item_id: Any, error: BaseException) -> BatchItem:
    status = error.status if isinstance(error, ProviderError) else None
    message = str(error) if isinstance(error, MsgfluxError) else f"{error!r}"
    return BatchItem(index=index, id=item_id,
                     error=BatchError(type(error).__name__, message, status))
