"""Streams: folding Deltas into an answer, and pulling Deltas off the wire.

:class:`StreamAssembler` is pure: it folds Deltas (text, reasoning blocks,
tool-call fragments, refusals, usage, finish reason) and says what the stream
turned out to be. :class:`SyncSource` and :class:`AsyncSource` pull SSE events from an
open transport stream through a dialect's decoder; they are plain generators so
each chunk costs a few attribute lookups, nothing more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import TYPE_CHECKING

from msgflux.exceptions import MsgfluxError, StreamError, _redact
from msgflux.models.request import (
    REFUSAL_BREAK,
    Completion,
    Delta,
    ReasoningBlock,
    ToolCallDelta,
    Usage,
    settled_finish,
)
from msgflux.models.tool_calls import ToolCallAggregator

if TYPE_CHECKING:
    from msgflux._transport.base import AsyncResponseStream, ResponseStream
    from msgflux.models.dialects.base import StreamDecoder

__all__ = ["AsyncSource", "Replay", "StreamAssembler", "SyncSource"]


class StreamAssembler:
    """Accumulates one streamed answer."""

    __slots__ = ("_block_text", "add_text", "blocks", "finish_reason", "id", "model",
                 "native_finish_reason", "reasoning_parts", "refusal_parts", "text_parts",
                 "tools", "usage")

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        # The whole fold of a text-only delta (a plain ``str``): a reader on the hot
        # path may call it instead of :meth:`add`, which calls it too.
        self.add_text = self.text_parts.append
        self.reasoning_parts: list[str] = []
        self.refusal_parts: list[str] = []
        self._block_text: list[str] = []
        self.blocks: list[ReasoningBlock] = []
        self.tools: ToolCallAggregator | None = None
        self.finish_reason: str | None = None
        self.native_finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.id: str | None = None

    def add(self, delta: Delta | str | ToolCallDelta) -> str | None:
        """Fold one Delta; returns its text, if any, for the caller to hand on.

        A plain ``str`` is a Delta that carries only text, a lone ``ToolCallDelta`` one
        that carries one fragment of one call: decoders return them for the chunks that
        make up most of a stream, the cheapest paths.
        """
        cls = delta.__class__
        if cls is str:
            self.add_text(delta)  # type: ignore[arg-type]
            return delta  # type: ignore[return-value]
        if cls is ToolCallDelta:  # one fragment of one call: the bulk of a tool stream
            tools = self.tools
            if tools is None:
                tools = self.tools = ToolCallAggregator()
            tools.fold(delta)  # type: ignore[arg-type]
            return None
        text = delta.text  # type: ignore[union-attr]
        if text:
            self.text_parts.append(text)
        if delta.refusal:
            text = self._refuse(text, delta.refusal)
        if delta.reasoning:
            self.reasoning_parts.append(delta.reasoning)
            self._block_text.append(delta.reasoning)
        if delta.reasoning_signature is not None:
            self.blocks.append(ReasoningBlock("".join(self._block_text),
                                              delta.reasoning_signature))
            self._block_text = []
        if delta.reasoning_block is not None:
            self.blocks.append(delta.reasoning_block)
            self._block_text = []
        if delta.tool_calls:
            tools = self.tools
            if tools is None:
                tools = self.tools = ToolCallAggregator()
            for call in delta.tool_calls:
                tools.process(call.index, call.id, call.name, call.arguments, call.signature)
        if delta.finish_reason is not None:
            self.finish_reason = settled_finish(delta.finish_reason, self.tools is not None,
                                                bool(self.refusal_parts))
            self.native_finish_reason = delta.native_finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.model is not None and self.model is None:
            self.model = delta.model
        if delta.id is not None and self.id is None:
            self.id = delta.id
        return text

    def _refuse(self, text: str | None, refusal: str) -> str:
        """Fold a refusal fragment; it is handed on like text, joined to the text
        before it as :func:`~msgflux.models.request.with_refusal` joins them."""
        handed = refusal
        if not self.refusal_parts and self.text_parts:
            handed = REFUSAL_BREAK + refusal
        self.refusal_parts.append(refusal)
        self.text_parts.append(handed)
        return text + handed if text else handed

    @property
    def text(self) -> str:
        """Everything handed on: the text, and a refusal's text after it."""
        return "".join(self.text_parts)

    @property
    def refusal(self) -> str | None:
        """The refusal's text, when the provider refused."""
        return "".join(self.refusal_parts) if self.refusal_parts else None

    @property
    def reasoning(self) -> str | None:
        return "".join(self.reasoning_parts) if self.reasoning_parts else None

    def reasoning_blocks(self) -> tuple[ReasoningBlock, ...]:
        """Closed blocks, plus the unsigned text still open (e.g. OpenAI-style reasoning)."""
        if self._block_text:
            return (*self.blocks, ReasoningBlock("".join(self._block_text)))
        return tuple(self.blocks)

    def aggregator(self) -> ToolCallAggregator | None:
        """The tool calls (with the turn's text and reasoning), if the model made any."""
        tools = self.tools
        if tools is None:
            return None
        tools.text = self.text or None
        tools.reasoning = self.reasoning
        tools.reasoning_blocks = self.reasoning_blocks()
        return tools

    def broken(self, message: str) -> StreamError:
        """A StreamError carrying everything received so far."""
        calls = list(self.tools.tool_calls.values()) if self.tools is not None else []
        return StreamError(message, partial_text=self.text,
                           partial_reasoning=self.reasoning or "", partial_tool_calls=calls)


