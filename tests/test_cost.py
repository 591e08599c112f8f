"""Cost you can trust: bundled models.dev prices only at the provider's own endpoint,
``pricing=`` elsewhere, tiers and cache rates, a breakdown, and usage summed over
the attempts that were billed. Calls go to the scripted server; "the provider's own
endpoint" is kept by a transport that carries the request there unchanged but for
the host (a user-supplied ``transport=``, as the seam allows)."""

from __future__ import annotations

from urllib.parse import urlsplit

import msgspec
import pytest

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.models.profiles import get_model_profile
from msgflux.transport import HTTPTransport
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_streams import after
from test_faults_support import FAST, anthropic, anthropic_events, completion, openai


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


class ToScripted:
    """Sends each request to the scripted server, path and all: the model still
    believes it talks to the provider's own endpoint."""

    def __init__(self, srv: ScriptedServer) -> None:
        self.srv = srv
        self.inner = HTTPTransport()

    def _moved(self, request):
        split = urlsplit(request.url)
        target = split.path + (f"?{split.query}" if split.query else "")
        return msgspec.structs.replace(request, url=self.srv.url + target)

    def send(self, request, timeouts=None):
        return self.inner.send(self._moved(request), timeouts)

    def open_stream(self, request, timeouts=None):
        return self.inner.open_stream(self._moved(request), timeouts)

    def close(self) -> None:
        self.inner.close()


def own(srv, path: str, **kwargs):
    """A model at its provider's default base URL, carried to the scripted server."""
    kwargs.setdefault("max_retries", FAST)
    return mf.Model.chat_completion(path, api_key="sk-test", transport=ToScripted(srv),
                                    **kwargs)


def usage_reply(prompt: int, out: int, cached: int = 0, reasoning: int = 0):
    body = completion("ok")
    body["usage"] = {"prompt_tokens": prompt, "completion_tokens": out,
                     "total_tokens": prompt + out,
                     "prompt_tokens_details": {"cached_tokens": cached},
                     "completion_tokens_details": {"reasoning_tokens": reasoning}}
    return json_reply(200, body)


