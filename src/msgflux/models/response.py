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
* ``await model.acall(..., stream=True)`` opens the stream on the running loop
  and awaits the first chunk.

When tools are on offer, ``consume()`` must know whether the answer is a tool
call, and models may write text before their calls; so such a stream is read
until its first tool call (then to its end) or until the answer finishes, and
its text is handed on after that. Without tools, text streams chunk by chunk.

Failures before the first chunk reaches the caller are retried like any call;
after that a break raises :class:`~msgflux.exceptions.StreamError` carrying the
partial text and tool calls. Nothing ends silently short.

A stream response is driven through a :class:`StreamCall` — the seam between
this module and whoever knows how to open and finish the stream (a model's
call, or a gateway falling back across models).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

from msgflux.dotdict import dotdict
from msgflux.exceptions import (
    MsgfluxError,
    StreamError,
    StreamUsageError,
    ToolExecutionError,
    ToolLoopLimitError,
)
from msgflux.models.request import Delta, Usage
from msgflux.models.stream import AsyncSource, StreamAssembler, SyncSource
from msgflux.models.tool_calls import ToolCallAggregator

__all__ = ["ModelResponse", "ModelStreamResponse", "StreamCall"]

_Source = TypeVar("_Source", SyncSource, AsyncSource)


def _amended(make: Callable[[], dotdict], fields: dict[str, Any]) -> dotdict:
    meta = make()
    meta.update(fields)
    return meta


class ModelResponse:
    """A complete answer. ``consume()`` returns ``data``."""

    __slots__ = ("_make_metadata", "_metadata", "data", "reasoning", "response_type")

    def __init__(self, data: Any, response_type: str, metadata: dotdict | None,
                 reasoning: str | None = None,
                 make_metadata: Callable[[], dotdict] | None = None) -> None:
        self.data = data
        self.response_type = response_type
        self._metadata = metadata
        # ``metadata`` made on first read (many callers never read it): a call's usage,
        # cost and the rest cost more to put in a dict than the rest of shaping it.
        self._make_metadata = make_metadata
        self.reasoning = reasoning

    @property
    def metadata(self) -> dotdict:
        """Usage, finish reason, model, provider, cost, ... (see ``call.metadata``)."""
        meta = self._metadata
        if meta is None and self._make_metadata is not None:
            meta = self._metadata = self._make_metadata()
            self._make_metadata = None
        return meta  # type: ignore[return-value]

    @metadata.setter
    def metadata(self, value: dotdict) -> None:
        self._metadata = value
        self._make_metadata = None

    def amend_metadata(self, fields: dict[str, Any]) -> None:
        """Set ``fields`` in ``metadata``: now if it is made, else when it is."""
        make = self._make_metadata
        if self._metadata is None and make is not None:
            self._make_metadata = partial(_amended, make, fields)
        else:
            self.metadata.update(fields)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ModelResponse, (self.data, self.response_type, self.metadata, self.reasoning))

    def consume(self) -> Any:
        return self.data

    def consume_reasoning(self) -> str | None:
        return self.reasoning

    @property
    def has_reasoning(self) -> bool:
        return bool(self.reasoning)

    def copy(self) -> ModelResponse:
        """A copy whose aggregator or dotdict result is independent of this one."""
        data = self.data
        if isinstance(data, ToolCallAggregator | dotdict):
            data = data.copy()
        return ModelResponse(data, self.response_type, self.metadata.copy(), self.reasoning)

    def __repr__(self) -> str:
        return f"ModelResponse(response_type={self.response_type!r}, data={self.data!r})"