# The end marker as a sentinel: ``iter(next_delta, _END)`` stops at the first delta
# equal to it (a C-level comparison, where a predicate would be a Python call per chunk).
_END = Delta(done=True)


class SyncSource:
    """Deltas of one open sync stream.

    ``deltas`` is an iterator built of C-level steps (decode each event, drop the
    empty ones, stop at the end marker: nothing after it reaches the caller), so a
    chunk costs no Python frame here. Whoever reads it calls :meth:`failed` with an
    error that came out of it, and :meth:`close` when done.
    """

    __slots__ = ("decoder", "deltas", "secret", "stream")

    def __init__(self, stream: ResponseStream, decoder: StreamDecoder,
                 secret: str | None = None) -> None:
        self.stream = stream
        self.decoder = decoder
        self.secret = secret  # the API key, masked in errors that quote it
        self.deltas: Iterator[Delta | str] = iter(
            partial(next, filter(None, map(decoder.feed, stream))), _END)

    def failed(self, error: BaseException) -> None:
        """An error came out of ``deltas``: mask the key an in-band error may quote
        back, and let the connection go."""
        _redact(error, self.secret)
        self.stream.close()

    def close(self) -> None:
        self.stream.close()


class AsyncSource:
    """Deltas of one open async stream, bound to the loop that opened it."""

    __slots__ = ("decoder", "deltas", "loop", "secret", "stream")

    def __init__(self, stream: AsyncResponseStream, decoder: StreamDecoder,
                 secret: str | None = None) -> None:
        self.stream = stream
        import asyncio

        self.decoder = decoder
        self.secret = secret
        self.loop = asyncio.get_running_loop()
        self.deltas: AsyncIterator[Delta] = self._pull()

    async def _pull(self) -> AsyncIterator[Delta]:
        decoder = self.decoder
        feed = decoder.feed
        try:
            async for event in self.stream:
                delta = feed(event)
                if delta is None:
                    continue
                yield delta
                if decoder.done:
                    return
        except MsgfluxError as e:
            _redact(e, self.secret)
            raise
        finally:
            await self.stream.aclose()

    async def aclose(self) -> None:
        await self.deltas.aclose()  # type: ignore[attr-defined]


class Replay:
    """A finished answer played back as a stream: the event stream and its decoder
    at once, for a :class:`SyncSource` or :class:`AsyncSource` (a cache hit of a
    streamed request).

    The Deltas fold back into the same answer: reasoning blocks, text, refusal,
    tool calls, then the finish with usage and the end marker.
    """

    has_end_marker = True

    def __init__(self, completion: Completion) -> None:
        self.done = False
        c = completion
        deltas = [Delta(reasoning=b.text or None, reasoning_block=b)
                  for b in c.reasoning_blocks]
        if not deltas and c.reasoning:
            deltas.append(Delta(reasoning=c.reasoning))
        if c.text or c.refusal:
            deltas.append(Delta(text=c.text or None, refusal=c.refusal))
        if c.tool_calls:
            deltas.append(Delta(tool_calls=tuple(
                ToolCallDelta(i, t.id, t.name, t.arguments, t.signature)
                for i, t in enumerate(c.tool_calls))))
        deltas.append(Delta(finish_reason=c.finish_reason,
                            native_finish_reason=c.native_finish_reason, usage=c.usage,
                            model=c.model, id=c.id))
        deltas.append(Delta(done=True))  # the end marker carries nothing else
        self.deltas = deltas

    def __iter__(self) -> Iterator[Delta]:
        return iter(self.deltas)

    async def __aiter__(self) -> AsyncIterator[Delta]:
        for delta in self.deltas:
            yield delta

    def feed(self, delta: Delta) -> Delta:
        if delta.done:
            self.done = True
        return delta

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
