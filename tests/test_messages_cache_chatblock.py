"""Input normalisation, the response cache and ChatBlock builders (pure)."""

from __future__ import annotations

import base64
import copy
import threading

import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.cache import MemoryCache, cache_key
from msgflux.models.messages import to_messages
from msgflux.models.request import ChatRequest, Completion, ImagePart, Message, TextPart


def test_forms_of_messages() -> None:
    assert to_messages("hi") == (Message("user", "hi"),)
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    before = copy.deepcopy(msgs)
    out = to_messages(msgs, system_prompt="P")
    assert out[0] == Message("system", "P\n\nS") and len(out) == 2
    assert msgs == before  # the caller's list is never touched
    out = to_messages([{"role": "developer", "content": "D"}, mf.ChatBlock.user(
        "look", media=mf.ChatBlock.image("https://x/y.png"))])
    assert out[0].role == "system"
    assert out[1].content == (TextPart("look"), ImagePart("https://x/y.png"))


@pytest.mark.parametrize("bad", [
    42, [{"content": "no role"}], [{"role": "wizard", "content": "x"}], ["text"],
    [{"role": "user"}], [{"role": "tool", "content": "r"}],
    [{"role": "user", "content": [{"type": "video_url"}]}],
    [{"role": "assistant", "tool_calls": [{"id": "x"}]}], [],
])
def test_bad_messages_are_typed_value_errors(bad) -> None:
    with pytest.raises(exc.MessageFormatError) as info:
        to_messages(bad)
    assert isinstance(info.value, ValueError)


def answer(n: int) -> Completion:
    return Completion(text=str(n))


def test_lru_eviction_stats_and_truthiness() -> None:
    cache = MemoryCache(2)
    assert cache and len(cache) == 0  # truthy even when empty
    cache.set(b"a", answer(1))
    cache.set(b"b", answer(2))
    assert cache.get(b"a") == answer(1)  # a is now most recent
    cache.set(b"c", answer(3))  # evicts b, the least recently used
    assert cache.get(b"b") is None and cache.get(b"a") == answer(1)
    assert cache.cache_info() == {"hits": 2, "misses": 1, "maxsize": 2, "currsize": 2}
    cache.cache_clear()
    assert cache.cache_info() == {"hits": 0, "misses": 0, "maxsize": 2, "currsize": 0}


def test_cache_size_one_works_and_non_positive_or_bool_sizes_are_refused() -> None:
    cache = MemoryCache(1)
    cache.set(b"a", Completion(text="one"))
    cache.set(b"b", Completion(text="two"))
    assert cache.get(b"a") is None and cache.get(b"b") == Completion(text="two")
    for bad in (0, -1, True, 2.0, "8"):
        with pytest.raises(ValueError, match="cache_size must be a positive int"):
            MemoryCache(bad)  # type: ignore[arg-type]


def test_cache_key_covers_what_changes_the_answer() -> None:
    base = ChatRequest(model="m", messages=(Message("user", "x"),))
    keys = {
        cache_key("openai", "u", base, None),
        cache_key("groq", "u", base, None),
        cache_key("openai", "v", base, None),
        cache_key("openai", "u", base, "typed_xml"),
        cache_key("openai", "u", ChatRequest(model="m", messages=(Message("user", "y"),)), None),
        cache_key("openai", "u", ChatRequest(model="m", messages=base.messages,
                                             temperature=0.5), None),
        cache_key("openai", "u", ChatRequest(model="m", messages=base.messages,
                                             prefill="{"), None),
    }
    assert len(keys) == 7
    assert cache_key("openai", "u", base, None) == cache_key("openai", "u", base, None)


def test_cache_threads() -> None:
    cache = MemoryCache(64)

    def work(n: int) -> None:
        for i in range(500):
            cache.set(bytes([n, i % 100]), answer(i))
            cache.get(bytes([n, (i * 7) % 100]))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = cache.cache_info()
    assert info["currsize"] == 64 and info["hits"] + info["misses"] == 4000


def test_chatblock_shapes(tmp_path) -> None:
    cb = mf.ChatBlock
    assert cb.user("hi") == {"role": "user", "content": "hi"}
    assert cb.assistant({"a": 1}) == {"role": "assistant", "content": '{"a":1}'}
    assert cb.assist("x") == cb.assistant("x") == cb("assistant", "x")
    assert cb.system("s") == {"role": "system", "content": "s"}
    assert cb.tool("c1", "r") == {"role": "tool", "tool_call_id": "c1", "content": "r"}
    assert cb.text("t") == {"type": "text", "text": "t"}
    assert cb.image("https://e/x.jpg", detail="high") == {
        "type": "image_url", "image_url": {"url": "https://e/x.jpg", "detail": "high"}}
    assert len(cb.image(["https://e/1.jpg", "https://e/2.jpg"])) == 2
    png = tmp_path / "pixel.png"
    png.write_bytes(b"\x89PNG\r\n")
    url = cb.image(str(png))["image_url"]["url"]
    assert url == "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n").decode()
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    assert cb.audio(str(wav)) == {"type": "input_audio", "input_audio": {
        "data": base64.b64encode(b"RIFF").decode(), "format": "wav"}}
    doc = tmp_path / "d.pdf"
    doc.write_bytes(b"%PDF")
    part = cb.file(str(doc))
    assert part["file"]["filename"] == "d.pdf"
    assert part["file"]["file_data"].startswith("data:application/pdf;base64,")
    with pytest.raises(exc.MessageFormatError):
        cb.image("./missing.png")
    with pytest.raises(exc.MessageFormatError):
        cb("tool", "x")
