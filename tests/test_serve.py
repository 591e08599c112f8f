"""``msgflux serve``: the embedded engine as an OpenAI/Anthropic-compatible HTTP server.

The server runs as a subprocess, exactly as users start it, on 127.0.0.1 with a
free port; real clients talk to it: the ``openai`` SDK, ``msgflux`` itself through
``OPENAI_BASE_URL`` and ``ANTHROPIC_BASE_URL``, and raw sockets where the bytes matter.
Every server is stopped at the end (SIGINT or SIGTERM, checked to exit cleanly).
Structure is asserted, never the small model's wording.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

pytest.importorskip("xllamacpp")
openai = pytest.importorskip("openai")

KEY = "sk-serve-test-0123456789"
TIMEOUT = 60
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


class Served:
    """A ``msgflux serve`` subprocess; ``url`` is its root, read from its stderr."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MSGFLUX_API_KEY"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "msgflux", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )
        self.log: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()  # type: ignore[union-attr]
            if not line:
                break
            self.log.append(line)
            match = re.search(r"serving \S+ at (http://127\.0\.0\.1:\d+)/v1", line)
            if match:
                self.url = match[1]
                return
        self.proc.kill()
        raise AssertionError(f"the server did not start: {''.join(self.log)}")

    def stop(self, sig: int | None = signal.SIGINT) -> tuple[int, str]:
        """Send ``sig`` (None: it was sent already); the exit code and the rest of stderr."""
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, err


def port_is_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def get(url: str, key: str | None = KEY) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    server = Served("--api-key", KEY, "--parallel", "2", "--ctx-size", "2048")
    yield server
    code, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert not port_is_open(server.url)


@pytest.fixture
def client(served: Served) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0,
                       timeout=TIMEOUT) as c:
        yield c


# ---------------------------------------------------------------- the openai SDK


def test_models_and_health(client: openai.OpenAI, served: Served) -> None:
    assert served.log[0].startswith("msgflux: loading SmolLM2-135M-Instruct.Q4_1.gguf (98 MB)")
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct.Q4_1"]
    status, body = get(served.url + "/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_chat_and_stream(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Name a colour."}]
    reply = client.chat.completions.create(model="any", messages=messages, max_tokens=16)
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(
        model="any", messages=messages, max_tokens=16, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].usage is not None
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_tools_and_response_format(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=WEATHER, tool_choice="required", max_tokens=64)
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}},
              "required": ["name"], "additionalProperties": False}
    reply = client.chat.completions.create(
        model="any", messages=[{"role": "user", "content": "Invent a person."}], max_tokens=64,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "p", "strict": True, "schema": schema}})
    assert set(json.loads(reply.choices[0].message.content)) == {"name"}


def test_every_route_needs_the_key(served: Served) -> None:
    for path in ("/health", "/v1/models"):
        assert get(served.url + path, key=None)[0] == 401
        assert get(served.url + path, key="sk-wrong")[0] == 401
    with openai.OpenAI(base_url=served.url + "/v1", api_key="sk-wrong", max_retries=0) as bad, \
            pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}])


def test_admin_routes_are_not_forwarded(served: Served) -> None:
    for path in ("/slots", "/metrics", "/lora-adapters"):
        assert get(served.url + path)[0] == 404


# ---------------------------------------------------------------- msgflux as the client


