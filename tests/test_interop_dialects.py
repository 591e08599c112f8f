"""Interoperability bugs found by replaying recorded traffic of the real APIs.

Each section replays bytes shaped exactly like what OpenAI, Anthropic and the
Gemini API send (recorded payloads, fed straight into the dialect with no I/O)
and, where the model layer takes part, runs them end to end through
``mf.Model.chat_completion(...)`` against the scripted loopback server, which
records what msgflux sent.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import msgspec
import pytest

import msgflux as mf
from msgflux import ChatBlock
from msgflux import exceptions as exc
from msgflux._transport.types import SSEEvent
from msgflux.models.dialects import anthropic, google, openai
from msgflux.models.dialects.base import Endpoint
from msgflux.models.messages import to_messages
from msgflux.models.request import ChatRequest, FilePart, ImagePart, Message
from msgflux.models.structured import compile_schema, decode_structured
from scripted_server import ScriptedServer, json_reply, sse_reply

OPENAI = Endpoint("openai", "https://api.openai.com/v1", "sk-test")
ANTHROPIC = Endpoint("anthropic", "https://api.anthropic.com", "sk-ant-test")
GOOGLE = Endpoint("google", "https://generativelanguage.googleapis.com", "AIza-test")
KEY = "sk-never-printed"


@pytest.fixture
def srv() -> Any:
    with ScriptedServer() as server:
        yield server


def sent(http: Any) -> dict[str, Any]:
    return msgspec.json.decode(http.body)


def walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


# ---------------------------------------------------------------- 1. fixed-length tuples


class Place(msgspec.Struct):
    point: tuple[float, float]
    tag: tuple[int, str, bool]
    route: list[tuple[int, int]] = []
    box: tuple[float, float] | None = None


PLACE = {"point": (48.85, 2.35), "tag": (7, "paris", True), "route": [(0, 1)], "box": None}
# What a strict provider writes for the lowered schema (objects keyed "0", "1", ...).
PLACE_LOWERED = ('{"point":{"0":48.85,"1":2.35},"tag":{"0":7,"1":"paris","2":true},'
                 '"route":[{"0":0,"1":1}],"box":null}')
# What Gemini writes for prefixItems: plain arrays.
PLACE_ARRAYS = '{"point":[48.85,2.35],"tag":[7,"paris",true],"route":[[0,1]],"box":null}'


def answer(response: Any, stream: bool) -> Any:
    """The structured result; a stream yields partial objects, then the validated one."""
    if not stream:
        return response.consume()
    objects = list(response.consume())
    assert objects[-1] is response.data
    for partial in objects[:-1]:  # what a partial holds is the answer's, restored
        assert all(response.data[k] == v for k, v in partial.items()
                   if not isinstance(v, (dict, list)))
    return response.data


def tuple_request(model: str, stream: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", "Where is Paris?"),),
                       output=compile_schema(Place).output, stream=stream)


def test_openai_strict_schema_lowers_tuples_and_the_answer_is_restored() -> None:
    body = sent(openai.build_request(tuple_request("gpt-4o"), OPENAI))
    fmt = body["response_format"]["json_schema"]
    assert fmt["strict"] is True
    schema = fmt["schema"]
    # OpenAI's strict subset has no prefixItems: every tuple is a closed object.
    assert not any("prefixItems" in n or n.get("items") is False for n in walk(schema))
    assert schema["properties"]["point"] == {
        "type": "object", "properties": {"0": {"type": "number"}, "1": {"type": "number"}},
        "required": ["0", "1"], "additionalProperties": False}
    reply = (b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06",'
             b'"choices":[{"index":0,"message":{"role":"assistant","content":'
             + json.dumps(PLACE_LOWERED).encode()
             + b',"refusal":null},"finish_reason":"stop"}]}')
    text = openai.parse_response(reply).text
    assert decode_structured(compile_schema(Place), text) == PLACE


def test_anthropic_native_format_lowers_tuples_and_forced_tool_keeps_them() -> None:
    body = sent(anthropic.build_request(tuple_request("claude-sonnet-4-5"), ANTHROPIC))
    schema = body["output_config"]["format"]["schema"]
    assert not any("prefixItems" in n or n.get("items") is False for n in walk(schema))
    assert set(schema["properties"]["tag"]["properties"]) == {"0", "1", "2"}
    reply = (b'{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5",'
             b'"content":[{"type":"text","text":' + json.dumps(PLACE_LOWERED).encode()
             + b'}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":30}}')
    text = anthropic.parse_response(reply, tuple_request("claude-sonnet-4-5")).text
    assert decode_structured(compile_schema(Place), text) == PLACE
    # Older models answer through a forced tool, whose input_schema is plain JSON Schema.
    body = sent(anthropic.build_request(tuple_request("claude-3-5-sonnet-20241022"), ANTHROPIC))
    point = body["tools"][0]["input_schema"]["properties"]["point"]
    assert point["prefixItems"] == [{"type": "number"}, {"type": "number"}]


def test_gemini_keeps_prefix_items_and_the_array_answer_decodes() -> None:
    body = sent(google.build_request(tuple_request("gemini-2.5-flash"), GOOGLE))
    schema = body["generationConfig"]["responseJsonSchema"]
    point = schema["properties"]["point"]
    # Gemini documents prefixItems, minItems and maxItems; the boolean `items: false`
    # is not in its list, and maxItems already closes the tuple.
    assert point == {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}],
                     "minItems": 2, "maxItems": 2}
    assert not any(n.get("items") is False for n in walk(schema))
    reply = json.dumps({"candidates": [{"content": {"role": "model", "parts": [
        {"text": PLACE_ARRAYS}]}, "finishReason": "STOP"}]}).encode()
    assert decode_structured(compile_schema(Place), google.parse_response(reply).text) == PLACE


@pytest.mark.parametrize("stream", [False, True])
def test_tuple_schema_end_to_end_openai(srv: ScriptedServer, stream: bool) -> None:
    if stream:
        half = len(PLACE_LOWERED) // 2
        srv.enqueue(sse_reply([
            {"id": "c", "model": "gpt-4o", "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": PLACE_LOWERED[:half]}}]},
            {"id": "c", "model": "gpt-4o", "choices": [
                {"index": 0, "delta": {"content": PLACE_LOWERED[half:]},
                 "finish_reason": "stop"}]},
            "data: [DONE]\n\n"]))
    else:
        srv.enqueue(json_reply(200, {"id": "c", "model": "gpt-4o", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": PLACE_LOWERED},
             "finish_reason": "stop"}]}))
    model = mf.Model.chat_completion("openai/gpt-4o", base_url=f"{srv.url}/v1", api_key=KEY,
                                     max_retries=0)
    response = model("Where is Paris?", generation_schema=Place, stream=stream)
    result = answer(response, stream)
    assert response.response_type == "structured"
    assert result == PLACE
    schema = srv.requests[0].json()["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["tag"]["required"] == ["0", "1", "2"]


@pytest.mark.parametrize("stream", [False, True])
def test_tuple_schema_end_to_end_gemini(srv: ScriptedServer, stream: bool) -> None:
    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}

    if stream:
        srv.enqueue(sse_reply([f"data: {json.dumps(c)}\r\n\r\n" for c in (
            chunk(PLACE_ARRAYS[:20], None), chunk(PLACE_ARRAYS[20:], "STOP"))]))
    else:
        srv.enqueue(json_reply(200, chunk(PLACE_ARRAYS, "STOP")))
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url, api_key=KEY,
                                     max_retries=0)
    response = model("Where is Paris?", generation_schema=Place, stream=stream)
    result = answer(response, stream)
    assert result == PLACE
    config = srv.requests[0].json()["generationConfig"]
    assert config["responseJsonSchema"]["properties"]["tag"]["prefixItems"][1] == {
        "type": "string"}


@pytest.mark.parametrize("stream", [False, True])
def test_tuple_schema_end_to_end_anthropic(srv: ScriptedServer, stream: bool) -> None:
    usage = {"input_tokens": 12, "output_tokens": 30}
    if stream:
        events = [
            {"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "content": [],
                "model": "claude-sonnet-4-5", "stop_reason": None, "usage": usage}},
            {"type": "content_block_start", "index": 0,
             "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": PLACE_LOWERED[:30]}},
            {"type": "content_block_delta", "index": 0,
             "delta": {"type": "text_delta", "text": PLACE_LOWERED[30:]}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": 30}},
            {"type": "message_stop"},
        ]
        srv.enqueue(sse_reply([f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                               for e in events]))
    else:
        srv.enqueue(json_reply(200, {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": PLACE_LOWERED}], "stop_reason": "end_turn",
            "usage": usage}))
    model = mf.Model.chat_completion("anthropic/claude-sonnet-4-5", base_url=srv.url,
                                     api_key=KEY, max_retries=0)
    response = model("Where is Paris?", generation_schema=Place, stream=stream)
    result = answer(response, stream)
    assert result == PLACE
    fmt = srv.requests[0].json()["output_config"]["format"]
    assert fmt["schema"]["properties"]["point"]["type"] == "object"


class Located(msgspec.Struct):
    point: tuple[float, float]
    zoom: int


def test_tuple_schema_against_llama_cpp(openai_env: Any) -> None:
    """A real grammar-constrained answer: structure only, never the small model's values."""
    model = mf.Model.chat_completion("openai/gpt-4o", max_tokens=96)
    response = model("Give the map position of Paris and a zoom level.",
                     generation_schema=Located)
    result = response.consume()
    assert response.response_type == "structured"
    assert isinstance(result.point, tuple) and len(result.point) == 2
    assert all(isinstance(v, (int, float)) for v in result.point)
    assert isinstance(result.zoom, int)
    assert msgspec.convert(dict(result), Located).point == result.point


