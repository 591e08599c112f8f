"""msgflux performance bench: msgflux against raw-HTTP floors on one local server, in one run.

    python bench/run.py [--quick] [--json out.json] [--profile] [--[no-]peers]

Figures (see bench/README.md for what each one means and why its floor is fair):

1. cold start: fresh process, import + build model + first call (vs raw httpx / http.client);
   plus ``python -X importtime -c "import msgflux"`` and the ``import msgflux`` wall time;
2. sync per-call overhead: sequential non-stream calls over one keep-alive connection;
3. async throughput: requests at a fixed concurrency (vs raw aiohttp, and raw httpx);
4. streaming per-chunk overhead: one 5,000-chunk SSE stream, sync and async;
5. one streamed tool call of 200 argument fragments, read to parsed arguments;
6. structured-output overhead: a ``generation_schema`` call vs raw text + ``json.loads``;
7. peak RSS of a process running the msgflux side of 2-6 (vs the raw floor's process).

The server (bench/canned_server.py) runs in its own process, so client figures
never include server CPU. Trials of the clients being compared are interleaved
(in rotating order), so a noisy neighbour slows all of them alike; the ratios
of one run are what count, not the absolute numbers of different runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import os
import platform
import re
import resource
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVER = HERE / "canned_server.py"
sys.path.insert(0, str(HERE))  # the sibling modules, when run as a script

from bench_schemas import msgspec_types, pydantic_person  # noqa: E402
from canned_server import tool_arguments  # noqa: E402

now_ns = time.perf_counter_ns
HEADERS = {"content-type": "application/json", "authorization": "Bearer x"}
PROMPT = "Hello"
TOOL_PROMPT = "What is the weather in London for the next days?"
STRUCT_PROMPT = "Describe Ada Lovelace."
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


def fold_tool_calls(chunks: Iterable[dict[str, Any]], loads: Callable[[Any], Any]
                    ) -> list[dict[str, Any]]:
    """What a hand-written client does with tool-call deltas: fold fragments, parse once."""
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
    return [{"id": e["id"], "type": "function",
             "function": {"name": e["name"], "arguments": loads("".join(e["args"]))}}
            for _, e in sorted(calls.items())]


@dataclass
class Config:
    """Workload sizes. The defaults are the budget's (DESIGN.md); ``quick()`` keeps the
    sizes and trims repetitions, the openai column and raw httpx async."""

    sync_calls: int = 500
    async_requests: int = 1000
    concurrency: int = 100
    chunks: int = 5000
    fragments: int = 200
    tool_reps: int = 20  # tool streams per trial (one stream is ~ms: time a few)
    struct_calls: int = 300
    trials: int = 5
    cold_runs: int = 7
    peers: bool = True
    httpx_async: bool = True  # raw httpx async collapses at high concurrency: slow to run
    rss: bool = True
    # Untimed child runs that fill the bytecode cache first (see _child_env). Only the
    # smoke test turns them off: its figures are never read as measurements.
    warmup: bool = True

    @classmethod
    def quick(cls) -> Config:
        # The openai SDK is ~10x slower than msgflux: measuring it would take most of a
        # minute, so --quick leaves it out unless --peers asks for it.
        return cls(trials=3, cold_runs=5, tool_reps=10, struct_calls=200, httpx_async=False,
                   peers=False)

    @classmethod
    def tiny(cls) -> Config:
        """For the smoke test: every figure, tiny counts, no peers."""
        return cls(sync_calls=20, async_requests=40, concurrency=10, chunks=200, fragments=20,
                   tool_reps=2, struct_calls=10, trials=1, cold_runs=1, peers=False,
                   httpx_async=True, warmup=False)


def have(module: str) -> bool:
    return find_spec(module) is not None


# ---------------------------------------------------------------- the server process


class Server:
    """The canned server in a child process; always stopped (terminate, then kill)."""

    def __init__(self, cfg: Config) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--port", "0", "--chunks", str(cfg.chunks),
             "--fragments", str(cfg.fragments)],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 15)
            line = self.proc.stdout.readline() if ready else ""
            if not line.startswith("PORT "):
                raise RuntimeError(f"bench server did not start (got {line!r})")
            self.port = int(line.split()[1])
        except BaseException:
            self.stop()
            raise
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.url = f"{self.base}/chat/completions"

    def last_body(self, scenario: str) -> bytes:
        """The exact body the last client sent for ``scenario`` (the floors replay it)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", f"/bench/last/{scenario}")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"no request recorded for scenario {scenario!r}")
        return body

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def running_server(cfg: Config) -> Iterator[Server]:
    server = Server(cfg)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- timing helpers


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def interleaved(fns: dict[str, Callable[[], object]], trials: int) -> dict[str, list[int]]:
    """ns per trial for each function; trials interleaved in rotating order (fair under noise)."""
    names = list(fns)
    out: dict[str, list[int]] = {n: [] for n in names}
    for t in range(trials):
        for name in names[t % len(names):] + names[:t % len(names)]:
            gc.collect()  # a collection from the previous client must not land in this one
            t0 = now_ns()
            fns[name]()
            out[name].append(now_ns() - t0)
    return out


