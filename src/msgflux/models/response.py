"""What a chat call returns: :class:`ModelResponse` and :class:`ModelStreamResponse`.

``consume()`` gives the answer: text (``response_type == "text_generation"``),
a dict with attribute access (``"structured"``) or a
:class:`~msgflux.models.tool_calls.ToolCallAggregator` (``"tool_call"``).

A stream's ``consume()`` returns the aggregator when the stream is a tool-call
stream (msgflux reads it to the end first), otherwise an iterator of text
chunks usable with ``for`` and ``async for``. How a stream starts:

* ``model(..., stream=True)`` outside a running event loop opens the stream at
  once and reads up to the first chunk (so errors, retries included, surface at
  the call);
* ``model(..., stream=True)`` inside a running event loop (e.g. a FastAPI
  handler) does no I/O at the call: the request is sent when iteration begins,
  on that loop for ``async for`` — so the loop is never blocked. (With tools,
  where ``consume()`` must know whether calls come back, it starts at once.)

When tools are on offer, ``consume()`` must know whether the answer is a tool
call, and models may write text before their calls; so such a stream is read
until its first tool call (then to its end) or until the answer finishes, and
its text is handed on after that. Without tools, text streams chunk by chunk.
* ``await model.acall(..., stream=True)`` opens the stream on the running loop
  and awaits the first chunk.

Failures before the first chunk reaches the caller are retried like any call;
after that a break raises :class:`~msgflux.exceptions.StreamError` carrying the
partial text and tool calls. Nothing ends silently short.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from msgflux.dotdict import dotdict
from msgflux.exceptions import MsgfluxError, StreamError, StreamUsageError
from msgflux.models.stream import AsyncSource, StreamAssembler, SyncSource
from msgflux.models.tool_calls import ToolCallAggregator

if TYPE_CHECKING:
    from msgflux.models.chat_completion import _StreamCall

__all__ = ["ModelResponse", "ModelStreamResponse"]


class ModelResponse:
    """A complete answer. ``consume()`` returns ``data``."""

    __slots__ = ("data", "metadata", "reasoning", "response_type")

    def __init__(self, data: Any, response_type: str, metadata: dotdict,
                 reasoning: str | None = None) -> None:
        self.data = data
        self.response_type = response_type
        self.metadata = metadata
        self.reasoning = reasoning

    def consume(self) -> Any:
        return self.data

    def consume_reasoning(self) -> str | None:
        return self.reasoning

    @property
    def has_reasoning(self) -> bool:
        return bool(self.reasoning)

    def copy(self) -> ModelResponse:
        """An independent copy (what a cache hit hands out)."""
        data = self.data
        if isinstance(data, ToolCallAggregator | dotdict):
            data = data.copy()
        return ModelResponse(data, self.response_type, self.metadata.copy(), self.reasoning)

    def __repr__(self) -> str:
        return f"ModelResponse(response_type={self.response_type!r}, data={self.data!r})"


class ModelStreamResponse:
    """A streamed answer; see the module docstring for how it starts and is read.

    Once the stream has ended, ``data`` holds the whole answer (text, the
    validated dict for a schema, or the aggregator), ``reasoning`` the whole
    reasoning, and ``metadata`` the usage and finish reason.
    """

    def __init__(self, call: _StreamCall) -> None:
        self._call = call
        self.response_type: str | None = call.known_type
        self.metadata = dotdict()
        self.data: Any = None
        self.reasoning: str | None = None
        self._asm = StreamAssembler()
        self._pending: list[str] = []
        self._source: SyncSource | AsyncSource | None = None
        self._exhausted = False
        self._done = False

    # -------------------------------------------------------------- starting

    def _prime(self, delta: Any) -> bool:
        """Fold one delta read before the caller sees anything; True once the type is known."""
        text = self._asm.add(delta)
        if text:
            self._pending.append(text)
        if delta.tool_calls or delta.finish_reason is not None or delta.done:
            return True
        if self._call.known_type is None:
            return False  # tools on offer: text may precede a call, so hold it back
        return bool(text or delta.reasoning)

    def _reset(self) -> None:
        self._asm = StreamAssembler()
        self._pending = []
        self._exhausted = False
        lead = self._call.lead
        if lead is not None:
            self._asm.add(lead)
            self._pending.append(lead.text)

    def _attempt_sync(self) -> None:
        self._reset()
        source = self._call.open_sync()
        try:
            try:
                for delta in source.deltas:
                    if self._prime(delta):
                        break
                else:
                    self._exhausted = True
                if self._asm.tools is not None and not self._exhausted:
                    for delta in source.deltas:  # a tool-call stream is read whole
                        self._asm.add(delta)
                    self._exhausted = True
                self._check_ended(source)
            except MsgfluxError as e:
                broken = self._unstarted(e)
                if broken is e:
                    raise
                raise broken from e
        except BaseException:
            source.close()
            raise
        self._source = source

    async def _attempt_async(self) -> None:
        self._reset()
        source = await self._call.open_async()
        try:
            try:
                done = True
                async for delta in source.deltas:
                    if self._prime(delta):
                        done = False
                        break
                self._exhausted = done
                if self._asm.tools is not None and not self._exhausted:
                    async for delta in source.deltas:
                        self._asm.add(delta)
                    self._exhausted = True
                self._check_ended(source)
            except MsgfluxError as e:
                broken = self._unstarted(e)
                if broken is e:
                    raise
                raise broken from e
        except BaseException:
            await source.aclose()
            raise
        self._source = source

    def _check_ended(self, source: SyncSource | AsyncSource) -> None:
        """A stream over before anything reached the caller must have ended properly.

        Otherwise it was cut (a close-delimited body ends "cleanly" when the
        connection drops): raise a retryable StreamError, like any failure
        before the first chunk.
        """
        if self._exhausted and self._cut_short(source):
            error = self._asm.broken(
                "The stream ended before the provider's end marker, before any of the answer "
                "reached the caller. The partial answer is on this error."
            )
            error.retryable = True
            raise error

    def _cut_short(self, source: SyncSource | AsyncSource) -> bool:
        """Did the stream end without its protocol's end (marker, or finish when none)?"""
        decoder = source.decoder
        return not decoder.done and (decoder.has_end_marker or self._asm.finish_reason is None)

    def _unstarted(self, error: MsgfluxError) -> MsgfluxError:
        """A failure while starting; a tool-call stream keeps the calls that arrived.

        The error stays retryable (and keeps its ``retry_after``) when it was.
        """
        if self._asm.tools is None or isinstance(error, StreamError):
            return error
        broken = self._broken(error)
        broken.retryable = error.retryable
        broken.retry_after = error.retry_after
        return broken

    def _start_sync(self) -> None:
        self._call.retry(self._attempt_sync)
        self._settle()

    async def _start_async(self) -> None:
        await self._call.aretry(self._attempt_async)
        self._settle()

    def _settle(self) -> None:
        """After the start: fix the type and finish a stream that is already over."""
        if self._asm.tools is not None:
            self.response_type = "tool_call"
        elif self.response_type is None:
            self.response_type = self._call.default_type
        if self._exhausted:
            self._finish()

    # -------------------------------------------------------------- reading

    def consume(self) -> Any:
        """The aggregator for a tool-call stream, else an iterator of text chunks."""
        if self._done and self.response_type == "tool_call":
            return self.data
        return _Chunks(self)

    def consume_reasoning(self) -> str | None:
        """The reasoning received so far (all of it once the stream has ended)."""
        return self._asm.reasoning

    @property
    def has_reasoning(self) -> bool:
        return bool(self._asm.reasoning_parts)

    def _iter_sync(self) -> Iterator[str]:
        if self._source is None:
            self._start_sync()
        yield from self._take_pending()
        if self._done:
            return
        source = self._source
        assert isinstance(source, SyncSource)
        add = self._asm.add
        try:
            for delta in source.deltas:
                text = add(delta)
                if text:
                    yield text
        except MsgfluxError as e:
            raise self._broken(e) from e
        self._finish()

    async def _iter_async(self) -> AsyncIterator[str]:
        if self._source is None:
            await self._start_async()
        for text in self._take_pending():
            yield text
        if self._done:
            return
        source = self._source
        if isinstance(source, SyncSource):  # opened by a sync call: read it off the loop
            async for text in _threaded(self._iter_sync()):
                yield text
            return
        assert isinstance(source, AsyncSource)
        add = self._asm.add
        try:
            async for delta in source.deltas:
                text = add(delta)
                if text:
                    yield text
        except MsgfluxError as e:
            raise self._broken(e) from e
        self._finish()

    def _take_pending(self) -> list[str]:
        pending, self._pending = self._pending, []
        return pending

    def _broken(self, error: MsgfluxError) -> StreamError:
        if isinstance(error, StreamError):
            return error
        return self._asm.broken(
            f"The stream broke after part of the answer arrived: {error}. "
            "The partial answer is on this error (partial_text, partial_tool_calls)."
        )

    def _finish(self) -> None:
        if self._done:
            return
        source = self._source
        asm = self._asm
        if source is not None and self._cut_short(source):
            self._done = True
            raise asm.broken(
                "The stream ended before the provider's end marker: the answer is incomplete. "
                "The partial answer is on this error."
            )
        self._done = True
        self.response_type, self.data, metadata = self._call.finish(asm)
        for key, value in self.metadata.items():  # set while streaming (e.g. by a gateway)
            metadata.setdefault(key, value)
        self.metadata = metadata
        self.reasoning = asm.reasoning

    # -------------------------------------------------------------- closing

    def close(self) -> None:
        """Abandon the stream and free its connection (sync-opened streams)."""
        source = self._source
        if isinstance(source, SyncSource):
            source.close()

    async def aclose(self) -> None:
        """Abandon the stream and free its connection."""
        source = self._source
        if isinstance(source, AsyncSource):
            await source.aclose()
        elif isinstance(source, SyncSource):
            source.close()

    def __repr__(self) -> str:
        state = "done" if self._done else "open"
        return f"ModelStreamResponse(response_type={self.response_type!r}, {state})"