# ---------------------------------------------------------------- 3. Gemini: invalid API key

# The body the Gemini API answers a bad key with (HTTP 400, pretty-printed as Google sends it).
BAD_KEY_BODY = b"""{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}
"""


def test_gemini_invalid_key_is_an_authentication_error() -> None:
    err = google.parse_error(400, [("content-type", "application/json; charset=UTF-8")],
                             BAD_KEY_BODY, "google")
    assert isinstance(err, exc.AuthenticationError)
    assert err.status == 400 and err.message == "API key not valid. Please pass a valid API key."
    assert err.error_type == "API_KEY_INVALID" and not err.retryable
    # Any other INVALID_ARGUMENT stays a bad request.
    other = BAD_KEY_BODY.replace(b"API_KEY_INVALID", b"FIELD_INVALID")
    assert type(google.parse_error(400, [], other, "google")) is exc.BadRequestError


def test_gemini_invalid_key_in_a_stream_chunk_is_an_authentication_error() -> None:
    decoder = google.stream_decoder(None, "google")
    with pytest.raises(exc.AuthenticationError):
        decoder.feed(SSEEvent(BAD_KEY_BODY.replace(b"\n", b"")))


@pytest.mark.parametrize("stream", [False, True])
def test_gemini_invalid_key_end_to_end(srv: ScriptedServer, stream: bool) -> None:
    path = ("/v1beta/models/gemini-2.5-flash:"
            + ("streamGenerateContent" if stream else "generateContent"))
    srv.route("POST", path, json_reply(400, json.loads(BAD_KEY_BODY)))
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url,
                                     api_key="AIza-wrong-key", max_retries=2)
    with pytest.raises(exc.AuthenticationError) as info:
        response = model("Hello", stream=stream)
        if stream:
            list(response.consume())
    assert info.value.status == 400 and info.value.provider == "google"
    assert "AIza-wrong-key" not in str(info.value)
    assert len(srv.requests) == 1  # not retried


