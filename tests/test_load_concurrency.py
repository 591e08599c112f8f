"""Load: many concurrent calls on one model instance, cache on.

A small asyncio echo server (in a thread, 127.0.0.1) answers every request
with the request's own id, so a response handed to the wrong caller is
caught. Checked: no lost or mixed-up responses (1,000 concurrent async calls,
8 threads of sync calls, whole and streamed), the cache serves hits while
under load, and no connection or file descriptor outlives ``close()`` /
``aclose()`` or the ``with`` / ``async with`` blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import msgflux as mf
from echo_server import EchoServer
from test_faults_support import open_fds, settle_fds

# An unclosed socket anywhere (even in a __del__) fails the test.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def model_for(server: EchoServer, **kwargs):
    kwargs.setdefault("enable_cache", True)
    kwargs.setdefault("cache_size", 4096)
    return mf.Model.chat_completion("openai/echo-model", base_url=server.url, api_key="sk-load",
                                    max_retries=0, timeout=30, **kwargs)


# ---------------------------------------------------------------- async


def test_a_thousand_concurrent_async_calls_on_one_model(echo) -> None:
    model = model_for(echo)
    baseline = open_fds()

    async def main() -> None:
        ids = [f"req-{i}" for i in range(1000)]
        results = await asyncio.wait_for(
            asyncio.gather(*(model.acall(i) for i in ids)), 60)
        assert [r.consume() for r in results] == [f"echo:{i}" for i in ids]
        assert echo.requests == 1000
        # The same 1,000 again, concurrently: all from the cache, still matched.
        again = await asyncio.wait_for(asyncio.gather(*(model.acall(i) for i in ids)), 60)
        assert [r.consume() for r in again] == [f"echo:{i}" for i in ids]
        assert echo.requests == 1000
        await model.aclose()

    asyncio.run(main())  # each gather is bounded by wait_for: a hang fails, slowness does not
    info = model._response_cache.cache_info()
    assert info["hits"] == 1000 and info["currsize"] == 1000
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


def test_concurrent_async_streams_are_not_mixed(echo) -> None:
    model = model_for(echo)
    baseline = open_fds()

    async def one(i: int) -> tuple[str, str]:
        r = await model.acall(f"stream-{i}-" + "x" * (i % 13), stream=True)
        text = "".join([c async for c in r.consume()])
        assert r.data == text
        return f"echo:stream-{i}-" + "x" * (i % 13), text

    async def main() -> None:
        async with model:
            pairs = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 60)
            assert all(want == got for want, got in pairs)

    asyncio.run(main())
    assert echo.requests == 300
    assert echo.wait_idle() == 0  # async with closed the pool
    assert settle_fds(baseline) <= baseline


def test_cancelled_async_calls_leak_nothing(echo) -> None:
    model = model_for(echo, enable_cache=False)
    baseline = open_fds()

    async def main() -> None:
        tasks = [asyncio.ensure_future(model.acall(f"c{i}")) for i in range(200)]
        await asyncio.sleep(0.01)
        for task in tasks[::2]:
            task.cancel()
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        for i, result in enumerate(done):
            if isinstance(result, BaseException):
                assert isinstance(result, asyncio.CancelledError)
            else:
                assert result.consume() == f"echo:c{i}"
        # The model still works after the cancellations.
        assert (await model.acall("after")).consume() == "echo:after"
        await model.aclose()

    asyncio.run(main())
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


# ---------------------------------------------------------------- threads


def test_eight_threads_of_sync_calls_on_one_model(echo) -> None:
    model = model_for(echo)
    baseline = open_fds()
    errors: list[BaseException] = []

    def worker(t: int) -> int:
        done = 0
        for i in range(60):
            key = f"t{t}-{i}" if i % 3 else f"shared-{i}"  # a third are shared: cache hits
            try:
                r = model(key)
                assert r.consume() == f"echo:{key}"
                s = model(f"{key}-s", stream=True)
                assert "".join(s.consume()) == f"echo:{key}-s"
                done += 1
            except BaseException as e:  # reported below; the thread must not die silently
                errors.append(e)
        return done

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(worker, range(8), timeout=60))
    assert not errors, errors[:3]
    assert counts == [60] * 8
    info = model._response_cache.cache_info()
    assert info["hits"] + info["misses"] == 8 * 60 * 2  # streams are looked up too
    # Threads racing on one key may all miss (no request coalescing); once
    # stored, every thread gets hits and the server sees nothing more.
    before = echo.requests
    with ThreadPoolExecutor(8) as pool:
        again = list(pool.map(lambda i: model(f"shared-{i * 3}").consume(),
                              [i % 20 for i in range(160)], timeout=60))
    assert again == [f"echo:shared-{(i % 20) * 3}" for i in range(160)]
    assert echo.requests == before
    model.close()
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


def test_threads_and_async_share_one_model(echo) -> None:
    model = model_for(echo, enable_cache=False)
    baseline = open_fds()

    def sync_side() -> list[str]:
        return [model(f"s{i}").consume() for i in range(100)]

    async def async_side() -> list[str]:
        rs = await asyncio.gather(*(model.acall(f"a{i}") for i in range(200)))
        await model.aclose()
        return [r.consume() for r in rs]

    with ThreadPoolExecutor(2) as pool:
        fut = pool.submit(sync_side)
        got_async = asyncio.run(async_side())
        got_sync = fut.result(60)
    assert got_sync == [f"echo:s{i}" for i in range(100)]
    assert got_async == [f"echo:a{i}" for i in range(200)]
    model.close()
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


# ---------------------------------------------------------------- closing


def test_with_block_closes_the_sync_pool(echo) -> None:
    baseline = open_fds()
    with model_for(echo) as model:
        for i in range(20):
            assert model(f"w{i}").consume() == f"echo:w{i}"
        assert echo.open_connections >= 1  # kept alive while the model is open
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline
    # A closed model reopens on demand.
    assert model("again").consume() == "echo:again"
    model.close()
    assert echo.wait_idle() == 0


def test_async_with_block_closes_the_async_pool(echo) -> None:
    baseline = open_fds()

    async def main() -> None:
        async with model_for(echo) as model:
            rs = await asyncio.gather(*(model.acall(f"aw{i}") for i in range(50)))
            assert [r.consume() for r in rs] == [f"echo:aw{i}" for i in range(50)]
            assert echo.open_connections >= 1

    asyncio.run(main())
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


def test_abandoned_streams_release_their_connections(echo) -> None:
    model = model_for(echo, enable_cache=False)
    baseline = open_fds()
    for i in range(30):
        r = model(f"abandon-{i}", stream=True)
        next(iter(r.consume()))  # read one chunk, then walk away
        r.close()

    async def main() -> None:
        for i in range(30):
            r = await model.acall(f"aabandon-{i}", stream=True)
            async for _ in r.consume():
                break
            await r.aclose()
        await model.aclose()

    asyncio.run(main())
    model.close()
    assert echo.wait_idle() == 0
    assert settle_fds(baseline) <= baseline


# ---------------------------------------------------------------- faults under load


def test_failing_calls_leave_no_descriptors_behind() -> None:
    from scripted_server import ScriptedServer, drop, json_reply, reset, sse_reply, stall
    from test_faults_support import chunk, completion

    def script(srv) -> None:
        for _ in range(6):
            reply = sse_reply([chunk("a"), chunk("b"), chunk(finish="stop"), "data: [DONE]\n\n"])
            body = b"".join(step[1] for step in reply.steps if step[0] == "write")
            first_event_end = body.index(b"\n\n", body.index(b'"a"')) + 4
            # Each round ends with a close, so the next starts on a fresh connection
            # (a close without a byte on a reused one is re-sent once, transparently).
            srv.enqueue(drop(), reset(), stall(2), json_reply(500, {"error": "x"}),
                        reply.drop_after(first_event_end),
                        json_reply(200, completion("fine")).then_close())

    # Only the stalled call gets a short first-byte limit (far below the 2 s stall): the
    # others answer at once and must not fail because a busy machine was slow to do so.
    rounds = [(False, {}), (False, {}), (False, {"timeout": {"first_byte": 0.1}}),
              (False, {}), (True, {}), (False, {})]
    with ScriptedServer() as srv:
        script(srv)
        model = mf.Model.chat_completion("openai/m", base_url=srv.url + "/v1", api_key="k",
                                         max_retries=0)
        baseline = open_fds()
        outcomes = []
        for _ in range(6):
            for stream, kwargs in rounds:
                try:
                    r = model("hi", stream=stream, **kwargs)
                    outcomes.append("".join(r.consume()) if stream else r.consume())
                except mf.exceptions.MsgfluxError as e:
                    outcomes.append(type(e).__name__)
        model.close()
        assert outcomes == ["APIConnectionError", "APIConnectionError", "FirstByteTimeoutError",
                            "ServerError", "StreamError", "fine"] * 6
        assert settle_fds(baseline) <= baseline
        script(srv)

        async def main() -> list[str]:
            out = []
            for _ in range(6):
                for stream, kwargs in rounds:
                    try:
                        r = await model.acall("hi", stream=stream, **kwargs)
                        out.append("".join([c async for c in r.consume()]) if stream
                                   else r.consume())
                    except mf.exceptions.MsgfluxError as e:
                        out.append(type(e).__name__)
            await model.aclose()
            return out

        assert asyncio.run(main()) == outcomes
        assert settle_fds(baseline) <= baseline