async def ainterleaved(fns: dict[str, Callable[[], Awaitable[object]]], trials: int
                       ) -> dict[str, list[int]]:
    names = list(fns)
    out: dict[str, list[int]] = {n: [] for n in names}
    for t in range(trials):
        for name in names[t % len(names):] + names[:t % len(names)]:
            gc.collect()
            t0 = now_ns()
            await fns[name]()
            out[name].append(now_ns() - t0)
    return out


# ---------------------------------------------------------------- the msgflux side


class Msgflux:
    """msgflux clients, one model per scenario (the server routes on the model id)."""

    def __init__(self, base: str) -> None:
        import msgflux as mf

        def build(model: str) -> Any:
            return mf.Model.chat_completion(f"openai/{model}", base_url=base, api_key="x")

        self.text = build("bench")
        self.stream = build("bench-stream")
        self.tool = build("bench-tool")
        self.struct = build("bench-struct")
        self.person = msgspec_types()[0]

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

    async def astream_once(self) -> int:
        count = 0
        async for _chunk in (await self.stream.acall(PROMPT, stream=True)).consume():
            count += 1
        return count

    def close(self) -> None:
        for model in (self.text, self.stream, self.tool, self.struct):
            model.close()


# ---------------------------------------------------------------- raw floors


def _content(body: bytes) -> str:
    return json.loads(body)["choices"][0]["message"]["content"]


class RawHttpx:
    """Hand-written requests with httpx.Client: DESIGN's floor."""

    def __init__(self, url: str, bodies: dict[str, bytes]) -> None:
        import httpx

        self.client = httpx.Client(timeout=30)
        self.url = url
        self.bodies = bodies

    def calls(self, n: int) -> None:
        post, url, body = self.client.post, self.url, self.bodies["bench"]
        for _ in range(n):
            _content(post(url, content=body, headers=HEADERS).content)

    def stream_once(self) -> int:
        count = 0
        loads = json.loads
        with self.client.stream("POST", self.url, content=self.bodies["bench-stream"],
                                headers=HEADERS) as r:
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
        with self.client.stream("POST", self.url, content=self.bodies["bench-tool"],
                                headers=HEADERS) as r:
            chunks = (loads(line[6:]) for line in r.iter_lines()
                      if line.startswith("data: ") and line != "data: [DONE]")
            return fold_tool_calls(chunks, loads)

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        post, url, body = self.client.post, self.url, self.bodies["bench-struct"]
        for _ in range(n):
            json.loads(_content(post(url, content=body, headers=HEADERS).content))

    def close(self) -> None:
        self.client.close()


class RawStdlib:
    """The lightest floor: http.client on one keep-alive connection (+ msgspec for streams)."""

    def __init__(self, port: int, bodies: dict[str, bytes]) -> None:
        import msgspec

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.bodies = bodies
        self.chunk_decode = msgspec.json.Decoder(msgspec_types()[1]).decode
        self.decode = msgspec.json.decode

    def _post(self, body: bytes) -> http.client.HTTPResponse:
        self.conn.request("POST", "/v1/chat/completions", body, HEADERS)
        return self.conn.getresponse()

    def calls(self, n: int) -> None:
        body = self.bodies["bench"]
        for _ in range(n):
            _content(self._post(body).read())

    def stream_once(self) -> int:
        count = 0
        decode = self.chunk_decode
        resp = self._post(self.bodies["bench-stream"])
        for line in resp:
            if line.startswith(b"data: {"):
                choices = decode(line[6:]).choices
                if choices and choices[0].delta.content:
                    count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        decode = self.decode
        resp = self._post(self.bodies["bench-tool"])
        chunks = (decode(line[6:]) for line in resp if line.startswith(b"data: {"))
        return fold_tool_calls(chunks, decode)

    def tools(self, n: int) -> None:
        for _ in range(n):
            self.tool_once()

    def structs(self, n: int) -> None:
        body = self.bodies["bench-struct"]
        for _ in range(n):
            json.loads(_content(self._post(body).read()))

    def close(self) -> None:
        self.conn.close()