# ---------------------------------------------------------------- 2. Gemini: media types


def gemini_parts(*parts: Any) -> list[dict[str, Any]]:
    request = ChatRequest(model="gemini-2.5-flash", messages=(Message("user", parts),))
    return sent(google.build_request(request, GOOGLE))["contents"][0]["parts"]


@pytest.mark.parametrize(("url", "media"), [
    ("https://www.youtube.com/watch?v=9hE5-98ZeCg", "video/mp4"),
    ("https://youtu.be/9hE5-98ZeCg?t=30", "video/mp4"),
    ("https://m.youtube.com/shorts/9hE5-98ZeCg", "video/mp4"),
    ("https://youtube.com/live/9hE5-98ZeCg", "video/mp4"),
    ("https://cdn.example.com/clips/launch.MP4?sig=abc#t=5", "video/mp4"),
    ("https://cdn.example.com/clip.webm", "video/webm"),
    ("https://cdn.example.com/clip.mov", "video/quicktime"),
    ("gs://bucket/talk.mp3", "audio/mpeg"),
    ("https://cdn.example.com/a.wav", "audio/wav"),
    ("https://cdn.example.com/page.png", "image/png"),
    ("https://cdn.example.com/notes.txt", "text/plain"),
    ("https://cdn.example.com/paper.pdf", "application/pdf"),
])
def test_gemini_file_urls_get_the_media_type_they_name(url: str, media: str) -> None:
    assert gemini_parts(FilePart(url=url)) == [{"fileData": {"mimeType": media, "fileUri": url}}]


def test_gemini_youtube_link_as_an_image_url_part_is_a_video_too() -> None:
    url = "https://www.youtube.com/watch?v=9hE5-98ZeCg"
    assert gemini_parts(ImagePart(url)) == [{"fileData": {"mimeType": "video/mp4",
                                                          "fileUri": url}}]


