"""The batch runner: order, per-item errors, checkpoints that survive kill -9, SIGINT and
SIGTERM, rate limits (sans-I/O and against a server), progress, the CLI, and real
calls on the llama.cpp server (structured output, tools, the gateway)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

import msgflux as mf
from echo_server import EchoServer
from msgflux.batch import BatchItem
from msgflux.batch.limits import RateLimiter, parse_reset
from signals import sigint_not_ignored
from test_faults_support import FAST

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def echo():
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


def echo_model(server: EchoServer, **kwargs):
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion("openai/echo", base_url=server.url, api_key="sk-batch",
                                    **kwargs)


def rows(path: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM msgflux_batch WHERE ok = 1").fetchone()[0]


def wait_for_rows(path: str, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run never stored anything"
        if os.path.exists(path):
            try:
                if rows(path) >= n:
                    return
            except sqlite3.OperationalError:  # the table is being created
                pass
        time.sleep(0.02)


# ---------------------------------------------------------------- order and errors


INPUTS = [
    "first",
    [{"role": "user", "content": "second"}],
    {"id": "third-id", "messages": "third", "system_prompt": "be brief"},
    {"id": "no-messages", "prompt": "x"},
    "status:400",
    42,
    {"id": 7, "messages": "seventh"},
]


def check_results(result) -> None:
    assert len(result) == len(INPUTS)
    items = list(result)
    assert [i.index for i in items] == list(range(len(INPUTS)))
    assert [i.output for i in items] == ["echo:first", "echo:second", "echo:third", None, None,
                                         None, "echo:seventh"]
    assert items[2].id == "third-id" and items[6].id == 7 and items[3].id == "no-messages"
    assert items[0].usage == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert items[3].error.type == "InvalidParameterError"
    assert items[4].error.type == "BadRequestError" and items[4].error.status == 400
    assert items[5].error.type == "InvalidParameterError"
    s = result.summary
    assert (s.items, s.succeeded, s.failed) == (7, 4, 3)
    assert s.errors == {"InvalidParameterError": 2, "BadRequestError": 1}
    assert result[-1].output == "echo:seventh" and len(result.errors()) == 3


def test_sync_batch_keeps_input_order_and_each_items_error(echo) -> None:
    with echo_model(echo) as model:
        result = model.batch(INPUTS, concurrency=3)
    check_results(result)
    assert "be brief" not in echo.prompts  # the system prompt is not the last message


def test_async_batch_with_a_checkpoint_reads_back_the_same(echo, tmp_path) -> None:
    model = echo_model(echo)

    async def main():
        try:
            return await model.abatch(INPUTS, concurrency=2, checkpoint=tmp_path / "a.db")
        finally:
            await model.aclose()

    check_results(asyncio.run(main()))


def test_a_rerun_does_only_what_is_missing_or_failed_or_changed(echo, tmp_path) -> None:
    ckpt = str(tmp_path / "run.db")
    prompts = [f"p{i}" for i in range(30)]
    prompts[5] = "status:503"
    with echo_model(echo) as model:
        first = model.batch(prompts, checkpoint=ckpt, concurrency=4)
        assert first.summary.failed == 1
        asked = echo.requests
        prompts[5] = "fixed"
        prompts[9] = "changed"  # a different input at an index already done
        again = model.batch(prompts, checkpoint=ckpt, concurrency=4)
    assert echo.requests - asked == 2
    assert echo.prompts[-2:] in (["fixed", "changed"], ["changed", "fixed"])
    assert again.summary.resumed == 28 and again.summary.failed == 0
    assert again.outputs() == [f"echo:{p}" for p in prompts]


def test_bad_batch_arguments_fail_before_anything_runs(echo) -> None:
    with echo_model(echo) as model:
        for kwargs in ({"concurrency": 0}, {"rpm": -1}, {"stream": True},
                       {"checkpoint": 3.5}):
            with pytest.raises(mf.exceptions.InvalidParameterError):
                model.batch(["x"], **kwargs)
    assert echo.requests == 0


# ---------------------------------------------------------------- crash and resume

CRASHER = textwrap.dedent("""
    import sys
    import msgflux as mf
    url, ckpt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = mf.Model.chat_completion("openai/echo", base_url=url, api_key="k")
    model.batch([f"p{i}" for i in range(n)], checkpoint=ckpt, concurrency=4, progress=False)