class RawSocket:
    """The leanest floor anyone could write: one socket, request bytes built once,
    HTTP/1.1 framing parsed by hand, typed msgspec decoding of stream chunks.

    No target is set against it: it shows how much of msgflux's cost is left
    above what any Python client must pay (sync calls and the stream only).
    """

    def __init__(self, port: int, bodies: dict[str, bytes]) -> None:
        import msgspec

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:%d\r\n"
                b"content-type: application/json\r\nauthorization: Bearer x\r\n"
                b"content-length: %d\r\n\r\n")
        self.requests = {k: head % (port, len(v)) + v for k, v in bodies.items()}
        self.buf = b""
        self.chunk_decode = msgspec.json.Decoder(msgspec_types()[1]).decode

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the bench server closed the connection")
        return data

    def _head(self) -> bytes:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        self.buf = buf[end + 4:]
        return buf[:end].lower()

    def calls(self, n: int) -> None:
        request = self.requests["bench"]
        for _ in range(n):
            self.sock.sendall(request)
            head = self._head()
            i = head.index(b"content-length:") + 15
            j = head.find(b"\r\n", i)
            length = int(head[i:j] if j >= 0 else head[i:])
            buf = self.buf
            while len(buf) < length:
                buf += self._recv()
            self.buf = buf[length:]
            _content(buf[:length])

    def stream_once(self) -> int:
        """Chunked transfer decoding, SSE event splitting and typed decoding, by hand."""
        self.sock.sendall(self.requests["bench-stream"])
        self._head()  # the canned stream is always chunked
        decode = self.chunk_decode
        raw, pos, pending, count, done = self.buf, 0, b"", 0, False
        while True:
            parts = []
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
                    done = True
                    break
                parts.append(raw[eol + 2:end])
            if parts:
                *events, pending = (pending + b"".join(parts)).split(b"\n\n")
                for event in events:
                    if event.startswith(b"data: {"):
                        choices = decode(event[6:]).choices
                        if choices and choices[0].delta.content:
                            count += 1
            if done:
                self.buf = raw[pos:]
                return count
            raw = raw[pos:] + self._recv()
            pos = 0

    def close(self) -> None:
        self.sock.close()


class RawAiohttp:
    """Hand-written async requests with aiohttp (the async floor)."""

    def __init__(self, url: str, bodies: dict[str, bytes], concurrency: int) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.url = url
        self.bodies = bodies

    async def aone(self) -> None:
        async with self.session.post(self.url, data=self.bodies["bench"], headers=HEADERS) as r:
            _content(await r.read())

    async def astream_once(self) -> int:
        count = 0
        loads = json.loads
        async with self.session.post(self.url, data=self.bodies["bench-stream"],
                                     headers=HEADERS) as r:
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

    async def aone(self) -> None:
        r = await self.client.post(self.url, content=self.bodies["bench"], headers=HEADERS)
        _content(r.content)

    async def aclose(self) -> None:
        await self.client.aclose()


# ---------------------------------------------------------------- the openai SDK (a peer)