def test_msgflux_through_openai_base_url(served: Served) -> None:
    env = {**os.environ, "OPENAI_BASE_URL": served.url + "/v1", "OPENAI_API_KEY": KEY}
    result = subprocess.run(
        [sys.executable, "-m", "msgflux", "chat", "-m", "openai/local", "--max-tokens", "8",
         "Say hi."], input="", capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_msgflux_through_the_anthropic_messages_route(served: Served) -> None:
    import msgflux as mf

    model = mf.Model.chat_completion("anthropic/local", base_url=served.url, api_key=KEY,
                                     max_tokens=8)
    try:
        response = model("Say hi.")
        assert isinstance(response.consume(), str)
        assert response.metadata.usage.completion_tokens > 0
    finally:
        model.close()


# ---------------------------------------------------------------- raw bytes


def test_keep_alive_and_a_malformed_request(served: Served) -> None:
    parts = urlsplit(served.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        request = (f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                   "\r\n").encode()
        sock.sendall(request + request)  # pipelined: both answered, in order
        data = b""
        while data.count(b'{"status":"ok"}') < 2:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 400")


def test_a_connection_idle_longer_than_the_engine_keeps_its_own(served: Served) -> None:
    # The engine drops a connection idle for 5 s; the front must open a new one
    # for the client's next request, not answer it with a 502.
    parts = urlsplit(served.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        for pause in (0.0, 6.0):
            time.sleep(pause)
            conn.request("GET", "/health", headers={"Authorization": f"Bearer {KEY}"})
            response = conn.getresponse()
            assert (response.status, response.read()) == (200, b'{"status":"ok"}')
    finally:
        conn.close()


# ---------------------------------------------------------------- startup and shutdown


def test_another_host_needs_a_key() -> None:
    # Refused before anything is loaded or bound.
    result = subprocess.run([sys.executable, "-m", "msgflux", "serve", "--host", "0.0.0.0"],
                            input="", capture_output=True, text=True, timeout=TIMEOUT,
                            env={k: v for k, v in os.environ.items() if k != "MSGFLUX_API_KEY"})
    assert result.returncode == 2
    assert result.stderr.startswith("msgflux: error: ") and "--api-key" in result.stderr


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "msgflux", "serve", "--port", str(port), "--ctx-size", "256"],
            input="", capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2, result.stderr
    assert f"msgflux: error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigint_lets_a_request_in_flight_finish() -> None:
    server = Served("--ctx-size", "512")  # loopback: no key needed
    sent = False
    try:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                           timeout=TIMEOUT) as c:
            stream = c.chat.completions.create(
                model="any", messages=[{"role": "user", "content": "Tell me a story."}],
                max_tokens=24, stream=True)
            first = next(iter(stream))  # the answer has started
            server.proc.send_signal(signal.SIGINT)
            sent = True
            rest = list(stream)
        assert first.choices and rest[-1].choices[0].finish_reason == "length"
    finally:
        code, err = server.stop(None if sent else signal.SIGINT)
    assert code == 0, err
    assert "msgflux: stopped" in err
    assert not port_is_open(server.url)


# ---------------------------------------------------------------- the front in process


def test_an_abandoned_stream_stops_the_engine(llama_server: Any) -> None:
    # The client goes away after the first bytes of a long answer: the front closes
    # its engine connection, and llama.cpp stops generating at its next token.
    from msgflux.serve import Front

    def metric(name: str) -> float:
        text = urllib.request.urlopen(llama_server.root_url + "/metrics", timeout=30).read()
        return float(re.search(rf"^llamacpp:{name} (\S+)$", text.decode(), re.M)[1])

    async def scenario() -> None:
        front = Front(llama_server, "127.0.0.1", 0)
        await front.start()
        try:
            port = int(front.url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            body = json.dumps({"messages": [{"role": "user", "content": "Tell me a story."}],
                               "max_tokens": 1000, "stream": True}).encode()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(body), body))
            assert b"200 OK" in await reader.readuntil(b"\r\n\r\n")
            await reader.readuntil(b"\n\n")  # the first event
            writer.close()
        finally:
            await front.stop(grace=30)

    before = metric("tokens_predicted_total")
    asyncio.run(scenario())
    deadline = time.monotonic() + 60
    while metric("requests_processing") > 0:
        assert time.monotonic() < deadline, "the engine never stopped"
        time.sleep(0.05)
    assert metric("tokens_predicted_total") - before < 1000
