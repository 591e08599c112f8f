"""Replies of each dialect's wire protocol, whole or streamed, for the scripted server.

``reply(dialect, text=..., calls=[(id, name, arguments)], stream=...)`` builds one answer
(text, tool calls, or both) with a fixed usage of 10 prompt and 5 completion tokens;
``model(dialect, srv)`` is a model of that dialect pointed at the server.
"""

from __future__ import annotations

import json
from typing import Any

import msgflux as mf
from scripted_server import Reply, json_reply, sse_reply

KEY = "sk-test-key-0123456789"
DIALECTS = ("openai", "anthropic", "google")
PATHS = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-sonnet-4-20250514",
         "google": "google/gemini-2.5-flash"}
Call = tuple[str, str, dict[str, Any]]


def model(dialect: str, srv: Any, **kwargs: Any) -> Any:
    base = f"{srv.url}/v1" if dialect == "openai" else srv.url
    return mf.Model.chat_completion(PATHS[dialect], base_url=base, api_key=KEY, max_retries=0,
                                    **kwargs)


def reply(dialect: str, text: str = "", calls: list[Call] | None = None,
          stream: bool = False) -> Reply:
    calls = calls or []
    return {"openai": _openai, "anthropic": _anthropic, "google": _google}[dialect](
        text, calls, stream)


def _openai(text: str, calls: list[Call], stream: bool) -> Reply:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    finish = "tool_calls" if calls else "stop"
    wire = [{"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
            for i, n, a in calls]
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if wire:
            message["tool_calls"] = wire
        return json_reply(200, {"id": "c", "model": "gpt-4o", "usage": usage, "choices": [
            {"index": 0, "message": message, "finish_reason": finish}]})
    chunks: list[Any] = []
    for piece in _pieces(text):
        chunks.append({"id": "c", "choices": [{"index": 0, "delta": {"content": piece}}]})
    for k, call in enumerate(wire):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        chunks.append({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": k, "id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"], "arguments": arguments[:half]}}]}}]})
        chunks.append({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": k, "function": {"arguments": arguments[half:]}}]}}]})
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"id": "c", "choices": [], "usage": usage})
    chunks.append("data: [DONE]\n\n")
    return sse_reply(chunks)


def _anthropic(text: str, calls: list[Call], stream: bool) -> Reply:
    stop = "tool_use" if calls else "end_turn"
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    content.extend({"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls)
    if not stream:
        return json_reply(200, {"id": "m", "type": "message", "role": "assistant",
                                "model": "claude-sonnet-4", "content": content,
                                "stop_reason": stop,
                                "usage": {"input_tokens": 10, "output_tokens": 5}})
    events: list[str] = [_event("message_start", {"type": "message_start", "message": {
        "id": "m", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
        "content": [], "usage": {"input_tokens": 10, "output_tokens": 0}}})]
    for index, block in enumerate(content):
        if block["type"] == "text":
            events.append(_event("content_block_start", {"type": "content_block_start",
                                 "index": index, "content_block": {"type": "text", "text": ""}}))
            for piece in _pieces(block["text"]):
                events.append(_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": piece}}))
        else:
            events.append(_event("content_block_start", {
                "type": "content_block_start", "index": index, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
            raw = json.dumps(block["input"])
            for piece in (raw[:len(raw) // 2], raw[len(raw) // 2:]):
                events.append(_event("content_block_delta", {
                    "type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}))
        events.append(_event("content_block_stop", {"type": "content_block_stop",
                                                    "index": index}))
    events.append(_event("message_delta", {"type": "message_delta", "delta": {
        "stop_reason": stop}, "usage": {"output_tokens": 5}}))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return sse_reply(events)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _google(text: str, calls: list[Call], stream: bool) -> Reply:
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15}
    parts: list[dict[str, Any]] = [{"functionCall": {"id": i, "name": n, "args": a}}
                                   for i, n, a in calls]

    def chunk(p: list[dict[str, Any]], finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": p}}
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}
        if finish:
            candidate["finishReason"] = "STOP"
            out["usageMetadata"] = usage
        return out

    if not stream:
        return json_reply(200, chunk(([{"text": text}] if text else []) + parts, True))
    pieces = [[{"text": piece}] for piece in _pieces(text)] + ([parts] if parts else [])
    return sse_reply([chunk(p, k == len(pieces) - 1) for k, p in enumerate(pieces)])


def _pieces(text: str) -> list[str]:
    """The text in a few chunks (a stream should have more than one)."""
    if not text:
        return []
    step = max(1, len(text) // 3)
    return [text[k:k + step] for k in range(0, len(text), step)]