class OpenAIPeer:
    def __init__(self, base: str, concurrency: int) -> None:
        import openai

        self.client = openai.OpenAI(base_url=base, api_key="x", max_retries=0)
        self.aclient: Any = None
        self.concurrency = concurrency
        self.base = base
        self.person: Any = None

    def _ensure_async(self) -> Any:
        if self.aclient is None:
            import openai

            self.aclient = openai.AsyncOpenAI(base_url=self.base, api_key="x", max_retries=0)
        return self.aclient

    def calls(self, n: int) -> None:
        create = self.client.chat.completions.create
        msgs = [{"role": "user", "content": PROMPT}]
        for _ in range(n):
            _ = create(model="bench", messages=msgs).choices[0].message.content

    def stream_once(self) -> int:
        count = 0
        stream = self.client.chat.completions.create(
            model="bench-stream", messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True})
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
        return count

    def tool_once(self) -> list[dict[str, Any]]:
        calls: dict[int, dict[str, Any]] = {}
        stream = self.client.chat.completions.create(
            model="bench-tool", messages=[{"role": "user", "content": TOOL_PROMPT}],
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
        return [{"id": e["id"], "type": "function",
                 "function": {"name": e["name"], "arguments": json.loads("".join(e["args"]))}}
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
            _ = parse(model="bench-struct", messages=msgs,
                      response_format=self.person).choices[0].message.parsed

    async def aone(self) -> None:
        r = await self._ensure_async().chat.completions.create(
            model="bench", messages=[{"role": "user", "content": PROMPT}])
        _ = r.choices[0].message.content

    async def astream_once(self) -> int:
        count = 0
        stream = await self._ensure_async().chat.completions.create(
            model="bench-stream", messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                count += 1
        return count

    async def aclose(self) -> None:
        if self.aclient is not None:
            await self.aclient.close()

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------- cold start


_COLD = {
    "python": "import json; print(json.dumps({}))",
    "msgflux": """
import json, sys, time
t0 = time.perf_counter()
import msgflux as mf
t1 = time.perf_counter()
m = mf.Model.chat_completion("openai/bench", base_url=BASE, api_key="x")
t2 = time.perf_counter()
text = m("Hello").consume()
t3 = time.perf_counter()
assert text
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "call": t3 - t2,
                  "modules": len(sys.modules)}))
""",
    "httpx": """
import json, sys, time
t0 = time.perf_counter()
import httpx
t1 = time.perf_counter()
c = httpx.Client()
t2 = time.perf_counter()
r = c.post(URL, content=BODY, headers={"content-type": "application/json",
                                       "authorization": "Bearer x"})
text = json.loads(r.content)["choices"][0]["message"]["content"]
t3 = time.perf_counter()
assert text
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "call": t3 - t2,
                  "modules": len(sys.modules)}))
""",
    "http.client": """
import json, sys, time
t0 = time.perf_counter()
import http.client
t1 = time.perf_counter()
c = http.client.HTTPConnection("127.0.0.1", PORT)
t2 = time.perf_counter()
c.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json",
                                                  "authorization": "Bearer x"})
text = json.loads(c.getresponse().read())["choices"][0]["message"]["content"]
t3 = time.perf_counter()
assert text
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "call": t3 - t2,
                  "modules": len(sys.modules)}))
""",
    "openai": """
import json, sys, time
t0 = time.perf_counter()
import openai
t1 = time.perf_counter()
c = openai.OpenAI(base_url=BASE, api_key="x", max_retries=0)
t2 = time.perf_counter()
text = c.chat.completions.create(model="bench", messages=[{"role": "user", "content": "Hello"}]
                                 ).choices[0].message.content
t3 = time.perf_counter()
assert text
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "call": t3 - t2,
                  "modules": len(sys.modules)}))
""",
}


PYCACHE = Path(tempfile.gettempdir()) / "msgflux-bench-pycache"


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # Nothing from the caller's shell may redirect or slow the children's requests.
    for key in list(env):
        if key.upper() in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "HTTP_PROXY", "HTTPS_PROXY",
                           "ALL_PROXY", "PYTHONDEVMODE", "PYTHONTRACEMALLOC",
                           "PYTHONPROFILEIMPORTTIME", "PYTHONDONTWRITEBYTECODE"):
            del env[key]
    env["NO_PROXY"] = "127.0.0.1,localhost"
    # Children read and write bytecode in a cache of our own. A user's pip install has
    # .pyc files; an editable checkout under PYTHONDONTWRITEBYTECODE=1 has none and would
    # compile every msgflux module from source at each start (~100 ms), which is not what
    # users pay. Every client gets the same treatment, and the first (untimed) run fills it.
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def cold_start(server: Server, body: bytes, cfg: Config) -> dict[str, Any]:
    prelude = (f"BASE = {server.base!r}\nURL = {server.url!r}\nPORT = {server.port}\n"
               f"BODY = {body!r}\n")
    names = ["python", "http.client", "httpx", "msgflux"]
    if cfg.peers and have("openai"):
        names.append("openai")
    env = _child_env()
    walls: dict[str, list[float]] = {n: [] for n in names}
    parts: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    for name in names if cfg.warmup else ():  # untimed: fills the bytecode and file caches
        subprocess.run([sys.executable, "-c", prelude + _COLD[name]], env=env,
                       capture_output=True, timeout=120, check=True)
    for run in range(cfg.cold_runs):
        for name in names[run % len(names):] + names[:run % len(names)]:
            t0 = now_ns()
            proc = subprocess.run([sys.executable, "-c", prelude + _COLD[name]], env=env,
                                  capture_output=True, text=True, timeout=120)
            wall = (now_ns() - t0) / 1e6
            if proc.returncode != 0:
                raise RuntimeError(f"cold start {name} failed:\n{proc.stderr[-2000:]}")
            walls[name].append(wall)
            parts[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    out: dict[str, Any] = {"wall_ms": {n: median(w) for n, w in walls.items()},
                           "trials_ms": walls}
    out["phases_ms"] = {
        n: {k: median([p[k] for p in ps]) * (1 if k == "modules" else 1000) for k in ps[0]}
        for n, ps in parts.items() if ps[0]
    }
    out["import"] = import_figures(env, cfg)
    return out


def import_figures(env: dict[str, str], cfg: Config) -> dict[str, Any]:
    """``-X importtime`` cumulative for msgflux, and the wall time of ``import msgflux``."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import msgflux"],
                          env=env, capture_output=True, text=True, timeout=60)
    cumulative = None
    count = 0
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s+)(\S+)", line)
        if m:
            count += 1
            if m.group(4) == "msgflux" and len(m.group(3)) == 1:
                cumulative = int(m.group(2))
    code = ("import sys, time; n = len(sys.modules); t = time.perf_counter(); import msgflux; "
            "print((time.perf_counter() - t) * 1000, len(sys.modules) - n)")
    walls, added = [], 0
    for _ in range(cfg.cold_runs):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=60)
        ms, added_s = proc.stdout.split()
        walls.append(float(ms))
        added = int(added_s)
    return {"importtime_cumulative_us": cumulative, "importtime_lines": count,
            "import_wall_ms": median(walls), "modules_added": added}


# ---------------------------------------------------------------- sections


def capture_bodies(server: Server, mf: Msgflux) -> dict[str, bytes]:
    """One msgflux call per scenario (also a warm-up), then the exact bytes it sent."""
    mf.calls(1)
    mf.stream_once()
    mf.tool_once()
    mf.structs(1)
    return {s: server.last_body(s) for s in ("bench", "bench-stream", "bench-tool",
                                             "bench-struct")}


def sync_section(clients: dict[str, Any], cfg: Config) -> dict[str, Any]:
    n = cfg.sync_calls
    for c in clients.values():
        c.calls(min(50, n))  # warm-up: connections open, caches filled
    ns = interleaved({k: (lambda c=c: c.calls(n)) for k, c in clients.items()}, cfg.trials)
    return {"us_per_call": {k: median(v) / n / 1e3 for k, v in ns.items()}, "trials_ns": ns}


def stream_section(clients: dict[str, Any], cfg: Config) -> dict[str, Any]:
    for name, c in clients.items():
        got = c.stream_once()
        if got != cfg.chunks:
            raise RuntimeError(f"{name} read {got} stream chunks, expected {cfg.chunks}")
    trials = max(cfg.trials, 5)  # one stream is short: a few more trials cost little
    ns = interleaved({k: c.stream_once for k, c in clients.items()}, trials)
    return {"ms_per_stream": {k: median(v) / 1e6 for k, v in ns.items()},
            "us_per_chunk": {k: median(v) / cfg.chunks / 1e3 for k, v in ns.items()},
            "trials_ns": ns}


def tool_section(clients: dict[str, Any], cfg: Config) -> dict[str, Any]:
    expected = json.loads(tool_arguments(cfg.fragments)[0])
    for name, c in clients.items():
        calls = c.tool_once()
        if calls[0]["function"]["arguments"] != expected:
            raise RuntimeError(f"{name} reassembled the tool arguments wrongly")
    reps = cfg.tool_reps
    ns = interleaved({k: (lambda c=c: c.tools(reps)) for k, c in clients.items()}, cfg.trials)
    return {"ms_per_tool_stream": {k: median(v) / reps / 1e6 for k, v in ns.items()},
            "trials_ns": ns}


def struct_section(clients: dict[str, Any], cfg: Config) -> dict[str, Any]:
    n = cfg.struct_calls
    fns: dict[str, Callable[[], object]] = {}
    for k, c in clients.items():
        c.structs(min(20, n))
        fns[k] = lambda c=c: c.structs(n)
        if isinstance(c, Msgflux):
            c.struct_texts(min(20, n))
            fns["msgflux (text)"] = lambda c=c: c.struct_texts(n)
    ns = interleaved(fns, cfg.trials)
    return {"us_per_call": {k: median(v) / n / 1e3 for k, v in ns.items()}, "trials_ns": ns}


async def _drive(one: Callable[[], Awaitable[object]], total: int, concurrency: int) -> None:
    """``total`` requests, ``concurrency`` in flight at any time."""
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def async_section(server: Server, mf: Msgflux, bodies: dict[str, bytes], cfg: Config
                        ) -> dict[str, Any]:
    clients: dict[str, Any] = {"msgflux": mf}
    if have("aiohttp"):
        clients["aiohttp"] = RawAiohttp(server.url, bodies, cfg.concurrency)
    slow: dict[str, Any] = {}
    if cfg.peers and have("openai"):
        slow["openai"] = OpenAIPeer(server.base, cfg.concurrency)
    if cfg.httpx_async and have("httpx"):
        slow["httpx"] = RawHttpxAsync(server.url, bodies, cfg.concurrency)
    total, conc = cfg.async_requests, cfg.concurrency
    try:
        for c in clients.values():  # warm-up: open the whole pool, one full batch
            await _drive(c.aone, max(total, conc * 2), conc)
        for c in slow.values():
            await _drive(c.aone, conc * 2, conc)
        # A batch lasts ~0.2 s, so one busy moment of a neighbour skews a trial: take
        # more trials than elsewhere (cheap) and pair them (see verdicts).
        ns = await ainterleaved(
            {k: (lambda c=c: _drive(c.aone, total, conc)) for k, c in clients.items()},
            max(cfg.trials, 7))
        # The openai SDK and raw httpx are 10-50x slower here (seconds per batch): a few
        # trials of their own, outside the rotation, so they cannot stretch the run.
        for k, c in slow.items():
            ns.update(await ainterleaved({k: lambda c=c: _drive(c.aone, total, conc)},
                                         min(cfg.trials, 3)))
        out: dict[str, Any] = {"req_per_s": {k: total / (median(v) / 1e9)
                                             for k, v in ns.items()}, "trials_ns": ns}
        # async streams, same shape as the sync stream figure
        sclients = {k: c for k, c in {**clients, **slow}.items() if hasattr(c, "astream_once")}
        for name, c in sclients.items():
            got = await c.astream_once()
            if got != cfg.chunks:
                raise RuntimeError(f"{name} async stream read {got} chunks")
        sns = await ainterleaved({k: c.astream_once for k, c in sclients.items()},
                                 max(cfg.trials, 5))
        out["stream_us_per_chunk"] = {k: median(v) / cfg.chunks / 1e3 for k, v in sns.items()}
        out["stream_trials_ns"] = sns
        return out
    finally:
        for k, c in {**clients, **slow}.items():
            if k != "msgflux":
                await c.aclose()
        # msgflux's async pools belong to this loop; asyncio.run closes them at its end.


def rss_section(server: Server, cfg: Config) -> dict[str, float]:
    kinds = ["python", "raw", "msgflux"]
    if cfg.peers and have("openai"):
        kinds.append("openai")
    out = {}
    tiny = asdict(Config.tiny())
    tiny.update(chunks=cfg.chunks, fragments=cfg.fragments)  # the server's, not tiny's
    for kind in kinds:
        # a tiny untimed run first: its only job is to fill the bytecode cache, since
        # compiling modules from source would inflate the measured process's peak
        for sizes in (tiny, asdict(cfg)) if cfg.warmup else (asdict(cfg),):
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--worker", kind,
                 "--worker-config", json.dumps({**sizes, "base": server.base})],
                env=_child_env(), capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"RSS worker {kind} failed:\n{proc.stderr[-2000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])["max_rss_mib"]
    return out


def worker(kind: str, raw_cfg: str) -> None:
    """A process that runs one side of figures 2-6 once, then reports its peak RSS."""
    opts = json.loads(raw_cfg)
    base = opts.pop("base")
    cfg = Config(**opts)
    url = f"{base}/chat/completions"
    port = int(base.split(":")[2].split("/")[0])
    if kind == "msgflux":
        mf = Msgflux(base)
        mf.calls(cfg.sync_calls)
        mf.tools(cfg.tool_reps)
        mf.structs(cfg.struct_calls)
        mf.stream_once()

        async def amain() -> None:
            await _drive(mf.aone, cfg.async_requests, cfg.concurrency)
            await mf.astream_once()
            await mf.text.aclose()
            await mf.stream.aclose()

        asyncio.run(amain())
    elif kind == "raw":
        bodies = {}
        for s in ("bench", "bench-stream", "bench-tool", "bench-struct"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", f"/bench/last/{s}")
            bodies[s] = conn.getresponse().read()
            conn.close()
        raw = RawHttpx(url, bodies)
        raw.calls(cfg.sync_calls)
        raw.tools(cfg.tool_reps)
        raw.structs(cfg.struct_calls)
        raw.stream_once()

        async def araw() -> None:
            a = RawAiohttp(url, bodies, cfg.concurrency)
            await _drive(a.aone, cfg.async_requests, cfg.concurrency)
            await a.astream_once()
            await a.aclose()

        asyncio.run(araw())
    elif kind == "openai":
        peer = OpenAIPeer(base, cfg.concurrency)
        peer.calls(cfg.sync_calls)
        peer.tools(cfg.tool_reps)
        peer.structs(cfg.struct_calls)
        peer.stream_once()

        async def apeer() -> None:
            await _drive(peer.aone, cfg.async_requests, cfg.concurrency)
            await peer.astream_once()
            await peer.aclose()

        asyncio.run(apeer())
    print(json.dumps({"max_rss_mib": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """Peak RSS of this process image.

    VmHWM, not ru_maxrss: a child's ru_maxrss keeps the high-water mark of the
    forked copy of its parent from before exec (Linux carries it over), so every
    worker would report at least the bench process's own size.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ---------------------------------------------------------------- profiling (--profile)


def profile_msgflux(mf: Msgflux, cfg: Config, top: int = 14) -> None:
    """cProfile of the msgflux side of each per-call figure: where the time goes."""
    import cProfile
    import pstats

    async def abatch() -> None:
        await _drive(mf.aone, cfg.async_requests, cfg.concurrency)

    def run_async() -> None:
        asyncio.run(abatch())

    def structs() -> None:
        mf.structs(cfg.struct_calls)

    cases: list[tuple[str, Callable[[], object]]] = [
        (f"sync: {cfg.sync_calls} calls", lambda: mf.calls(cfg.sync_calls)),
        (f"stream: {cfg.chunks} chunks", mf.stream_once),
        (f"tool stream x{cfg.tool_reps}", lambda: mf.tools(cfg.tool_reps)),
        (f"structured: {cfg.struct_calls} calls", structs),
        (f"async: {cfg.async_requests} at {cfg.concurrency}", run_async),
    ]
    for title, fn in cases:
        prof = cProfile.Profile()
        prof.enable()
        fn()
        prof.disable()
        print(f"\n--- profile, msgflux {title} (sorted by own time) ---")
        stats = pstats.Stats(prof)
        stats.sort_stats("tottime").print_stats(top)


# ---------------------------------------------------------------- report


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg": os.getloadavg(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    versions = {}
    for mod in ("msgflux", "msgspec", "httpx", "aiohttp", "openai"):
        if have(mod):
            from importlib.metadata import PackageNotFoundError, version

            with contextlib.suppress(PackageNotFoundError):
                versions[mod] = version(mod)
    info["versions"] = versions
    return info


def paired(trials: dict[str, list[float]], a: str, b: str, op: Callable[[float, float], float]
           ) -> float:
    """Median over rounds of ``op(a_i, b_i)``.

    Trials of one round ran back to back (interleaved), so pairing them cancels the
    slow drifts of a shared machine that a difference of two medians would keep.
    """
    return median([op(x, y) for x, y in zip(trials[a], trials[b], strict=False)])


def _diff(x: float, y: float) -> float:
    return x - y


def _ratio(x: float, y: float) -> float:
    return x / y


def verdicts(fig: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per budget line: floors, msgflux, openai (medians of each), the compared
    figure (paired by round) and its target."""
    rows = []
    cfg = fig["config"]

    def row(name: str, unit: str, floors: dict[str, float], msgflux: float,
            peer: float | None, result: float, result_text: str, target: str, ok: bool) -> None:
        rows.append({"figure": name, "unit": unit, "floors": floors, "msgflux": msgflux,
                     "openai": peer, "result": result, "result_text": result_text,
                     "target": target, "ok": ok})

    cold, tr = fig["cold"]["wall_ms"], fig["cold"]["trials_ms"]
    r = paired(tr, "msgflux", "httpx", _ratio)
    r_std = paired(tr, "msgflux", "http.client", _ratio)
    row("cold: import + model + 1st call", "ms",
        {"httpx": cold["httpx"], "http.client": cold["http.client"]}, cold["msgflux"],
        cold.get("openai"), r, f"{r:.2f}x httpx ({r_std:.2f}x http.client)", "<= 1.3x",
        r <= 1.3)

    s, tr = fig["sync"]["us_per_call"], fig["sync"]["trials_ns"]
    n = cfg["sync_calls"] * 1e3
    over = paired(tr, "msgflux", "httpx", _diff) / n
    over_std = paired(tr, "msgflux", "http.client", _diff) / n
    over_sock = paired(tr, "msgflux", "socket", _diff) / n
    row("sync call (per call)", "us",
        {"httpx": s["httpx"], "http.client": s["http.client"], "socket": s["socket"]},
        s["msgflux"], s.get("openai"), over,
        f"{over:+.0f} us vs httpx ({over_std:+.0f} http.client, {over_sock:+.0f} socket)",
        "<= 60 us", over <= 60)

    a, tr = fig["async"]["req_per_s"], fig["async"]["trials_ns"]
    if "aiohttp" in a:
        ra = paired(tr, "aiohttp", "msgflux", _ratio)  # time ratio = throughput ratio
        floors = {"aiohttp": a["aiohttp"]}
        if "httpx" in a:
            floors["httpx"] = a["httpx"]
        row(f"async {cfg['async_requests']} req @ {cfg['concurrency']}", "req/s", floors,
            a["msgflux"], a.get("openai"), ra, f"{ra:.2f}x aiohttp", ">= 0.7x", ra >= 0.7)

    st, tr = fig["stream"]["us_per_chunk"], fig["stream"]["trials_ns"]
    n = cfg["chunks"] * 1e3
    over = paired(tr, "msgflux", "httpx", _diff) / n
    over_std = paired(tr, "msgflux", "http.client", _diff) / n
    over_sock = paired(tr, "msgflux", "socket", _diff) / n
    row(f"stream, {cfg['chunks']} chunks (per chunk)", "us",
        {"httpx": st["httpx"], "http.client+msgspec": st["http.client"],
         "socket+msgspec": st["socket"]}, st["msgflux"], st.get("openai"), over,
        f"{over:+.2f} us vs httpx ({over_std:+.2f} stdlib, {over_sock:+.2f} socket)",
        "<= 3 us", over <= 3)

    ast = fig["async"].get("stream_us_per_chunk", {})
    if "aiohttp" in ast:
        over = paired(fig["async"]["stream_trials_ns"], "msgflux", "aiohttp", _diff) / n
        row("async stream (per chunk)", "us", {"aiohttp": ast["aiohttp"]}, ast["msgflux"],
            ast.get("openai"), over, f"{over:+.2f} us vs aiohttp", "<= 3 us", over <= 3)

    t, tr = fig["tool"]["ms_per_tool_stream"], fig["tool"]["trials_ns"]
    rt = paired(tr, "msgflux", "httpx", _ratio)
    rt_std = paired(tr, "msgflux", "http.client", _ratio)
    row(f"tool stream, {cfg['fragments']} fragments", "ms",
        {"httpx": t["httpx"], "http.client+msgspec": t["http.client"]}, t["msgflux"],
        t.get("openai"), rt, f"{rt:.2f}x httpx ({rt_std:.2f}x stdlib)", "<= 1.3x", rt <= 1.3)

    sc, tr = fig["struct"]["us_per_call"], fig["struct"]["trials_ns"]
    n = cfg["struct_calls"] * 1e3
    over = paired(tr, "msgflux", "httpx", _diff) / n
    decode = paired(tr, "msgflux", "msgflux (text)", _diff) / n
    row("structured call (per call)", "us",
        {"httpx+json": sc["httpx"], "http.client+json": sc["http.client"]}, sc["msgflux"],
        sc.get("openai"), over,
        f"{over:+.0f} us vs httpx (decode only: {decode:+.0f} vs msgflux text)", "<= 100 us",
        over <= 100)

    if "rss" in fig:
        m = fig["rss"]
        row("peak RSS after workload", "MiB", {"raw": m["raw"], "bare python": m["python"]},
            m["msgflux"], m.get("openai"), m["msgflux"], f"{m['msgflux'] - m['raw']:+.1f} vs raw",
            "<= 60 MiB", m["msgflux"] <= 60)
    return rows


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def print_report(fig: dict[str, Any], out: Any = sys.stdout) -> None:
    info = fig["machine"]
    print(f"\nmachine: {info.get('cpu', '?')}, {info['cpus']} cpus "
          f"({info['usable_cpus']} usable), {info['implementation']} {info['python']}, "
          f"load average {' '.join(f'{x:.2f}' for x in info['loadavg'])} at start, "
          f"{' '.join(f'{x:.2f}' for x in fig['loadavg_end'])} at end", file=out)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()), file=out)
    print(f"config: {fig['config']}", file=out)
    cold = fig["cold"]
    print("\ncold start, median wall ms of a fresh process (phases in-process, ms):", file=out)
    for name, wall in cold["wall_ms"].items():
        ph = cold["phases_ms"].get(name)
        extra = (f"  import {ph['import']:.1f}, build {ph['build']:.1f}, 1st call "
                 f"{ph['call']:.1f}, {ph['modules']:.0f} modules" if ph else "")
        print(f"  {name:<12} {wall:8.1f}{extra}", file=out)
    imp = cold["import"]
    print(f"  import msgflux: {imp['import_wall_ms']:.1f} ms wall, -X importtime cumulative "
          f"{imp['importtime_cumulative_us'] / 1000:.1f} ms, {imp['modules_added']} modules added",
          file=out)
    print(f"\nstructured detail (us/call): {_fmt(fig['struct']['us_per_call'])}", file=out)
    print(f"stream detail (ms/stream): {_fmt(fig['stream']['ms_per_stream'])}", file=out)

    rows = fig["verdicts"]
    header = ("figure", "unit", "floor(s)", "msgflux", "openai", "msgflux vs floor", "target", "")
    table = [header]
    for r in rows:
        floors = ", ".join(f"{_num(v)} {k}" for k, v in r["floors"].items())
        table.append((r["figure"], r["unit"], floors, _num(r["msgflux"]), _num(r["openai"]),
                      r["result_text"], r["target"], "ok" if r["ok"] else "MISS"))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print("", file=out)
    for i, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(),
              file=out)
        if i == 0:
            print("  ".join("-" * w for w in widths), file=out)
    misses = [r["figure"] for r in rows if not r["ok"]]
    print(f"\n{len(rows) - len(misses)}/{len(rows)} targets met"
          + (f"; missed: {', '.join(misses)}" if misses else ""), file=out)


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in d.items())


# ---------------------------------------------------------------- main


def run_all(cfg: Config, *, profile: bool = False, log: Any = sys.stderr) -> dict[str, Any]:
    """Every figure, in one run against one server. Returns the figures dict."""
    fig: dict[str, Any] = {"machine": machine_info(), "config": asdict(cfg)}
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    peers = cfg.peers and have("openai")
    for mod in ("httpx",):
        if not have(mod):
            raise SystemExit(f"bench needs {mod}: pip install -e '.[bench]'")

    def step(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=log, flush=True)

    with running_server(cfg) as server:
        mf = Msgflux(server.base)
        bodies = capture_bodies(server, mf)
        step("cold start")
        fig["cold"] = cold_start(server, bodies["bench"], cfg)
        raw = RawHttpx(server.url, bodies)
        std = RawStdlib(server.port, bodies)
        sock = RawSocket(server.port, bodies)
        sync_clients: dict[str, Any] = {"msgflux": mf, "httpx": raw, "http.client": std}
        peer = OpenAIPeer(server.base, cfg.concurrency) if peers else None
        if peer is not None:
            sync_clients["openai"] = peer
        try:
            step("sync calls")
            fig["sync"] = sync_section({**sync_clients, "socket": sock}, cfg)
            step("stream")
            fig["stream"] = stream_section({**sync_clients, "socket": sock}, cfg)
            step("tool stream")
            fig["tool"] = tool_section(sync_clients, cfg)
            step("structured")
            fig["struct"] = struct_section(sync_clients, cfg)
            step("async")
            fig["async"] = asyncio.run(async_section(server, mf, bodies, cfg))
            if cfg.rss:
                step("peak RSS")
                fig["rss"] = rss_section(server, cfg)
            if profile:
                profile_msgflux(mf, cfg)
        finally:
            raw.close()
            std.close()
            sock.close()
            mf.close()
            if peer is not None:
                peer.close()
    fig["loadavg_end"] = os.getloadavg()
    fig["verdicts"] = verdicts(fig)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="msgflux vs raw-HTTP floors on a local server")
    ap.add_argument("--quick", action="store_true", help="fewer trials (< 60 s)")
    ap.add_argument("--json", metavar="PATH", help="also write every figure as JSON")
    ap.add_argument("--profile", action="store_true",
                    help="after the figures, cProfile the msgflux side of each one")
    ap.add_argument("--peers", action=argparse.BooleanOptionalAction, default=None,
                    help="the openai SDK column (default: on, off with --quick; skipped when "
                    "openai is not installed)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.worker_config)
        return 0
    cfg = Config.quick() if args.quick else Config()
    if args.peers is not None:
        cfg.peers = args.peers
    t0 = time.monotonic()
    fig = run_all(cfg, profile=args.profile)
    fig["elapsed_s"] = time.monotonic() - t0
    print_report(fig)
    print(f"\nelapsed {fig['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
