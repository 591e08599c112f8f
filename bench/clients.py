"""Every client the bench measures, on each of the three wire formats.

- :class:`Msgflux`: msgflux through its public API (``Model.chat_completion``, calls,
  ``acall``, ``consume``, ``get_calls``), one model per scenario;
- :class:`SocketFloor` / :class:`AsyncSocketFloor`: the physical limit, hand-rolled on a
  socket (asyncio streams for async): request bytes built once, HTTP/1.1 framing parsed
  by hand, typed msgspec decoding of just the fields read;
- the reference floors on the OpenAI path (raw httpx, http.client, raw aiohttp, raw
  httpx async) and the openai SDK as a peer.

A :class:`Wire` says where each scenario goes on one provider's API and how the socket
floors read its answers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, ClassVar

from bench_schemas import person_struct, pydantic_person, wire_types
from canned_server import MODELS, SCENARIOS

PROMPT = "Hello"
TOOL_PROMPT = "What is the weather in London for the next days?"
STRUCT_PROMPT = "Describe Ada Lovelace."
MAX_TOKENS = 1024  # Anthropic requires it; given to Gemini too, as users do
TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "array"}},
            "required": ["city"],
        },
    },
}]


def _call(call_id: str | None, name: str | None, arguments: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def fold_tool_calls(chunks: Iterable[dict[str, Any]], loads: Callable[[Any], Any]
                    ) -> list[dict[str, Any]]:
    """What a hand-written client does with OpenAI tool-call deltas (as dicts): fold
    the fragments, parse once."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        choices = chunk["choices"]
        if not choices:
            continue
        for tc in choices[0]["delta"].get("tool_calls") or ():
            entry = calls.get(tc["index"])
            if entry is None:
                entry = calls[tc["index"]] = {"id": tc.get("id"), "name": None, "args": []}
            fn = tc.get("function") or {}
            if fn.get("name"):
                entry["name"] = fn["name"]
            if fn.get("arguments"):
                entry["args"].append(fn["arguments"])
    return [_call(e["id"], e["name"], loads("".join(e["args"]))) for _, e in sorted(calls.items())]


# ---------------------------------------------------------------- the three wire formats