class StreamCall(Protocol):
    """How a :class:`ModelStreamResponse` opens, retries and finishes its stream.

    ``known_type``: the response type when it is known before any byte (no tool
    can be called), else ``None``. ``default_type``: the type of an answer
    without tool calls. ``lead``: text that opens the stream without coming
    from it (a prefilled prefix the server does not echo), or ``None``.
    ``retry(attempt)`` runs ``attempt`` until it succeeds, retrying what is
    safe; ``finish(asm)`` turns the folded stream into ``(response_type, data,
    metadata)``. ``spent(usage)`` hands over the tokens of a start attempt that was
    abandoned (they are billed too); ``broken(error)`` says the stream broke after
    part of its answer reached the caller (``error`` is then raised). ``partial``:
    for a structured answer, a factory of the reader that turns its text into
    partial objects (see :mod:`msgflux.models.partial`), else ``None``.
    """

    @property
    def known_type(self) -> str | None: ...

    @property
    def partial(self) -> Callable[[], Any] | None: ...

    @property
    def default_type(self) -> str: ...

    @property
    def lead(self) -> Delta | None: ...

    def open_sync(self) -> SyncSource: ...

    async def open_async(self) -> AsyncSource: ...

    def retry(self, attempt: Callable[[], None]) -> None: ...

    async def aretry(self, attempt: Callable[[], Awaitable[None]]) -> None: ...

    def finish(self, asm: StreamAssembler) -> tuple[str, Any, dotdict]: ...

    def spent(self, usage: Usage) -> None: ...

    def broken(self, error: BaseException) -> None: ...


def loop_running() -> bool:
    """Is an event loop running in this thread? (asyncio is not imported just to ask.)"""
    aio = sys.modules.get("asyncio")
    return aio is not None and aio._get_running_loop() is not None


# The life of a stream response: NEW (nothing sent) → OPEN (started; the caller is
# reading) → DONE (answer complete, ``data`` final). A stream that breaks stays OPEN.
_State = Literal["new", "open", "done"]