def test_bundled_prices_at_the_providers_own_endpoint(srv, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    srv.enqueue(usage_reply(2006, 300, cached=1920))
    with own(srv, "openai/gpt-4o") as model:
        meta = model("q").metadata
    prices = get_model_profile("gpt-4o", "openai").cost
    assert meta.cost == pytest.approx(
        prices.calculate(input_tokens=2006, output_tokens=300, cached_tokens=1920))
    assert meta.cost_breakdown.cache_read == pytest.approx(
        1920 * prices.cache_read_per_million / 1e6)
    assert meta.cost_breakdown.input == pytest.approx(86 * prices.input_per_million / 1e6)
    assert sum(meta.cost_breakdown.values()) == pytest.approx(meta.cost)
    assert meta.attempts == 1


def test_another_base_url_has_no_price_unless_given(srv, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", srv.url + "/v1")  # a local server, a proxy
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    srv.enqueue(usage_reply(1000, 500))
    srv.enqueue(usage_reply(1000, 500, cached=400))
    with mf.Model.chat_completion("openai/gpt-4o") as model:
        meta = model("q").metadata
    assert meta.usage.total_tokens == 1500
    assert meta.cost is None and meta.cost_breakdown is None  # unknown, never $0
    priced = mf.Model.chat_completion("openai/gpt-4o",
                                      pricing={"input": 1.0, "output": 2.0, "cache_read": 0.1})
    with priced:
        meta = priced("q").metadata
    assert meta.cost == pytest.approx((600 * 1.0 + 400 * 0.1 + 500 * 2.0) / 1e6)


def test_local_and_unknown_models_have_no_price(srv) -> None:
    srv.enqueue(usage_reply(10, 5))
    srv.enqueue(usage_reply(10, 5))
    with own(srv, "openai/gpt-no-such-model-xyz") as model:
        assert model("q").metadata.cost is None
    local = mf.Model.chat_completion("vllm/gpt-4o", base_url=srv.url + "/v1")
    with local:
        assert local("q").metadata.cost is None


def test_hour_long_cache_writes_at_their_own_rate(srv) -> None:
    srv.enqueue(json_reply(200, {
        "id": "m1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 21, "cache_creation_input_tokens": 1000,
                  "cache_read_input_tokens": 5000, "output_tokens": 393,
                  "cache_creation": {"ephemeral_5m_input_tokens": 400,
                                     "ephemeral_1h_input_tokens": 600}}}))
    with own(srv, "anthropic/claude-sonnet-4-5") as model:
        meta = model("q").metadata
    prices = get_model_profile("claude-sonnet-4-5", "anthropic").cost
    assert prices.cache_write_1h_per_million == 2 * prices.input_per_million
    expected = (21 * prices.input_per_million + 5000 * prices.cache_read_per_million
                + 400 * prices.cache_write_per_million + 600 * 2 * prices.input_per_million
                + 393 * prices.output_per_million) / 1e6
    assert meta.cost == pytest.approx(expected)
    assert meta.cost_breakdown.cache_write == pytest.approx(
        (400 * prices.cache_write_per_million + 600 * 2 * prices.input_per_million) / 1e6)


def test_hour_long_writes_without_a_price_are_unknown() -> None:
    prices = mf.Model.chat_completion("vllm/x", pricing={"input": 1, "output": 2}
                                      )._wiring.prices
    assert prices.calculate(input_tokens=10, cache_write_tokens=5,
                            cache_write_1h_tokens=5) is None
    assert prices.calculate(input_tokens=10, cache_write_tokens=5) is not None


def test_long_context_tier(srv) -> None:
    reply = {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                             "finishReason": "STOP"}],
             "usageMetadata": {"promptTokenCount": 250_000, "candidatesTokenCount": 1000,
                               "totalTokenCount": 251_000}}
    srv.enqueue(json_reply(200, reply))
    with own(srv, "google/gemini-2.5-pro") as model:
        meta = model("q").metadata
    tier = get_model_profile("gemini-2.5-pro", "google").cost.tiers[0]
    assert tier.above_input_tokens == 200_000
    assert meta.cost == pytest.approx((250_000 * tier.input_per_million
                                       + 1000 * tier.output_per_million) / 1e6)


def test_pricing_is_checked_and_serialized(srv, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # serialize() never holds the key
    for bad in ({"input": 1}, {"input": -1, "output": 1}, {"input": 1, "output": "x"},
                {"inputs": 1, "output": 1}, "cheap", {"input": True, "output": 1}):
        with pytest.raises(exc.InvalidParameterError):
            openai(srv, pricing=bad)
    model = openai(srv, pricing={"input": 1.5, "output": 2})
    assert model.serialize()["state"]["pricing"] == {"input": 1.5, "output": 2}
    rebuilt = mf.Model.from_serialized(model.serialize())
    assert rebuilt._wiring.prices.input_per_million == 1.5
    assert srv.requests == []


def test_tokens_of_an_abandoned_stream_attempt_are_counted(srv) -> None:
    # The first attempt breaks after message_start (billed input) and before any text.
    broken = sse_reply(anthropic_events("Hel", "lo"))
    srv.enqueue(broken.drop_after(after(broken, b'"message_start"')))
    srv.enqueue(sse_reply(anthropic_events("Hel", "lo")))
    with anthropic(srv, pricing={"input": 1, "output": 2}) as model:
        response = model("hi", stream=True)
        assert "".join(response.consume()) == "Hello"
    meta = response.metadata
    assert meta.attempts == 2
    assert meta.usage.prompt_tokens == 3 + 3 and meta.usage.completion_tokens == 2
    assert meta.cost == pytest.approx((6 * 1 + 2 * 2) / 1e6)


def test_usage_plus() -> None:
    from msgflux.models.request import Usage

    a = Usage(10, 2, 12, cached_tokens=4)
    b = Usage(5, 1, 6, reasoning_tokens=1)
    total = a.plus(b)
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (15, 3, 18)
    assert (total.cached_tokens, total.reasoning_tokens, total.cache_write_tokens) == (
        4, 1, None)
    assert a.plus(None) is a