class Wire:
    """One provider's wire format: where msgflux and the floors send each scenario, and
    how the socket floors read the answers (typed msgspec views, only the fields needed).

    The typed decoders are built by :meth:`load`, so a process that runs only the
    httpx/aiohttp floors (the RSS figure's) never imports msgspec.
    """

    name = ""
    provider = ""
    sep = b"\n\n"  # between SSE events on this wire
    headers: ClassVar[dict[str, str]] = {}
    text_keys: tuple[str | int, ...] = ()  # where json.loads(body) keeps the answer text

    def __init__(self) -> None:
        self.models = MODELS[self.name]
        self.loaded = False

    def model_path(self, scenario: str) -> str:
        return f"{self.provider}/{self.models[scenario]}"

    def msgflux_kwargs(self, root: str) -> dict[str, Any]:
        return {"base_url": root, "api_key": "x", "max_tokens": MAX_TOKENS}

    def http_path(self, scenario: str) -> str:
        raise NotImplementedError

    def request(self, scenario: str, port: int, body: bytes) -> bytes:
        """The whole request, built once: what a socket client writes per call."""
        head = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
        return (f"POST {self.http_path(scenario)} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                f"{head}content-length: {len(body)}\r\n\r\n").encode() + body

    def json_text(self, body: bytes) -> str:
        """The answer text, the way a client on json.loads reads it."""
        value: Any = json.loads(body)
        for key in self.text_keys:
            value = value[key]
        return value

    def load(self) -> None:
        import msgspec

        if not self.loaded:
            self.types = wire_types()
            self.person = msgspec.json.Decoder(person_struct()).decode
            self.loads = msgspec.json.decode
            self._load(msgspec)
            self.loaded = True

    def _load(self, msgspec: Any) -> None:
        raise NotImplementedError

    # The socket floors' parsing (after load()).
    def text(self, body: bytes) -> str:
        raise NotImplementedError

    def count(self, events: list[bytes]) -> int:
        """How many events of a batch carry content text."""
        raise NotImplementedError

    def tool_calls(self, events: list[bytes]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def struct(self, body: bytes) -> Any:
        return self.person(self.text(body))


class OpenAIWire(Wire):
    name = provider = "openai"
    headers: ClassVar[dict[str, str]] = {"content-type": "application/json",
                                         "authorization": "Bearer x"}
    text_keys = ("choices", 0, "message", "content")

    def msgflux_kwargs(self, root: str) -> dict[str, Any]:
        return {"base_url": f"{root}/v1", "api_key": "x"}

    def http_path(self, scenario: str) -> str:
        return "/v1/chat/completions"

    def _load(self, msgspec: Any) -> None:
        self.completion = msgspec.json.Decoder(self.types.OCompletion).decode
        self.chunk = msgspec.json.Decoder(self.types.OChunk).decode

    def text(self, body: bytes) -> str:
        return self.completion(body).choices[0].message.content

    def count(self, events: list[bytes]) -> int:
        n, decode = 0, self.chunk
        for event in events:
            if event.startswith(b"data: {"):
                choices = decode(event[6:]).choices
                if choices and choices[0].delta.content:
                    n += 1
        return n

    def tool_calls(self, events: list[bytes]) -> list[dict[str, Any]]:
        calls: dict[int, list[Any]] = {}
        decode = self.chunk
        for event in events:
            if not event.startswith(b"data: {"):
                continue
            choices = decode(event[6:]).choices
            if not choices:
                continue
            for tc in choices[0].delta.tool_calls or ():
                entry = calls.get(tc.index)
                if entry is None:
                    entry = calls[tc.index] = [tc.id, None, []]
                fn = tc.function
                if fn is not None:
                    if fn.name:
                        entry[1] = fn.name
                    if fn.arguments:
                        entry[2].append(fn.arguments)
        loads = self.loads
        return [_call(i, n, loads("".join(a))) for _, (i, n, a) in sorted(calls.items())]


class AnthropicWire(Wire):
    name = provider = "anthropic"
    headers: ClassVar[dict[str, str]] = {"content-type": "application/json", "x-api-key": "x",
                                         "anthropic-version": "2023-06-01"}
    text_keys = ("content", 0, "text")

    def http_path(self, scenario: str) -> str:
        return "/v1/messages"

    def _load(self, msgspec: Any) -> None:
        self.message = msgspec.json.Decoder(self.types.AMessage).decode
        self.event = msgspec.json.Decoder(self.types.AEvent).decode

    def text(self, body: bytes) -> str:
        return "".join(b.text for b in self.message(body).content if b.type == "text" and b.text)

    def count(self, events: list[bytes]) -> int:
        # Each event is "event: <type>\ndata: <json>"; the JSON repeats the type.
        n, decode = 0, self.event
        for event in events:
            ev = decode(event[event.index(b"\ndata: ") + 7:])
            if ev.type == "content_block_delta" and ev.delta.text:
                n += 1
        return n

    def tool_calls(self, events: list[bytes]) -> list[dict[str, Any]]:
        calls: dict[int, list[Any]] = {}
        decode = self.event
        for event in events:
            ev = decode(event[event.index(b"\ndata: ") + 7:])
            kind = ev.type
            if kind == "content_block_delta":
                entry = calls.get(ev.index)
                if entry is not None and ev.delta.partial_json:
                    entry[2].append(ev.delta.partial_json)
            elif kind == "content_block_start" and ev.content_block.type == "tool_use":
                calls[ev.index] = [ev.content_block.id, ev.content_block.name, []]
        loads = self.loads
        return [_call(i, n, loads("".join(a))) for _, (i, n, a) in sorted(calls.items())]


class GoogleWire(Wire):
    name = provider = "google"
    sep = b"\r\n\r\n"  # Google's servers end SSE lines with CRLF
    headers: ClassVar[dict[str, str]] = {"content-type": "application/json", "x-goog-api-key": "x"}
    text_keys = ("candidates", 0, "content", "parts", 0, "text")

    def http_path(self, scenario: str) -> str:
        method = ":generateContent" if scenario in ("text", "struct") else (
            ":streamGenerateContent?alt=sse")
        return f"/v1beta/models/{self.models[scenario]}{method}"

    def _load(self, msgspec: Any) -> None:
        self.response = msgspec.json.Decoder(self.types.GResponse).decode

    def text(self, body: bytes) -> str:
        content = self.response(body).candidates[0].content
        return "".join(p.text for p in content.parts if p.text) if content else ""

    def count(self, events: list[bytes]) -> int:
        n, decode = 0, self.response
        for event in events:
            candidates = decode(event[6:]).candidates
            content = candidates[0].content if candidates else None
            if content and content.parts and content.parts[0].text:
                n += 1
        return n

    def tool_calls(self, events: list[bytes]) -> list[dict[str, Any]]:
        # Gemini sends each call whole, its arguments already an object.
        calls = []
        decode = self.response
        for event in events:
            candidates = decode(event[6:]).candidates
            if candidates and candidates[0].content:
                for part in candidates[0].content.parts:
                    fc = part.function_call
                    if fc is not None:
                        calls.append(_call(fc.id or f"call_{len(calls)}", fc.name, fc.args))
        return calls


WIRES: dict[str, type[Wire]] = {"openai": OpenAIWire, "anthropic": AnthropicWire,
                                "google": GoogleWire}


async def _drive(one: Callable[[], Awaitable[object]], total: int, concurrency: int) -> None:
    """``total`` requests, ``concurrency`` in flight at any time."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# ---------------------------------------------------------------- the msgflux side


class Msgflux:
    """msgflux on one wire, through the public API only: one model per scenario (the
    server routes on the model id)."""

    def __init__(self, wire: Wire, root: str, **options: Any) -> None:
        import msgflux as mf

        self.wire = wire
        kwargs = {**wire.msgflux_kwargs(root), **options}
        models = {s: mf.Model.chat_completion(wire.model_path(s), **kwargs) for s in SCENARIOS}
        self.text, self.stream = models["text"], models["stream"]
        self.tool, self.struct = models["tool"], models["struct"]
        self.person = person_struct()

    # sync
    def calls(self, n: int) -> None:
        model = self.text
        for _ in range(n):
            model(PROMPT).consume()

    def stream_once(self) -> int:
        count = 0
        for _chunk in self.stream(PROMPT, stream=True).consume():
            count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        return self.tool(TOOL_PROMPT, stream=True, tool_schemas=TOOLS).consume().get_calls()

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        model, person = self.struct, self.person
        for _ in range(n):
            model(STRUCT_PROMPT, generation_schema=person).consume()

    def struct_texts(self, n: int) -> None:
        """The same structured answer read as plain text: isolates decoding from the call."""
        model = self.struct
        for _ in range(n):
            model(STRUCT_PROMPT).consume()

    # async
    async def aone(self) -> None:
        (await self.text.acall(PROMPT)).consume()

    async def abatch(self, total: int, concurrency: int) -> None:
        await _drive(self.aone, total, concurrency)

    async def astream_once(self) -> int:
        count = 0
        async for _chunk in (await self.stream.acall(PROMPT, stream=True)).consume():
            count += 1
        return count

    async def aclose(self) -> None:
        for model in (self.text, self.stream):
            await model.aclose()

    def close(self) -> None:
        for model in (self.text, self.stream, self.tool, self.struct):
            model.close()


# ---------------------------------------------------------------- the socket floors


class ChunkedSSE:
    """Incremental reader of a chunked HTTP/1.1 body made of SSE events: feed it the
    bytes as they arrive, get back the complete events (``sep`` split off)."""

    __slots__ = ("done", "pending", "raw", "sep")

    def __init__(self, sep: bytes, raw: bytes = b"") -> None:
        self.sep = sep
        self.raw = raw  # undecoded framing; after the last chunk, what follows the body
        self.pending = b""  # the start of an event not yet complete
        self.done = False

    def feed(self, data: bytes) -> list[bytes]:
        raw = self.raw + data if self.raw else data
        pos, parts = 0, []
        while True:
            eol = raw.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(raw[pos:eol], 16)
            end = eol + 2 + size
            if len(raw) < end + 2:
                break
            pos = end + 2
            if size == 0:
                self.done = True
                break
            parts.append(raw[eol + 2:end])
        self.raw = raw[pos:]
        if not parts:
            return []
        *events, self.pending = (self.pending + b"".join(parts)).split(self.sep)
        return events


def _content_length(head: bytes) -> int:
    i = head.index(b"content-length:") + 15
    j = head.find(b"\r\n", i)
    return int(head[i:j] if j >= 0 else head[i:])


class SocketFloor:
    """The leanest client anyone could write: one socket, request bytes built once,
    HTTP/1.1 framing parsed by hand, typed msgspec decoding of just the fields read.

    It parses as far as msgflux does: to the text, each chunk's content, the tool
    call's parsed arguments, the structured answer's Struct.
    """

    def __init__(self, port: int, wire: Wire, bodies: dict[str, bytes]) -> None:
        wire.load()
        self.wire = wire
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests = {s: wire.request(s, port, b) for s, b in bodies.items()}
        self.buf = b""

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the bench server closed the connection")
        return data

    def _head(self, request: bytes) -> bytes:
        self.sock.sendall(request)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        self.buf = buf[end + 4:]
        return buf[:end].lower()

    def _body(self, request: bytes) -> bytes:
        length = _content_length(self._head(request))
        buf = self.buf
        while len(buf) < length:
            buf += self._recv()
        self.buf = buf[length:]
        return buf[:length]

    def _events(self, request: bytes) -> Iterator[list[bytes]]:
        """The SSE events of a chunked answer, in the batches the socket delivered them."""
        self._head(request)  # the canned streams are always chunked
        reader = ChunkedSSE(self.wire.sep, self.buf)
        events = reader.feed(b"")
        while True:
            if events:
                yield events
            if reader.done:
                self.buf = reader.raw
                return
            events = reader.feed(self._recv())

    def calls(self, n: int) -> None:
        request, text = self.requests["text"], self.wire.text
        for _ in range(n):
            text(self._body(request))

    def stream_once(self) -> int:
        count = self.wire.count
        return sum(count(events) for events in self._events(self.requests["stream"]))

    def tool_once(self) -> list[dict[str, Any]]:
        every: list[bytes] = []
        for events in self._events(self.requests["tool"]):
            every += events
        return self.wire.tool_calls(every)

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        request, struct = self.requests["struct"], self.wire.struct
        for _ in range(n):
            struct(self._body(request))

    def close(self) -> None:
        self.sock.close()


class AsyncSocketFloor:
    """The async floor at the same limit: asyncio streams, one connection per request in
    flight, request bytes built once, framing parsed by hand, typed decoding."""

    def __init__(self, port: int, wire: Wire, bodies: dict[str, bytes]) -> None:
        wire.load()
        self.port = port
        self.wire = wire
        self.requests = {s: wire.request(s, port, b) for s, b in bodies.items()}
        self.conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def _open(self, n: int) -> None:
        while len(self.conns) < n:
            self.conns.append(await asyncio.open_connection("127.0.0.1", self.port))

    async def abatch(self, total: int, concurrency: int) -> None:
        await self._open(concurrency)
        request, text = self.requests["text"], self.wire.text
        remaining = total

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                writer.write(request)
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                text(await reader.readexactly(_content_length(head)))

        await asyncio.gather(*(worker(r, w) for r, w in self.conns[:concurrency]))

    async def astream_once(self) -> int:
        await self._open(1)
        reader, writer = self.conns[0]
        writer.write(self.requests["stream"])
        await reader.readuntil(b"\r\n\r\n")
        sse = ChunkedSSE(self.wire.sep)
        count, n = 0, self.wire.count
        while not sse.done:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the bench server closed the connection")
            count += n(sse.feed(data))
        return count

    async def aclose(self) -> None:
        for _, writer in self.conns:
            writer.close()
        self.conns.clear()


# ---------------------------------------------------------------- reference floors (OpenAI path)


class RawHttpx:
    """Hand-written requests with httpx.Client and json.loads (the floor DESIGN first used)."""

    def __init__(self, url: str, bodies: dict[str, bytes]) -> None:
        import httpx

        self.client = httpx.Client(timeout=30)
        self.url = url
        self.bodies = bodies
        self.headers = OpenAIWire.headers
        self.text = OpenAIWire().json_text

    def calls(self, n: int) -> None:
        post, url, body, headers, text = (self.client.post, self.url, self.bodies["text"],
                                          self.headers, self.text)
        for _ in range(n):
            text(post(url, content=body, headers=headers).content)

    def stream_once(self) -> int:
        count = 0
        loads = json.loads
        with self.client.stream("POST", self.url, content=self.bodies["stream"],
                                headers=self.headers) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    continue
                choices = loads(data)["choices"]
                if choices and choices[0]["delta"].get("content"):
                    count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        loads = json.loads
        with self.client.stream("POST", self.url, content=self.bodies["tool"],
                                headers=self.headers) as r:
            chunks = (loads(line[6:]) for line in r.iter_lines()
                      if line.startswith("data: ") and line != "data: [DONE]")
            return fold_tool_calls(chunks, loads)

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        post, url, body, headers, text = (self.client.post, self.url, self.bodies["struct"],
                                          self.headers, self.text)
        for _ in range(n):
            json.loads(text(post(url, content=body, headers=headers).content))

    def close(self) -> None:
        self.client.close()


class RawStdlib:
    """http.client on one keep-alive connection, json.loads (+ msgspec for streams)."""

    def __init__(self, port: int, bodies: dict[str, bytes]) -> None:
        import msgspec

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.bodies = bodies
        self.chunk_decode = msgspec.json.Decoder(wire_types().OChunk).decode
        self.decode = msgspec.json.decode
        self.text = OpenAIWire().json_text

    def _post(self, body: bytes) -> http.client.HTTPResponse:
        self.conn.request("POST", "/v1/chat/completions", body, OpenAIWire.headers)
        return self.conn.getresponse()

    def calls(self, n: int) -> None:
        body, text = self.bodies["text"], self.text
        for _ in range(n):
            text(self._post(body).read())

    def stream_once(self) -> int:
        count = 0
        decode = self.chunk_decode
        resp = self._post(self.bodies["stream"])
        for line in resp:
            if line.startswith(b"data: {"):
                choices = decode(line[6:]).choices
                if choices and choices[0].delta.content:
                    count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        decode = self.decode
        resp = self._post(self.bodies["tool"])
        chunks = (decode(line[6:]) for line in resp if line.startswith(b"data: {"))
        return fold_tool_calls(chunks, decode)

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        body, text = self.bodies["struct"], self.text
        for _ in range(n):
            json.loads(text(self._post(body).read()))

    def close(self) -> None:
        self.conn.close()


class RawAiohttp:
    """Hand-written async requests with aiohttp and json.loads (the async target's floor)."""

    def __init__(self, server_root: str, wire: Wire, bodies: dict[str, bytes],
                 concurrency: int) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.wire = wire
        self.url = {s: server_root + wire.http_path(s) for s in ("text", "stream")}
        self.bodies = bodies

    async def aone(self) -> None:
        async with self.session.post(self.url["text"], data=self.bodies["text"],
                                     headers=self.wire.headers) as r:
            self.wire.json_text(await r.read())

    async def abatch(self, total: int, concurrency: int) -> None:
        await _drive(self.aone, total, concurrency)

    async def astream_once(self) -> int:
        """OpenAI wire only: lines, json.loads per chunk."""
        count = 0
        loads = json.loads
        async with self.session.post(self.url["stream"], data=self.bodies["stream"],
                                     headers=self.wire.headers) as r:
            async for line in r.content:
                if line.startswith(b"data: {"):
                    choices = loads(line[6:])["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        count += 1
        return count

    async def aclose(self) -> None:
        await self.session.close()


class RawHttpxAsync:
    def __init__(self, url: str, bodies: dict[str, bytes], concurrency: int) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            timeout=60, limits=httpx.Limits(max_connections=concurrency,
                                            max_keepalive_connections=concurrency))
        self.url = url
        self.bodies = bodies
        self.text = OpenAIWire().json_text

    async def aone(self) -> None:
        r = await self.client.post(self.url, content=self.bodies["text"],
                                   headers=OpenAIWire.headers)
        self.text(r.content)

    async def abatch(self, total: int, concurrency: int) -> None:
        await _drive(self.aone, total, concurrency)

    async def aclose(self) -> None:
        await self.client.aclose()


# ---------------------------------------------------------------- the openai SDK (a peer)


class OpenAIPeer:
    def __init__(self, base: str) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
        self.aclient: Any = None
        self.base = base
        self.person: Any = None
        self.models = MODELS["openai"]

    def _ensure_async(self) -> Any:
        if self.aclient is None:
            import openai

            self.aclient = openai.AsyncOpenAI(base_url=self.base, api_key="x", max_retries=0)
        return self.aclient

    def calls(self, n: int) -> None:
        create = self.client.chat.completions.create
        msgs = [{"role": "user", "content": PROMPT}]
        for _ in range(n):
            _ = create(model=self.models["text"], messages=msgs).choices[0].message.content

    def stream_once(self) -> int:
        count = 0
        stream = self.client.chat.completions.create(
            model=self.models["stream"], messages=[{"role": "user", "content": PROMPT}],
            stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        calls: dict[int, dict[str, Any]] = {}
        stream = self.client.chat.completions.create(
            model=self.models["tool"], messages=[{"role": "user", "content": TOOL_PROMPT}],
            tools=TOOLS, stream=True)
        for chunk in stream:
            if not chunk.choices:
                continue
            for tc in chunk.choices[0].delta.tool_calls or ():
                entry = calls.setdefault(tc.index, {"id": tc.id, "name": None, "args": []})
                if tc.function is not None:
                    if tc.function.name:
                        entry["name"] = tc.function.name
                    if tc.function.arguments:
                        entry["args"].append(tc.function.arguments)
        return [_call(e["id"], e["name"], json.loads("".join(e["args"])))
                for _, e in sorted(calls.items())]

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        if self.person is None:
            self.person = pydantic_person()
        parse = self.client.chat.completions.parse
        msgs = [{"role": "user", "content": STRUCT_PROMPT}]
        for _ in range(n):
            _ = parse(model=self.models["struct"], messages=msgs,
                      response_format=self.person).choices[0].message.parsed

    async def aone(self) -> None:
        r = await self._ensure_async().chat.completions.create(
            model=self.models["text"], messages=[{"role": "user", "content": PROMPT}])
        _ = r.choices[0].message.content

    async def abatch(self, total: int, concurrency: int) -> None:
        await _drive(self.aone, total, concurrency)

    async def astream_once(self) -> int:
        count = 0
        stream = await self._ensure_async().chat.completions.create(
            model=self.models["stream"], messages=[{"role": "user", "content": PROMPT}],
            stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
        return count

    async def aclose(self) -> None:
        if self.aclient is not None:
            await self.aclient.close()

    def close(self) -> None:
        self.client.close()