class ModelStreamResponse:
    """A streamed answer; see the module docstring for how it starts and is read.

    Once the stream has ended, ``data`` holds the whole answer (text, the
    validated dict for a schema, or the aggregator), ``reasoning`` the whole
    reasoning, and ``metadata`` the usage and finish reason.
    """

    def __init__(self, call: StreamCall) -> None:
        self._call = call
        self.response_type: str | None = call.known_type
        self.metadata = dotdict()
        self.data: Any = None
        self.reasoning: str | None = None
        self._state: _State = "new"
        self._asm = StreamAssembler()
        self._pending: list[str] = []
        self._source: SyncSource | AsyncSource | None = None

    @classmethod
    def open(cls, call: StreamCall) -> ModelStreamResponse:
        """The response of a blocking ``stream=True`` call: started now, unless an
        event loop runs in this thread and no tool can be called (then it starts
        when iterated, so the loop is never blocked)."""
        response = cls(call)
        if response.response_type is None or not loop_running():
            response.start()
        return response

    @classmethod
    async def aopen(cls, call: StreamCall) -> ModelStreamResponse:
        """The response of ``await acall(..., stream=True)``: started on this loop."""
        response = cls(call)
        await response.astart()
        return response

    # -------------------------------------------------------------- starting

    def start(self) -> None:
        """Send the request and read up to the first chunk (retried like any call)."""
        self._call.retry(self._attempt_sync)
        self._settle()

    async def astart(self) -> None:
        """:meth:`start` on the running event loop."""
        await self._call.aretry(self._attempt_async)
        self._settle()

    def _attempt_sync(self) -> None:
        source = self._begin(self._call.open_sync())
        try:
            deltas = source.deltas
            stopped = any(map(self._prime, deltas))
            if stopped and self._asm.tools is not None:  # a tool-call stream: to its end
                # In C from delta to fold: the texts among them (rare) are kept.
                self._pending.extend(filter(None, map(self._asm.add, deltas)))
                stopped = False
            self._started(source, stopped)
        except BaseException as error:
            source.failed(error)
            raise self._start_failed(error)  # noqa: B904 (the cause is set there)

    async def _attempt_async(self) -> None:
        source = self._begin(await self._call.open_async())
        try:
            stopped = False
            async for delta in source.deltas:
                if self._prime(delta):
                    stopped = True
                    break
            if stopped and self._asm.tools is not None:  # a tool-call stream: to its end
                add, pending = self._asm.add, self._pending
                async for delta in source.deltas:
                    text = add(delta)
                    if text:
                        pending.append(text)
                stopped = False
            self._started(source, stopped)
        except BaseException as error:
            await source.aclose()
            raise self._start_failed(error)  # noqa: B904

    def _begin(self, source: _Source) -> _Source:
        """A fresh attempt: forget what a failed one folded."""
        self._asm = StreamAssembler()
        self._pending = []
        self._source = source
        lead = self._call.lead
        if lead is not None:
            self._asm.add(lead)
            self._pending.append(lead.text or "")
        return source

    def _prime(self, delta: Delta | str) -> bool:
        """Fold one delta read before the caller sees anything; True once the start is
        over, or once a tool call began (the stream is then read to its end, each
        delta folded by the assembler)."""
        asm = self._asm
        text = asm.add(delta)
        if text:
            self._pending.append(text)
        if asm.tools is not None:
            return True
        if delta.__class__ is str:  # text only
            return self._call.known_type is not None
        if delta.finish_reason is not None or delta.done:  # type: ignore[union-attr]
            return True
        if self._call.known_type is None:
            return False  # tools on offer: text may precede a call, so hold it back
        return bool(text or delta.reasoning)

    def _started(self, source: SyncSource | AsyncSource, stopped: bool) -> None:
        """The start read its part; a stream already over must have ended properly.

        Otherwise it was cut (a close-delimited body ends "cleanly" when the
        connection drops): a retryable StreamError, like any failure before the
        first chunk.
        """
        if not stopped and self._cut_short(source):
            error = self._asm.broken(
                "The stream ended before the provider's end marker, before any of the answer "
                "reached the caller. The partial answer is on this error."
            )
            error.retryable = True
            raise error
        if not stopped:
            if isinstance(source, SyncSource):
                source.close()  # (an async source's generator closed its stream)
            self._source = None  # read to its end: nothing left to pull

    def _start_failed(self, error: BaseException) -> BaseException:
        """What a failed start raises: a tool-call stream keeps the calls that arrived.

        The error stays retryable (and keeps its ``retry_after``) when it was. Tokens
        the provider reported for the failed attempt are handed to the call: they
        are billed all the same.
        """
        if self._asm.usage is not None:
            self._call.spent(self._asm.usage)
        if (not isinstance(error, MsgfluxError) or self._asm.tools is None
                or isinstance(error, StreamError)):
            return error
        broken = self._broken(error)
        broken.retryable = error.retryable
        broken.retry_after = error.retry_after
        broken.__cause__ = error
        return broken

    def _cut_short(self, source: SyncSource | AsyncSource) -> bool:
        """Did the stream end without its protocol's end (marker, or finish when none)?"""
        decoder = source.decoder
        return not decoder.done and (decoder.has_end_marker or self._asm.finish_reason is None)

    def _settle(self) -> None:
        """After the start: fix the type, and finish a stream that is already over."""
        self._state = "open"
        if self._asm.tools is not None:
            self.response_type = "tool_call"
        elif self.response_type is None:
            self.response_type = self._call.default_type
        if self._source is None:
            self._finish()

    # -------------------------------------------------------------- reading

    def consume(self) -> Any:
        """The aggregator for a tool-call stream; for a structured answer an iterator of
        partial objects, ending with the validated answer; else an iterator of text
        chunks."""
        if self._state == "done" and self.response_type == "tool_call":
            return self.data
        partial = self._call.partial
        if partial is not None and self.response_type == "structured":
            return _Partials(self, partial)
        return _Chunks(self)

    def consume_reasoning(self) -> str | None:
        """The reasoning received so far (all of it once the stream has ended)."""
        return self._asm.reasoning

    @property
    def has_reasoning(self) -> bool:
        return bool(self._asm.reasoning_parts)

    def _iter_sync(self) -> Iterator[str]:
        if self._state == "new":
            self.start()
        yield from self._take_pending()
        if self._state == "done":
            return
        source = self._source
        assert isinstance(source, SyncSource)
        asm = self._asm
        add, add_text = asm.add, asm.add_text
        try:
            for delta in source.deltas:
                if delta.__class__ is str:  # text only (most chunks): no Python frame
                    add_text(delta)  # type: ignore[arg-type]
                    yield delta  # type: ignore[misc]
                else:
                    text = add(delta)
                    if text:
                        yield text
        except MsgfluxError as e:
            source.failed(e)
            raise self._broke(e) from e
        except BaseException:  # Ctrl-C, or the caller let go of the stream mid-way
            source.close()
            raise
        source.close()
        self._finish()

    async def _iter_async(self) -> AsyncIterator[str]:
        if self._state == "new":
            await self.astart()
        for text in self._take_pending():
            yield text
        if self._state == "done":
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
            raise self._broke(e) from e
        self._finish()

    def _take_pending(self) -> list[str]:
        pending, self._pending = self._pending, []
        return pending

    def _broken(self, error: MsgfluxError) -> MsgfluxError:
        # A tool loop's own errors say what happened better than "the stream broke".
        if isinstance(error, (StreamError, ToolExecutionError, ToolLoopLimitError)):
            return error
        return self._asm.broken(
            f"The stream broke after part of the answer arrived: {error}. "
            "The partial answer is on this error (partial_text, partial_tool_calls)."
        )

    def _broke(self, error: MsgfluxError) -> StreamError:
        """The error of a stream that broke after the caller got part of it, reported."""
        broken = self._broken(error)
        self._call.broken(broken)
        return broken

    def _finish(self) -> None:
        if self._state == "done":
            return
        source = self._source
        asm = self._asm
        self._state = "done"
        if source is not None and self._cut_short(source):
            error = asm.broken(
                "The stream ended before the provider's end marker: the answer is incomplete. "
                "The partial answer is on this error."
            )
            self._call.broken(error)
            raise error
        self.response_type, self.data, self.metadata = self._call.finish(asm)
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
        state = "done" if self._state == "done" else "open"
        return f"ModelStreamResponse(response_type={self.response_type!r}, {state})"


