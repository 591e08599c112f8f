"""Shared helpers of the fault, security, fuzz and load suites (no tests here).

Everything goes through the public model API against the loopback
:class:`scripted_server.ScriptedServer`, with a retry policy whose backoff is a
few milliseconds so retries cost nothing.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgflux as mf
from scripted_server import Reply

# Backoff of a millisecond or two; Retry-After capped at 50 ms.
FAST = mf.RetryPolicy(max_retries=3, backoff_base=0.001, backoff_max=0.002, retry_after_max=0.05)
DONE = "data: [DONE]\n\n"
# How long a stalled scripted server stays silent (its thread is freed as soon as the
# test's server closes, so a long stall costs nothing). A test bounds the elapsed time by
# STALL / 2: that proves "did not wait for the stall" however loaded the machine is.
STALL = 30.0
RETRYABLE = (408, 409, 429, 500, 502, 503, 504, 529)
NOT_RETRIED = (400, 401, 403, 404, 422)


def completion(text: str = "ok", **message: Any) -> dict:
    return {"id": "c1", "model": "m", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, **message},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict:
    if content is not None:
        delta["content"] = content
    return {"id": "s1", "model": "m", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool_chunk(index: int, *, id: str | None = None, name: str | None = None,
               arguments: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "type": "function", "function": {}}
    if id is not None:
        call["id"] = id
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return chunk(tool_calls=[call])


def error_body(status: int, message: str = "boom") -> dict:
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 422: "invalid_request_error", 429: "rate_limit_error",
            529: "overloaded_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "code": None}}


def openai(srv: Any, **kwargs: Any) -> Any:
    """An OpenAI-dialect model pointed at the scripted server (fast retries by default)."""
    kwargs.setdefault("api_key", "sk-test")
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1", **kwargs)


def anthropic(srv: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("api_key", "sk-ant-test")
    kwargs.setdefault("max_retries", FAST)
    kwargs.setdefault("max_tokens", 64)
    return mf.Model.chat_completion("anthropic/claude-x", base_url=srv.url, **kwargs)


def anthropic_events(*texts: str, stop: bool = True, message_stop: bool = True) -> list[str]:
    """An Anthropic Messages stream with one text block made of ``texts``."""
    def ev(name: str, data: str) -> str:
        return f"event: {name}\ndata: {data}\n\n"

    import json

    out = [
        ev("message_start", json.dumps({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [], "usage": {"input_tokens": 3, "output_tokens": 0}}})),
        ev("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})),
    ]
    for t in texts:
        out.append(ev("content_block_delta", json.dumps({
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": t}})))
    if stop:
        out.append(ev("content_block_stop", json.dumps({"type": "content_block_stop",
                                                         "index": 0})))
        out.append(ev("message_delta", json.dumps({
            "type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": len(texts)}})))
    if message_stop:
        out.append(ev("message_stop", '{"type": "message_stop"}'))
    return out


def responses(srv: Any, **kwargs: Any) -> Any:
    """An OpenAI model over the Responses API pointed at the scripted server."""
    kwargs.setdefault("api_key", "sk-test")
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion("openai/gpt-5", base_url=srv.url + "/v1", api="responses",
                                    **kwargs)


def response(text: str = "ok", status: str = "completed") -> dict:
    """A whole Responses answer: one message with ``text``."""
    return {"id": "resp_1", "object": "response", "model": "gpt-5", "status": status,
            "error": None, "incomplete_details": None,
            "output": [{"id": "msg_1", "type": "message", "role": "assistant",
                        "status": status, "content": [
                            {"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6}}


def responses_events(*texts: str, completed: bool = True) -> list[str]:
    """A Responses stream of one message made of ``texts``, ended by
    ``response.completed`` unless ``completed=False``."""
    import json

    def ev(data: dict) -> str:
        return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"

    out = [ev({"type": "response.created", "response": {
               "id": "resp_1", "model": "gpt-5", "status": "in_progress", "output": []}}),
           ev({"type": "response.output_item.added", "output_index": 0, "item": {
               "id": "msg_1", "type": "message", "role": "assistant", "content": []}})]
    for t in texts:
        out.append(ev({"type": "response.output_text.delta", "item_id": "msg_1",
                       "output_index": 0, "content_index": 0, "delta": t}))
    if completed:
        whole = response("".join(texts))
        out.append(ev({"type": "response.output_item.done", "output_index": 0,
                       "item": whole["output"][0]}))
        out.append(ev({"type": "response.completed", "response": whole}))
    return out


def free_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def idle_408(sent: threading.Event) -> Reply:
    """A 200, then the 408 some servers send, unasked, before closing an idle connection;
    ``sent`` is set once the 408 is written (the test waits for it, not for a clock)."""
    return Reply((
        ("write", b'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"n": 1}'),
        ("sleep", 0.1),
        ("write", b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"),
        ("set", sent),
        ("sleep", 0.3),
        ("close",),
    ))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settle_fds(baseline: int, timeout: float = 15.0) -> int:
    """Descriptors open now, waiting (bounded) for closes in flight to land.

    Returns as soon as at most ``baseline`` are open; the caller asserts on the count.
    The scripted server's threads notice a client's close only when scheduled, which
    on a loaded machine can take a while: hence the generous deadline."""
    deadline = time.monotonic() + timeout
    n = open_fds()
    while n > baseline and time.monotonic() < deadline:
        time.sleep(0.02)
        n = open_fds()
    return n


@contextlib.contextmanager
def hanging_listener() -> Iterator[int]:
    """A loopback port whose accept queue is full, so a connect() hangs (SYN dropped).

    Yields the port; raises ``RuntimeError`` when this kernel refuses or accepts
    instead (the caller skips then).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.05)
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        except OSError as exc:
            raise RuntimeError(f"a full backlog is refused here: {exc}") from None
        else:
            raise RuntimeError("this kernel accepts connections beyond the backlog")
        finally:
            probe.close()
        yield port
    finally:
        for f in fillers:
            f.close()
        listener.close()


def chain(exc: BaseException) -> list[BaseException]:
    """The exception and every __cause__/__context__ below it (bounded, no cycles)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 50:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen
