"""The batch runner: many calls on one event loop, bounded, paced, resumable.

``concurrency`` workers pull inputs one at a time from the caller's iterable
(never all at once, so a generator of millions of rows is fine). Each item is
prepared (bad input fails that item only), skipped when the checkpoint already
holds its answer, admitted by the shared :class:`~msgflux.batch.limits.RateLimiter`,
sent, and stored the moment it finishes — results are not held in memory when a
checkpoint is given. The :class:`BatchResult` reads them back in input order.

It works over anything with ``acall`` (a model, a gateway); a target with
``prepare`` (a model) also lets the limiter read every HTTP answer's rate-limit
headers, and fingerprints items by the exact request they send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import msgspec

from msgflux.batch.checkpoint import Checkpoint, MemoryStore, open_store
from msgflux.batch.items import BatchItem, call_arguments, failed, succeeded
from msgflux.batch.limits import RateLimiter
from msgflux.batch.progress import Progress
from msgflux.exceptions import InvalidParameterError, RateLimitError

__all__ = ["BatchResult", "BatchSummary", "arun_batch", "run_batch"]

_pack = msgspec.msgpack.Encoder(order="deterministic", enc_hook=lambda o: _name(o)).encode


def _name(obj: Any) -> str:
    """How an object that is not data enters a fingerprint: by what it is (a schema
    class by its qualified name), never by its address."""
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


class BatchSummary(msgspec.Struct):
    """What a run did. ``succeeded``/``failed`` count every item of the inputs (those an
    earlier run finished are in ``resumed`` too); tokens and cost are this run's."""

    items: int = 0
    succeeded: int = 0
    failed: int = 0
    resumed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    elapsed: float = 0.0
    throttled: int = 0  # 429 answers seen
    errors: dict[str, int] = msgspec.field(default_factory=dict)  # by error type

    def __str__(self) -> str:
        text = (f"{self.items:,} items: {self.succeeded:,} ok, {self.failed:,} failed"
                f"{f' ({self.resumed:,} from the checkpoint)' if self.resumed else ''}; "
                f"{self.prompt_tokens + self.completion_tokens:,} tokens")
        if self.cost is not None:
            text += f", ${self.cost:.4f}"
        text += f"; {self.elapsed:.1f} s"
        if self.errors:
            text += "; errors: " + ", ".join(f"{k} x{v}" for k, v in self.errors.items())
        return text


class BatchResult:
    """The items of a batch in input order: ``len()``, indexing, iteration.

    Items are read from where the run stored them (memory or the checkpoint),
    one at a time. ``summary`` says what the run did; ``errors()`` lists the
    failed items; ``outputs()`` the outputs (``None`` where an item failed).
    """

    def __init__(self, store: MemoryStore | Checkpoint, size: int,
                 summary: BatchSummary) -> None:
        self._store = store
        self._size = size
        self.summary = summary
        self.checkpoint = store.path

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> BatchItem:
        if index < 0:
            index += self._size
        item = self._store.get(index) if 0 <= index < self._size else None
        if item is None:
            raise IndexError(f"batch index {index} out of range")
        return item

    def __iter__(self) -> Iterator[BatchItem]:
        for item in self._store:
            if item.index >= self._size:
                return
            yield item

    def outputs(self) -> list[Any]:
        return [item.output for item in self]

    def errors(self) -> list[BatchItem]:
        return [item for item in self if item.error is not None]

    def __repr__(self) -> str:
        return f"BatchResult({self.summary})"


def check_options(concurrency: Any, rpm: Any, tpm: Any, call_kwargs: dict[str, Any]) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidParameterError(f"concurrency must be an int >= 1, got {concurrency!r}")
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value > 0):
            raise InvalidParameterError(f"{name} must be a positive number, got {value!r}")
    if call_kwargs.get("stream"):
        raise InvalidParameterError(
            "A batch collects whole answers: stream=True is not supported (drop it)"
        )


def _estimate(prepared: Any, messages: Any) -> int:
    """Tokens a call may use, for the tokens-per-minute pace: ~4 characters a token of
    prompt, plus the answer's cap when set (corrected with the real usage after)."""
    if prepared is None:
        return len(str(messages)) // 4 + 1
    chars = 0
    for message in prepared.request.messages:
        content = message.content
        if isinstance(content, str):
            chars += len(content)
        elif content:
            chars += sum(len(getattr(part, "text", "")) for part in content)
    return chars // 4 + 1 + (prepared.request.max_tokens or 0)