class _Chunks:
    """Text chunks of a stream, for ``for`` and ``async for`` alike."""

    __slots__ = ("_response",)

    def __init__(self, response: ModelStreamResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[str]:
        r = self._response
        if r._done:
            return iter(list(r._asm.text_parts))
        source = r._source
        if isinstance(source, AsyncSource):
            return _from_loop(r, source)
        return r._iter_sync()

    def __aiter__(self) -> AsyncIterator[str]:
        r = self._response
        if r._done:
            return _replay(list(r._asm.text_parts))
        return r._iter_async()


async def _replay(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


def _from_loop(response: ModelStreamResponse, source: AsyncSource) -> Iterator[str]:
    """Sync iteration of a stream owned by an event loop running in another thread."""
    import asyncio

    loop = source.loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop or not loop.is_running():
        raise StreamUsageError(
            "This stream was started by acall() and belongs to its event loop; read it there "
            "with `async for chunk in response.consume()` (a blocking `for` would stall the "
            "loop), or start it with model(..., stream=True) for a blocking `for`."
        )
    agen = response._iter_async()
    while True:
        future = asyncio.run_coroutine_threadsafe(_anext_or_end(agen), loop)
        item = future.result()
        if item is _END:
            return
        yield item


_END: Any = object()


async def _anext_or_end(agen: AsyncIterator[str]) -> Any:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _END


async def _threaded(it: Iterator[str]) -> AsyncIterator[str]:
    """Drive a blocking iterator from a worker thread, one chunk at a time."""
    import asyncio

    take: Callable[[], Any] = lambda: next(it, _END)  # noqa: E731
    while True:
        item = await asyncio.to_thread(take)
        if item is _END:
            return
        yield item
