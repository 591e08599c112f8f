"""A small asyncio echo server for load and batch tests (no tests here).

It runs in a thread on 127.0.0.1 and answers every chat completion with
``echo:<last message>`` (whole or streamed), so a response handed to the wrong
caller is caught. ``delay`` holds each answer back (seconds); a prompt
starting with ``status:<code>`` is answered with that HTTP error instead, and
``headers`` are added to every answer (rate-limit headers, say).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time


class EchoServer:
    """HTTP/1.1 keep-alive server answering chat completions with ``echo:<last message>``."""

    def __init__(self, delay: float = 0.0, headers: dict[str, str] | None = None) -> None:
        self.delay = delay
        self.extra = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode())
                              for k, v in (headers or {}).items())
        self.loop = asyncio.new_event_loop()
        self._handlers: set[asyncio.Task] = set()
        self.requests = 0
        self.prompts: list[str] = []
        self.open_connections = 0
        self.total_connections = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="echo-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("echo server did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=2048)
            self.port = self.server.sockets[0].getsockname()[1]
            self._ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._handlers.add(asyncio.current_task())
        self.open_connections += 1
        self.total_connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = json.loads(await reader.readexactly(length))
                self.requests += 1
                prompt = body["messages"][-1]["content"]
                self.prompts.append(prompt)
                if self.delay:
                    await asyncio.sleep(self.delay)
                text = "echo:" + prompt
                if prompt.startswith("status:"):
                    status = int(prompt.split(":")[1])
                    payload = json.dumps({"error": {"message": "scripted", "type": "x"}}).encode()
                    writer.write(b"HTTP/1.1 %d Error\r\nContent-Type: application/json\r\n"
                                 b"%sContent-Length: %d\r\n\r\n%s"
                                 % (status, self.extra, len(payload), payload))
                elif body.get("stream"):
                    writer.write(self._stream(text))
                else:
                    payload = json.dumps({
                        "id": "c", "model": "echo", "choices": [{
                            "index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                  "total_tokens": 2}}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"%sContent-Length: %d\r\n\r\n%s"
                                 % (self.extra, len(payload), payload))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            writer.close()

    @staticmethod
    def _stream(text: str) -> bytes:
        pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
        events = [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                  for p in pieces]
        events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        body = b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in events)
        body += b"data: [DONE]\n\n"
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 64]), body[i:i + 64])
                          for i in range(0, len(body), 64))
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")

    def wait_idle(self, timeout: float = 15.0) -> int:
        """Open server-side connections after waiting (bounded) for closes to land."""
        deadline = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.open_connections

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            # Connections a client left open (a killed process's): end their handlers
            # here, on a running loop, not when a closed loop's leftovers are collected.
            handlers = [t for t in self._handlers if not t.done()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