async def arun_batch(target: Any, inputs: Iterable[Any], *, concurrency: int | None = None,
                     rpm: float | None = None, tpm: float | None = None,
                     checkpoint: Any = None, progress: bool | TextIO | None = None,
                     limiter: RateLimiter | None = None, **call_kwargs: Any) -> BatchResult:
    """Run every input through ``target`` (anything with ``acall``) on this event loop.

    See :meth:`msgflux.ChatCompletionModel.batch` for the parameters. ``limiter``:
    a :class:`RateLimiter` kept across runs on this loop (its pace and backoff carry
    over: a Ray actor's blocks), instead of a new one from ``concurrency``/``rpm``/``tpm``.
    """
    if concurrency is None:
        concurrency = 16
    check_options(concurrency, rpm, tpm, call_kwargs)
    total = len(inputs) if hasattr(inputs, "__len__") else None  # type: ignore[arg-type]
    store = open_store(checkpoint)
    if limiter is None:
        limiter = RateLimiter(concurrency, rpm, tpm)
    loop = asyncio.get_running_loop()
    freed = asyncio.Condition()
    prepare = getattr(target, "prepare", None)
    source = enumerate(inputs)
    errors: dict[str, int] = {}
    started = time.monotonic()
    count = 0

    def observe(status: int, headers: list[tuple[str, str]]) -> None:
        limiter.observe(loop.time(), status, headers)

    def fingerprint(prepared: Any, messages: Any, kwargs: dict[str, Any]) -> bytes:
        import hashlib

        if prepared is not None:  # the digest the response cache uses
            from msgflux.models.cache.base import cache_key

            wiring = prepared.wiring
            return cache_key(wiring.provider, wiring.base_url, prepared.request,
                             prepared.parser_name)
        return hashlib.blake2b(_pack((repr(target), messages, kwargs)), digest_size=32).digest()

    async def admit(tokens: int) -> None:
        while True:
            wait = limiter.admit(loop.time(), tokens)
            if wait == 0.0:
                return
            if wait is None:  # the window is full: wait for a call to end
                async with freed:
                    if limiter.in_flight >= limiter.window:
                        await freed.wait()
            else:
                await asyncio.sleep(wait)

    def record(index: int, fp: bytes, item: BatchItem) -> None:
        store.put(index, fp, item)
        if item.error is not None:
            errors[item.error.type] = errors.get(item.error.type, 0) + 1
        bar.add(item)

    async def one(index: int, raw: Any) -> None:
        item_id = raw.get("id") if isinstance(raw, dict) else None
        try:
            item_id, messages, kwargs = call_arguments(raw, call_kwargs)
            prepared = prepare(messages, **kwargs) if prepare is not None else None
            fp = fingerprint(prepared, messages, kwargs)
        except Exception as e:  # bad input fails its item, never the batch
            record(index, b"", failed(index, item_id, e))
            return
        if store.done(index, fp):
            bar.skip()
            return
        tokens = _estimate(prepared, messages) if limiter.tokens is not None else 0
        await admit(tokens)
        used = None
        try:
            if prepared is not None:
                prepared.observer = observe
                response = await prepared.arun()
            else:
                response = await target.acall(messages, **kwargs)
            item = succeeded(index, item_id, response)
            used = item.usage.get("total_tokens") if item.usage else None
        except Exception as e:
            item = failed(index, item_id, e)
            if prepare is None and isinstance(e, RateLimitError):  # no headers seen: the error
                limiter.throttled(loop.time(), e.retry_after)
        limiter.release(loop.time(), tokens, used, item.error is None)
        if limiter.in_flight < limiter.window:
            async with freed:
                freed.notify()
        record(index, fp, item)

    async def worker() -> None:
        nonlocal count
        for index, raw in source:
            count = index + 1
            await one(index, raw)

    bar = Progress(total, progress)
    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()  # when one failed (the inputs raised), or the run was cancelled
        store.flush()
        bar.close()
        if isinstance(store, Checkpoint):
            store.close()
    ok = bar.done - bar.errors + bar.resumed
    summary = BatchSummary(
        items=count, succeeded=ok, failed=bar.errors, resumed=bar.resumed,
        prompt_tokens=bar.prompt_tokens, completion_tokens=bar.completion_tokens,
        cost=bar.cost if bar.priced else None, elapsed=time.monotonic() - started,
        throttled=limiter.throttles, errors=errors,
    )
    return BatchResult(store, count, summary)


def run_batch(target: Any, inputs: Iterable[Any], **options: Any) -> BatchResult:
    """:func:`arun_batch` from blocking code, on an event loop of its own (in a
    thread when this one already runs a loop). Ctrl-C stops it with the checkpoint
    committed."""

    async def main() -> BatchResult:
        try:
            return await arun_batch(target, inputs, **options)
        finally:
            aclose = getattr(target, "aclose", None)
            if aclose is not None:
                await aclose()  # the pools of this loop, which ends here

    from msgflux.models.response import loop_running

    if loop_running():
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, main()).result()
    return asyncio.run(main())
