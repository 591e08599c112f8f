"""Dialects on recorded payloads, no I/O: the request body a dialect writes, the SSE
events of a recorded stream, and a stream folded as the model folds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from msgflux._transport.sse import SSEDecoder
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects.base import Endpoint
from msgflux.models.request import ChatRequest, Delta, as_delta
from msgflux.models.stream import StreamAssembler


def body(dialect: Any, request: ChatRequest, endpoint: Endpoint) -> dict:
    """The JSON body ``dialect`` builds for ``request``."""
    return msgspec.json.decode(dialect.build_request(request, endpoint).body)


def events(path: Path) -> list[SSEEvent]:
    """The SSE events of a recorded stream file."""
    decoder = SSEDecoder()
    return decoder.feed(path.read_bytes()) + decoder.close()


def fold(decoder: Any, evs: list[SSEEvent]) -> tuple[StreamAssembler, list[Delta], Any]:
    """Feed ``evs`` to ``decoder``: the assembler, the deltas (a text-only ``str`` as the
    Delta it stands for) and the decoder."""
    asm = StreamAssembler()
    deltas = []
    for ev in evs:
        d = decoder.feed(ev)
        if d is not None:
            deltas.append(as_delta(d))
            asm.add(d)
    return asm, deltas, decoder