def test_gemini_explicit_media_type_wins() -> None:
    uri = "https://generativelanguage.googleapis.com/v1beta/files/abc-123"
    assert gemini_parts(FilePart(file_id=uri, media_type="video/webm"),
                        FilePart(url="https://example.com/x.pdf", media_type="text/plain"),
                        FilePart(data="AAAAIGZ0eXA=", media_type="video/mp4"),
                        FilePart(data="data:application/octet-stream;base64,AAAA",
                                 filename="clip.mp4")) == [
        {"fileData": {"mimeType": "video/webm", "fileUri": uri}},
        {"fileData": {"mimeType": "text/plain", "fileUri": "https://example.com/x.pdf"}},
        {"inlineData": {"mimeType": "video/mp4", "data": "AAAAIGZ0eXA="}},
        {"inlineData": {"mimeType": "video/mp4", "data": "AAAA"}},
    ]


@pytest.mark.parametrize("part", [
    FilePart(url="https://example.com/download?id=42"),
    FilePart(file_id="https://generativelanguage.googleapis.com/v1beta/files/abc-123"),
    FilePart(data="JVBERi0xLjQK"),
    FilePart(data="data:application/octet-stream;base64,AAAA"),
])
def test_gemini_unknown_media_type_fails_before_the_call(part: FilePart) -> None:
    with pytest.raises(exc.MessageFormatError, match="media_type") as info:
        gemini_parts(part)
    assert "application/pdf" not in str(info.value)


def test_file_parts_carry_an_explicit_media_type_from_the_caller() -> None:
    url = "https://example.com/stream?id=7"
    [msg] = to_messages([{"role": "user", "content": [
        {"type": "file", "file": {"url": url, "mime_type": "video/mp4"}},
        {"type": "file", "file": {"file_id": "files/abc", "media_type": "audio/ogg"}},
        {"type": "file", "file": {"file_data": "https://youtu.be/9hE5-98ZeCg"}},
        ChatBlock.file("https://example.com/talk", media_type="audio/mpeg"),
    ]}])
    assert msg.content == (
        FilePart(url=url, media_type="video/mp4"),
        FilePart(file_id="files/abc", media_type="audio/ogg"),
        FilePart(url="https://youtu.be/9hE5-98ZeCg"),
        FilePart(url="https://example.com/talk", media_type="audio/mpeg"),
    )
    with pytest.raises(exc.MessageFormatError, match="media_type"):
        to_messages([{"role": "user", "content": [
            {"type": "file", "file": {"url": url, "media_type": "mp4"}}]}])


def test_chatblock_file_with_an_explicit_media_type(tmp_path: Any) -> None:
    clip = tmp_path / "clip.bin"
    clip.write_bytes(b"\x00\x00\x00\x20ftyp")
    part = ChatBlock.file(str(clip), media_type="video/mp4")
    assert part["file"]["file_data"].startswith("data:video/mp4;base64,")
    assert part["file"]["media_type"] == "video/mp4"
    assert ChatBlock.file("https://youtu.be/9hE5-98ZeCg") == {
        "type": "file", "file": {"url": "https://youtu.be/9hE5-98ZeCg"}}


def test_gemini_youtube_link_end_to_end(srv: ScriptedServer) -> None:
    srv.enqueue(json_reply(200, {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "A talk about Jupiter."}]}, "finishReason": "STOP"}]}))
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url, api_key=KEY,
                                     max_retries=0)
    link = "https://www.youtube.com/watch?v=9hE5-98ZeCg"
    response = model(messages=[ChatBlock.user("Summarise this video.",
                                              media=ChatBlock.file(link))])
    assert response.consume() == "A talk about Jupiter."
    assert srv.requests[0].json()["contents"][0]["parts"] == [
        {"text": "Summarise this video."},
        {"fileData": {"mimeType": "video/mp4", "fileUri": link}},
    ]


def test_gemini_unknown_remote_file_fails_before_the_network(srv: ScriptedServer) -> None:
    model = mf.Model.chat_completion("google/gemini-2.5-flash", base_url=srv.url, api_key=KEY,
                                     max_retries=0)
    with pytest.raises(exc.MessageFormatError, match="media_type"):
        model(messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is in this file?"},
            {"type": "file", "file": {"url": "https://example.com/download?id=42"}}]}])
    assert srv.requests == []


# ---------------------------------------------------------------- 4. Anthropic: effort and budgets