class _Chunks:
    """Text chunks of a stream, for ``for`` and ``async for`` alike."""

    __slots__ = ("_response",)

    def __init__(self, response: ModelStreamResponse) -> None:
        self._response = response

    def __iter__(self) -> Iterator[str]:
        r = self._response
        if r._state == "done":
            return iter(list(r._asm.text_parts))
        source = r._source
        if isinstance(source, AsyncSource):
            return _from_loop(r, source)
        return r._iter_sync()

    def __aiter__(self) -> AsyncIterator[str]:
        r = self._response
        if r._state == "done":
            return _replay(list(r._asm.text_parts))
        return r._iter_async()


class _Partials:
    """Partial objects of a structured stream, for ``for`` and ``async for`` alike: each
    time the answer's text completes a value, the answer so far (a dotdict, not yet
    validated); last, the validated answer (``response.data``)."""

    __slots__ = ("_last", "_make", "_reader", "_response")

    def __init__(self, response: ModelStreamResponse, make: Callable[[], Any]) -> None:
        self._response = response
        self._make = make

    def _start(self) -> None:
        self._reader = self._make()
        self._last = None

    def _new(self, chunk: str) -> Any:
        """The answer so far when ``chunk`` completed a value that changed it, else None."""
        if self._reader.feed(chunk):
            snapshot = self._reader.snapshot()
            if snapshot is not None and snapshot != self._last:
                self._last = snapshot
                return snapshot
        return None

    def __iter__(self) -> Iterator[Any]:
        self._start()
        for chunk in _Chunks(self._response):
            snapshot = self._new(chunk)
            if snapshot is not None:
                yield snapshot
        yield self._response.data

    async def __aiter__(self) -> AsyncIterator[Any]:
        self._start()
        async for chunk in _Chunks(self._response):
            snapshot = self._new(chunk)
            if snapshot is not None:
                yield snapshot
        yield self._response.data


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
