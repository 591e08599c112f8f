"""Run a batch on a Ray cluster: a callable class for ``Dataset.map_batches``.

    import ray
    from msgflux.integrations.ray import ChatCompletionBatch

    ray.init()  # or ray.init("ray://head:10001"), or inside `ray job submit`
    ds = ray.data.read_json("prompts.jsonl")          # a "messages" column (and "id")
    out = ds.map_batches(
        ChatCompletionBatch,
        fn_constructor_kwargs={"model": "openai/gpt-4o-mini", "concurrency": 32,
                               "rpm": 500},            # per actor
        concurrency=4,                                  # actors
        batch_size=256,
    )
    out.write_json("answers/")

Each actor builds the model once and keeps one event loop, so every block it
gets runs through the same runner as ``model.batch`` — the same concurrency
bound, rate limits (their pace and 429 backoff carry over from block to block),
per-item errors and usage accounting. Rate limits are per actor: divide the
provider's limit by the number of actors.

Output columns, beside the input's: ``output`` (the text; structured answers
and tool calls as JSON text), ``response_type``, ``prompt_tokens``,
``completion_tokens``, ``cost``, ``finish_reason``, ``error`` (``"Type:
message"`` or null) — flat values that Arrow stores as is.

Needs the ``ray`` extra: ``pip install 'msgflux[ray]'``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

__all__ = ["ChatCompletionBatch"]

_json = msgspec.json.Encoder()


def _require_ray() -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        from msgflux.exceptions import MissingDependencyError

        raise MissingDependencyError(
            "msgflux.integrations.ray needs Ray Data: pip install 'msgflux[ray]'"
        )


class ChatCompletionBatch:
    """A ``map_batches`` callable class: one model and one event loop per actor.

    ``model``: a ``"provider/model"`` path (with ``model_kwargs`` for the
    constructor) or the dict ``model.serialize()`` returned. ``column``: the
    input column (each value a prompt, a list of messages or a dict of call
    arguments); ``concurrency``, ``rpm``, ``tpm``: as ``model.batch``, per actor;
    ``call_kwargs`` apply to every row.
    """

    def __init__(self, model: str | dict[str, Any], *, model_kwargs: dict[str, Any] | None = None,
                 column: str = "messages", concurrency: int = 16, rpm: float | None = None,
                 tpm: float | None = None, **call_kwargs: Any) -> None:
        _require_ray()
        from msgflux.batch.limits import RateLimiter
        from msgflux.batch.runner import check_options
        from msgflux.models.model import Model

        check_options(concurrency, rpm, tpm, call_kwargs)
        if isinstance(model, dict):
            self.model = Model.from_serialized(model)
        else:
            self.model = Model.chat_completion(model, **(model_kwargs or {}))
        self.column = column
        self.concurrency = concurrency
        self.call_kwargs = call_kwargs
        self.loop = asyncio.new_event_loop()
        self.limiter = RateLimiter(concurrency, rpm, tpm)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from msgflux.batch.runner import arun_batch

        if self.column not in batch:
            from msgflux.exceptions import InvalidParameterError

            raise InvalidParameterError(
                f"the dataset has no column {self.column!r} (it has {sorted(batch)}); "
                "pass column=... to ChatCompletionBatch"
            )
        inputs = [_plain(value) for value in batch[self.column]]
        result = self.loop.run_until_complete(arun_batch(
            self.model, inputs, concurrency=self.concurrency, progress=False,
            limiter=self.limiter, **self.call_kwargs))
        columns: dict[str, list[Any]] = {name: [] for name in (
            "output", "response_type", "prompt_tokens", "completion_tokens", "cost",
            "finish_reason", "error")}
        for item in result:
            output = item.output
            columns["output"].append(output if output is None or isinstance(output, str)
                                     else _json.encode(output).decode())
            columns["response_type"].append(item.response_type)
            usage = item.usage or {}
            columns["prompt_tokens"].append(usage.get("prompt_tokens"))
            columns["completion_tokens"].append(usage.get("completion_tokens"))
            columns["cost"].append(item.cost)
            columns["finish_reason"].append(item.finish_reason)
            error = item.error
            columns["error"].append(f"{error.type}: {error.message}" if error else None)
        return {**batch, **columns}

    def __del__(self) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and not loop.is_closed():
            try:
                loop.run_until_complete(self.model.aclose())
            finally:
                loop.close()


def _plain(value: Any) -> Any:
    """A cell as Python data: numpy scalars and arrays (what Ray hands over) to str/list."""
    if isinstance(value, (str, dict, list)):
        return value
    tolist = getattr(value, "tolist", None)  # numpy array or scalar
    return tolist() if tolist is not None else value
