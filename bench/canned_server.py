"""A canned OpenAI-compatible HTTP/1.1 keep-alive server for the benchmarks.

Run it as its own process (``python bench/canned_server.py --port 0``): it prints
``PORT <n>`` on stdout once it listens, then serves until killed. Keeping the
server in another process means the client figures never include the server's
own CPU time (only its latency, which every client sees equally).

``POST /v1/chat/completions`` answers by scenario, taken from the
``x-bench-scenario`` header if present, else from the body's ``model`` field:

- ``bench``         one fixed chat.completion JSON (Content-Length body);
- ``bench-stream``  a ``--chunks``-chunk SSE stream of ~150-byte OpenAI chunks;
- ``bench-tool``    an SSE tool-call stream whose arguments come in ``--fragments`` pieces;
- ``bench-struct``  a chat.completion whose content is a JSON object (structured output).

``GET /bench/last/<scenario>`` returns the last request body received for that
scenario, so the raw floors can replay exactly the bytes msgflux sent.

Every reply is precomputed bytes written with one ``transport.write``: the
server does no JSON work per request, so it stays far faster than any client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys
from typing import Any

CREATED = 1_700_000_000
_MODEL_RE = re.compile(rb'"model"\s*:\s*"([^"]*)"')


# ---------------------------------------------------------------- payloads (also used by run.py)


# The structured answer (bench/bench_schemas.py has its Struct and pydantic shapes).
PERSON_ANSWER: dict[str, Any] = {
    "name": "Ada Lovelace",
    "age": 36,
    "email": "ada@example.org",
    "tags": ["mathematician", "writer", "analyst"],
    "address": {"street": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH"},
    "projects": [
        {"title": "Notes on the Analytical Engine", "year": 1843, "stars": 5},
        {"title": "Bernoulli numbers program", "year": 1843, "stars": 4},
    ],
}


TEXT_ANSWER = "Hello! I am a canned benchmark answer with a realistic length of a few words."


def completion_body(model: str, content: str) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_bench",
    }, separators=(",", ":")).encode()


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None,
           usage: dict[str, Any] | None = None, choices: bool = True) -> bytes:
    obj: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
    }
    if usage is not None:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


_USAGE = {"prompt_tokens": 12, "completion_tokens": 5000, "total_tokens": 5012}


def stream_events(chunks: int) -> list[bytes]:
    """``chunks`` content chunks (each ~150 bytes on the wire), then finish, usage, [DONE]."""
    model = "bench"
    events = [_chunk(model, {"role": "assistant", "content": ""})]
    events += [_chunk(model, {"content": f" tok{i % 1000:03d}"}) for i in range(chunks)]
    events.append(_chunk(model, {}, "stop"))
    events.append(_chunk(model, {}, usage=_USAGE, choices=False))
    events.append(b"data: [DONE]\n\n")
    return events


def tool_arguments(fragments: int) -> tuple[str, list[str]]:
    """A JSON arguments object and its split into ``fragments`` pieces."""
    text = json.dumps({
        "city": "London",
        "days": [{"day": i, "unit": "celsius", "detail": "hourly"}
                 for i in range(fragments // 4 + 1)],
    }, separators=(",", ":"))
    # Even cuts: exactly `fragments` non-empty pieces (the text is longer than that).
    cuts = [k * len(text) // fragments for k in range(fragments + 1)]
    return text, [text[cuts[k]:cuts[k + 1]] for k in range(fragments)]


def tool_events(fragments: int) -> list[bytes]:
    model = "bench"
    _, pieces = tool_arguments(fragments)
    first = {"role": "assistant", "content": None, "tool_calls": [{
        "index": 0, "id": "call_bench01", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]}
    events = [_chunk(model, first)]
    events += [_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
               for p in pieces]
    events.append(_chunk(model, {}, "tool_calls"))
    events.append(_chunk(model, {}, usage=_USAGE, choices=False))
    events.append(b"data: [DONE]\n\n")
    return events


def _json_reply(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def _sse_reply(events: list[bytes]) -> bytes:
    # One HTTP chunk per SSE event, as real servers flush them.
    out = [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
           b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"]
    for ev in events:
        out.append(b"%x\r\n%s\r\n" % (len(ev), ev))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def replies(chunks: int, fragments: int) -> dict[bytes, bytes]:
    return {
        b"bench": _json_reply(completion_body("bench", TEXT_ANSWER)),
        b"bench-stream": _sse_reply(stream_events(chunks)),
        b"bench-tool": _sse_reply(tool_events(fragments)),
        b"bench-struct": _json_reply(completion_body(
            "bench-struct", json.dumps(PERSON_ANSWER, separators=(",", ":")))),
    }


# ---------------------------------------------------------------- the protocol

_NOT_FOUND = (b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n"
              b"content-length: 2\r\n\r\n{}")


class _Handler(asyncio.Protocol):
    __slots__ = ("buf", "last", "replies", "transport")

    def __init__(self, replies_: dict[bytes, bytes], last: dict[bytes, bytes]) -> None:
        self.replies = replies_
        self.last = last
        self.buf = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            start = end + 4
            length = 0
            i = head.find(b"content-length:")
            if i >= 0:
                j = head.find(b"\r\n", i)
                length = int(head[i + 15:j if j >= 0 else len(head)])
                if len(buf) < start + length:
                    break
                body = buf[start:start + length]
                buf = buf[start + length:]
            elif b"transfer-encoding: chunked" in head:
                parsed = _dechunk(buf, start)
                if parsed is None:
                    break
                body, buf = parsed
            else:
                body = b""
                buf = buf[start:]
            self._answer(head, body)
        self.buf = buf

    def _answer(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"get /bench/last/"):
            name = head[16:head.find(b" ", 16)]
            got = self.last.get(name, b"")
            self.transport.write(_json_reply(got) if got else _NOT_FOUND)
            return
        i = head.find(b"x-bench-scenario:")
        if i >= 0:
            j = head.find(b"\r\n", i)
            name = head[i + 17:j if j >= 0 else len(head)].strip()
        else:
            m = _MODEL_RE.search(body)
            name = m.group(1) if m else b""
        reply = self.replies.get(name)
        if reply is None:
            self.transport.write(_NOT_FOUND)
            return
        self.last[name] = body
        self.transport.write(reply)


def _dechunk(buf: bytes, pos: int) -> tuple[bytes, bytes] | None:
    parts = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(buf[pos:eol].split(b";")[0], 16)
        if len(buf) < eol + 2 + size + 2:
            return None
        if size == 0:
            return b"".join(parts), buf[eol + 4:]
        parts.append(buf[eol + 2:eol + 2 + size])
        pos = eol + 2 + size + 2


async def serve(port: int, chunks: int, fragments: int) -> None:
    table = replies(chunks, fragments)
    last: dict[bytes, bytes] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Handler(table, last), "127.0.0.1", port,
                                      backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=5000)
    ap.add_argument("--fragments", type=int, default=200)
    args = ap.parse_args(argv)
    try:  # the fastest loop available: the server must never be the bottleneck
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.chunks, args.fragments))
    sys.exit(0)


if __name__ == "__main__":
    main()