def claude_body(model: str, effort: str, max_tokens: int | None = None) -> dict[str, Any]:
    request = ChatRequest(model=model, messages=(Message("user", "x"),), max_tokens=max_tokens,
                          reasoning_effort=effort)
    return sent(anthropic.build_request(request, ANTHROPIC))


@pytest.mark.parametrize(("model", "effort", "max_tokens", "thinking", "sent_max"), [
    # An explicit budget the API accepts goes out as asked.
    ("claude-sonnet-4-5", "3000", 4096, {"type": "enabled", "budget_tokens": 3000}, 4096),
    ("claude-3-7-sonnet-20250219", "1024", 1025, {"type": "enabled", "budget_tokens": 1024},
     1025),
    ("claude-sonnet-4-20250514", "20000", None, {"type": "enabled", "budget_tokens": 20000},
     4096 + 20000),
    # Claude 4.6 still takes a budget (deprecated there, removed from 4.7 on).
    ("claude-opus-4-6", "3000", 4096, {"type": "enabled", "budget_tokens": 3000}, 4096),
])
def test_anthropic_explicit_budget_is_sent_as_asked(model: str, effort: str,
                                                    max_tokens: int | None, thinking: dict,
                                                    sent_max: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was adjusted, so nothing is said
        body = claude_body(model, effort, max_tokens)
    assert body["thinking"] == thinking and body["max_tokens"] == sent_max
    assert "output_config" not in body


@pytest.mark.parametrize(("model", "effort"), [
    ("claude-opus-4-7", "xhigh"), ("claude-opus-4-7", "max"), ("claude-opus-4-6", "max"),
    ("claude-sonnet-4-6", "max"), ("claude-opus-4-8", "xhigh"), ("claude-sonnet-5", "xhigh"),
    ("claude-opus-4-7", "low"), ("claude-sonnet-4-6", "medium"),
])
def test_anthropic_effort_levels_are_sent_as_asked(model: str, effort: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = claude_body(model, effort)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": effort}


def test_anthropic_xhigh_where_the_model_lacks_it_is_adjusted_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"'xhigh'.*'high'") as caught:
        body = claude_body("claude-sonnet-4-6", "xhigh")
    assert body["output_config"] == {"effort": "high"}
    assert "claude-sonnet-4-6" in str(caught[0].message)


def test_anthropic_budget_on_an_adaptive_only_model_is_adjusted_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"'3000'.*'medium'"):
        body = claude_body("claude-opus-4-7", "3000", 4096)
    assert body["thinking"] == {"type": "adaptive"}
    assert body["output_config"] == {"effort": "medium"} and body["max_tokens"] == 4096


def test_anthropic_budget_below_the_minimum_is_raised_with_a_warning() -> None:
    with pytest.warns(UserWarning, match=r"500.*1024"):
        body = claude_body("claude-3-7-sonnet-20250219", "500", 4096)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["max_tokens"] == 4096


@pytest.mark.parametrize(("model", "effort", "max_tokens"), [
    ("claude-sonnet-4-5", "5000", 4096),     # the budget must stay below max_tokens
    ("claude-sonnet-4-5", "4096", 4096),
    ("claude-3-7-sonnet-20250219", "low", 1000),  # no room for the smallest budget
    ("claude-opus-4-7", "extreme", None),    # not an effort level at all
])
def test_anthropic_impossible_thinking_requests_fail_before_the_call(
        model: str, effort: str, max_tokens: int | None) -> None:
    with pytest.raises(exc.InvalidParameterError, match=r"reasoning_effort|max_tokens"):
        claude_body(model, effort, max_tokens)


def test_anthropic_explicit_budget_end_to_end(srv: ScriptedServer) -> None:
    srv.enqueue(json_reply(200, {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "thinking", "thinking": "Adding.", "signature": "sig"},
                    {"type": "text", "text": "4"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 10, "output_tokens": 20}}))
    model = mf.Model.chat_completion("anthropic/claude-sonnet-4-5", base_url=srv.url,
                                     api_key=KEY, max_retries=0, max_tokens=4096,
                                     reasoning_effort="3000")
    assert model("2 + 2?").consume() == "4"
    body = srv.requests[0].json()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 3000}
    assert body["max_tokens"] == 4096
    # A budget the cap cannot hold is refused before the network, streamed or not.
    tight = mf.Model.chat_completion("anthropic/claude-sonnet-4-5", base_url=srv.url,
                                     api_key=KEY, max_retries=0, max_tokens=4096,
                                     reasoning_effort="5000")
    with pytest.raises(exc.InvalidParameterError, match="max_tokens"):
        tight("2 + 2?", stream=True)
    assert len(srv.requests) == 1