""")


def test_kill_9_mid_run_leaves_a_consistent_checkpoint_and_a_rerun_finishes(tmp_path) -> None:
    server = EchoServer(delay=0.01)
    ckpt, n = str(tmp_path / "crash.db"), 600
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, server.url, ckpt, str(n)],
                            env={**os.environ, "PYTHONPATH": SRC})
    try:
        wait_for_rows(ckpt, 40, proc)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
        with sqlite3.connect(ckpt) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = rows(ckpt)
        assert 40 <= kept < n
        server.delay = 0.0
        asked = server.requests
        with echo_model(server) as model:
            result = model.batch([f"p{i}" for i in range(n)], checkpoint=ckpt, concurrency=8)
        assert server.requests - asked == n - kept  # only what was missing
        assert result.summary.resumed == kept
        assert result.outputs() == [f"echo:p{i}" for i in range(n)]
    finally:
        proc.kill() if proc.poll() is None else None
        server.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_cli_stops_cleanly_on_sigint_and_sigterm_and_resumes(tmp_path, signum) -> None:
    # 500 calls of 50 ms, 4 at a time: ~6 s, so the signal (sent once 40 are stored) finds
    # the run going even on a loaded machine; the resumed run is instant.
    server = EchoServer(delay=0.05)
    n = 500
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": f"row{i}", "messages": f"p{i}"}) + "\n"
                              for i in range(n)))
    ckpt = str(out) + ".checkpoint.db"
    cmd = [sys.executable, "-m", "msgflux", "batch", str(source), "-o", str(out), "-m",
           "openai/echo", "--base-url", server.url, "--concurrency", "4"]
    env = {**os.environ, "PYTHONPATH": SRC, "OPENAI_API_KEY": "k"}
    with sigint_not_ignored():
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(ckpt, 40, proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "run the same command again" in err
        kept = rows(ckpt)
        # Every answer that reached the client was committed on the way out: at most the
        # calls in flight are lost (a commit every 0.25 s would lose ~20 at this pace).
        assert kept >= server.requests - 4
        assert not out.exists()
        asked = server.requests
        server.delay = 0.0
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert server.requests - asked == n - kept
    finally:
        proc.kill() if proc.poll() is None else None
        server.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(d["id"], d["output"]) for d in lines] == [(f"row{i}", f"echo:p{i}")
                                                       for i in range(n)]
    assert set(lines[0]) == {"index", "id", "output", "response_type", "usage", "cost",
                             "finish_reason", "model", "error"}
    assert not os.path.exists(ckpt)  # the default checkpoint goes once all succeeded


def test_the_cli_writes_errors_and_exits_1(tmp_path, echo) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('"hello"\n\n{not json\n{"id": 3, "messages": "status:400"}\n')
    env = {**os.environ, "PYTHONPATH": SRC, "OPENAI_API_KEY": "k"}
    done = subprocess.run([sys.executable, "-m", "msgflux", "batch", str(source), "-o",
                           str(out), "-m", "openai/echo", "--base-url", echo.url],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "1 ok, 2 failed" in done.stderr
    lines = [msgspec.json.decode(line, type=BatchItem) for line in out.read_text().splitlines()]
    assert lines[0].output == "echo:hello" and lines[0].error is None
    assert lines[1].error.type == "InvalidParameterError" and "line 3" in lines[1].error.message
    assert lines[2].id == 3 and lines[2].error.status == 400
    assert os.path.exists(str(out) + ".checkpoint.db")  # kept: a rerun retries the failures


# ---------------------------------------------------------------- rate limits


def pace(limiter: RateLimiter, seconds: float, tokens: int = 0) -> int:
    """Calls admitted in ``seconds`` of simulated time, each ending at once."""
    now, started = 0.0, 0
    while now < seconds:
        wait = limiter.admit(now, tokens)
        assert wait is not None
        if wait:
            now += wait
            continue
        started += 1
        limiter.release(now, tokens, tokens, ok=True)
    return started


def test_requests_and_tokens_per_minute_are_paced() -> None:
    assert pace(RateLimiter(8, rpm=120), 60) in range(120, 124)  # + a one-second burst
    assert pace(RateLimiter(8, tpm=6000), 60, tokens=100) in range(60, 64)
    assert pace(RateLimiter(8, rpm=600, tpm=6000), 60, tokens=100) in range(60, 64)


def test_429_pauses_everyone_and_halves_the_window_then_grows_back() -> None:
    limiter = RateLimiter(16)
    assert all(limiter.admit(0.0, 0) == 0.0 for _ in range(16))
    assert limiter.admit(0.0, 0) is None  # the window is full
    limiter.observe(0.0, 429, [("retry-after", "2")])
    limiter.observe(0.1, 429, [("retry-after", "2")])  # the same burst: one cut
    assert limiter.window == 8 and limiter.throttles == 2
    for _ in range(16):
        limiter.release(0.5, 0, None, ok=False)
    assert limiter.admit(0.5, 0) == pytest.approx(1.6)  # everyone waits out retry-after
    for _ in range(8):
        assert limiter.admit(2.1, 0) == 0.0
    assert limiter.admit(2.1, 0) is None
    for _ in range(8):
        limiter.release(2.2, 0, None, ok=True)
    assert limiter.window == 9


def test_rate_limit_headers_pause_until_the_reset() -> None:
    limiter = RateLimiter(4)
    limiter.observe(10.0, 200, [("x-ratelimit-remaining-requests", "5"),
                                ("x-ratelimit-reset-requests", "30s")])
    assert limiter.pause_until == 0.0
    limiter.observe(10.0, 200, [("x-ratelimit-remaining-requests", "0"),
                                ("x-ratelimit-reset-requests", "1m30s")])
    assert limiter.pause_until == pytest.approx(70.0)  # capped at a minute
    limiter = RateLimiter(4)
    limiter.observe(0.0, 200, [("anthropic-ratelimit-tokens-remaining", "0"),
                               ("anthropic-ratelimit-tokens-reset", "2030-01-01T00:00:02Z")])
    assert limiter.pause_until == pytest.approx(60.0)
    assert parse_reset("59.5ms") == pytest.approx(0.0595)
    assert parse_reset("6m0s") == 360 and parse_reset("1h2m3s") == 3723
    assert parse_reset("2020-01-01T00:00:00Z", wall_now=1577836805.0) == 0.0
    assert parse_reset("1577836810", wall_now=1577836805.0) == 5.0
    assert parse_reset("soon") is None and parse_reset("-3") is None


def test_a_throttling_server_is_seen_by_all_workers(tmp_path) -> None:
    server = EchoServer(headers={"x-ratelimit-remaining-requests": "0",
                                 "x-ratelimit-reset-requests": "20ms", "retry-after": "0"})
    try:
        model = echo_model(server, max_retries=mf.RetryPolicy(max_retries=1,
                                                               retry_after_max=0.01))
        with model:
            result = model.batch(["a", "status:429", "b", "c"], concurrency=4, rpm=6000)
    finally:
        server.close()
    assert result.outputs() == ["echo:a", None, "echo:b", "echo:c"]
    assert result[1].error.type == "RateLimitError"
    assert result.summary.throttled == 2  # the first answer and its retry


# ---------------------------------------------------------------- progress


def test_progress_bar_shows_rate_errors_and_tokens(echo, capsys) -> None:
    bar = io.StringIO()
    with echo_model(echo) as model:
        model.batch(["a", "b", "status:400"], progress=bar)
        model.batch(["a", "b"])  # stderr is not a terminal here: no bar
    text = bar.getvalue()
    assert "3/3" in text and "errors=1" in text and "tokens=4" in text and "item/s" in text
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- real model


class City(msgspec.Struct):
    name: str
    country: str


TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


def test_structured_tools_and_the_gateway_on_the_real_server(openai_env) -> None:
    model = mf.Model.chat_completion("openai/gpt-4o", max_tokens=48, temperature=0)
    with model:
        cities = model.batch(["The capital of France?", "The capital of Japan?"],
                             generation_schema=City, system_prompt="Answer in JSON.")
        calls = model.batch(["Weather in Paris?"], tool_schemas=[TOOL], tool_choice="required")
    assert cities.summary.failed == 0
    assert all(set(item.output) == {"name", "country"} for item in cities)
    assert cities[0].response_type == "structured" and cities[0].usage["total_tokens"] > 0
    (call,) = calls[0].output
    assert call["function"]["name"] == "get_weather" and calls[0].response_type == "tool_call"
    down = mf.Model.chat_completion("openai/gpt-4o", base_url="http://127.0.0.1:9/v1",
                                    max_retries=0, max_tokens=8, temperature=0)
    gateway = mf.ModelGateway([down, mf.Model.chat_completion("openai/gpt-4o", max_tokens=8,
                                                              temperature=0)])
    via = gateway.batch(["Say hi", "Say bye"], concurrency=2)  # each item falls back
    assert via.summary.failed == 0
    assert all(isinstance(text, str) and text for text in via.outputs())
    gateway.close()


def test_the_embedded_engine_runs_as_many_calls_as_it_has_slots() -> None:
    engine = mf.Model.chat_completion("llamacpp/smollm2", n_parallel=3)
    assert engine._slots() == 3  # built, not started: the default concurrency of its batches
    assert mf.Model.chat_completion("llamacpp/smollm2")._slots() == 1
    assert mf.Model.chat_completion("openai/x", api_key="k")._slots() == 16
