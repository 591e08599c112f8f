"""A canned HTTP/1.1 keep-alive server for the benchmarks, in three providers' wire formats.

Run it as its own process (``python bench/canned_server.py --port 0``): it prints
``PORT <n>`` on stdout once it listens, then serves until killed. Keeping the
server in another process means the client figures never include the server's
own CPU time (only its latency, which every client sees equally).

It answers by model id (:data:`MODELS`: one per path and scenario), taken from
the ``x-bench-scenario`` header if present, else from the body's ``model`` field,
else from the URL (Gemini names the model in the path):

- ``POST /v1/chat/completions``   OpenAI Chat Completions (JSON; SSE ending in ``[DONE]``);
- ``POST /v1/messages``           Anthropic Messages (JSON; SSE with ``event:`` lines,
  ``message_start`` … ``message_stop``);
- ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``
  Gemini (JSON; SSE of whole ``GenerateContentResponse`` chunks, CRLF line ends, no end
  marker).

Scenarios, the same on every path: ``text`` (one short answer), ``stream``
(``--chunks`` content chunks), ``tool`` (one streamed tool call whose arguments
come in ``--fragments`` pieces; Gemini sends a call whole, in one chunk) and
``struct`` (an answer whose text is a nested JSON object, for structured output).

``GET /bench/last/<model>`` returns the last request body received for that
model id, so the raw floors can replay exactly the bytes msgflux sent.

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

PATHS = ("openai", "anthropic", "google")
SCENARIOS = ("text", "stream", "tool", "struct")

# The model id of each path and scenario. The Claude and Gemini ids name real model
# families so the dialects pick today's request shapes (native structured output on
# Claude >= 4.5); the server routes on the whole id.
MODELS: dict[str, dict[str, str]] = {
    "openai": {"text": "bench", "stream": "bench-stream", "tool": "bench-tool",
               "struct": "bench-struct"},
    "anthropic": {s: f"claude-sonnet-4-5-bench-{s}" for s in SCENARIOS},
    "google": {s: f"gemini-2.5-flash-bench-{s}" for s in SCENARIOS},
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


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
PERSON_TEXT = json.dumps(PERSON_ANSWER, separators=(",", ":"))

TEXT_ANSWER = "Hello! I am a canned benchmark answer with a realistic length of a few words."
TOOL_NAME = "get_weather"


def token(i: int) -> str:
    """The text of content chunk ``i`` (the same on every path)."""
    return f" tok{i % 1000:03d}"


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


# ---- OpenAI Chat Completions


def completion_body(model: str, content: str) -> bytes:
    return _dumps({
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
    })


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
    return b"data: " + _dumps(obj) + b"\n\n"


def _usage(completion: int) -> dict[str, int]:
    return {"prompt_tokens": 12, "completion_tokens": completion,
            "total_tokens": 12 + completion}


def stream_events(chunks: int, model: str = "bench-stream") -> list[bytes]:
    """``chunks`` content chunks (each ~150 bytes on the wire), then finish, usage, [DONE]."""
    events = [_chunk(model, {"role": "assistant", "content": ""})]
    events += [_chunk(model, {"content": token(i)}) for i in range(chunks)]
    events.append(_chunk(model, {}, "stop"))
    events.append(_chunk(model, {}, usage=_usage(chunks), choices=False))
    events.append(b"data: [DONE]\n\n")
    return events


def tool_events(fragments: int, model: str = "bench-tool") -> list[bytes]:
    _, pieces = tool_arguments(fragments)
    first = {"role": "assistant", "content": None, "tool_calls": [{
        "index": 0, "id": "call_bench01", "type": "function",
        "function": {"name": TOOL_NAME, "arguments": ""}}]}
    events = [_chunk(model, first)]
    events += [_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
               for p in pieces]
    events.append(_chunk(model, {}, "tool_calls"))
    events.append(_chunk(model, {}, usage=_usage(fragments), choices=False))
    events.append(b"data: [DONE]\n\n")
    return events


# ---- Anthropic Messages


def anthropic_body(model: str, content: str) -> bytes:
    return _dumps({
        "id": "msg_bench0001",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": content}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0, "output_tokens": 18},
    })


def _event(name: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def _anthropic_stream(model: str, block: dict[str, Any], deltas: list[dict[str, Any]],
                      stop: str, output_tokens: int) -> list[bytes]:
    """message_start, one content block (start, deltas, stop), message_delta, message_stop."""
    events = [
        _event("message_start", {"type": "message_start", "message": {
            "id": "msg_bench0001", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}}),
        _event("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": block}),
        _event("ping", {"type": "ping"}),
    ]
    events += [_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": d}) for d in deltas]
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(_event("message_delta", {
        "type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens}}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def anthropic_stream_events(chunks: int, model: str) -> list[bytes]:
    return _anthropic_stream(
        model, {"type": "text", "text": ""},
        [{"type": "text_delta", "text": token(i)} for i in range(chunks)], "end_turn", chunks)


def anthropic_tool_events(fragments: int, model: str) -> list[bytes]:
    _, pieces = tool_arguments(fragments)
    return _anthropic_stream(
        model, {"type": "tool_use", "id": "toolu_bench01", "name": TOOL_NAME, "input": {}},
        [{"type": "input_json_delta", "partial_json": p} for p in pieces], "tool_use",
        fragments)


# ---- Gemini generateContent


def _gemini(model: str, parts: list[dict[str, Any]], finish: str | None,
            completion: int | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    usage: dict[str, int] = {"promptTokenCount": 12}
    if completion is not None:
        usage["candidatesTokenCount"] = completion
    usage["totalTokenCount"] = 12 + (completion or 0)
    return {"candidates": [candidate], "usageMetadata": usage,
            "modelVersion": model.split("-bench")[0], "responseId": "resp-bench-1"}


def gemini_body(model: str, content: str) -> bytes:
    return _dumps(_gemini(model, [{"text": content}], "STOP", 18))


def _data_crlf(obj: dict[str, Any]) -> bytes:
    # Google's servers end SSE lines with CRLF.
    return b"data: " + _dumps(obj) + b"\r\n\r\n"


def gemini_stream_events(chunks: int, model: str) -> list[bytes]:
    # Every chunk is a whole response and carries usageMetadata, as Gemini's do; the
    # last one has the finishReason and no text.
    events = [_data_crlf(_gemini(model, [{"text": token(i)}], None, None))
              for i in range(chunks)]
    events.append(_data_crlf(_gemini(model, [{"text": ""}], "STOP", chunks)))
    return events


def gemini_tool_events(fragments: int, model: str) -> list[bytes]:
    # Gemini streams a function call whole: one part with the parsed arguments object.
    text, _ = tool_arguments(fragments)
    part = {"functionCall": {"name": TOOL_NAME, "args": json.loads(text)},
            "thoughtSignature": "CiQBbench0signature"}
    return [_data_crlf(_gemini(model, [part], "STOP", fragments))]


# ---- the reply table


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
    """Reply bytes by model id (bytes), for every path and scenario."""
    o, a, g = MODELS["openai"], MODELS["anthropic"], MODELS["google"]
    table = {
        o["text"]: _json_reply(completion_body(o["text"], TEXT_ANSWER)),
        o["stream"]: _sse_reply(stream_events(chunks, o["stream"])),
        o["tool"]: _sse_reply(tool_events(fragments, o["tool"])),
        o["struct"]: _json_reply(completion_body(o["struct"], PERSON_TEXT)),
        a["text"]: _json_reply(anthropic_body(a["text"], TEXT_ANSWER)),
        a["stream"]: _sse_reply(anthropic_stream_events(chunks, a["stream"])),
        a["tool"]: _sse_reply(anthropic_tool_events(fragments, a["tool"])),
        a["struct"]: _json_reply(anthropic_body(a["struct"], PERSON_TEXT)),
        g["text"]: _json_reply(gemini_body(g["text"], TEXT_ANSWER)),
        g["stream"]: _sse_reply(gemini_stream_events(chunks, g["stream"])),
        g["tool"]: _sse_reply(gemini_tool_events(fragments, g["tool"])),
        g["struct"]: _json_reply(gemini_body(g["struct"], PERSON_TEXT)),
    }
    return {k.encode(): v for k, v in table.items()}


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
        target = head[head.find(b" ") + 1:head.find(b" http/")]
        m = target.find(b"/models/")
        if i >= 0:
            j = head.find(b"\r\n", i)
            name = head[i + 17:j if j >= 0 else len(head)].strip()
        elif m >= 0:  # Gemini: /v1beta/models/{model}:generateContent
            name = target[m + 8:target.find(b":", m)]
        else:
            found = _MODEL_RE.search(body)
            name = found.group(1) if found else b""
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
