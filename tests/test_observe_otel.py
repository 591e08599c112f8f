"""OpenTelemetry (extra ``otel``) through the SDK's in-memory span exporter and metric
reader: one span per call following the GenAI semantic conventions, retries as span
events, streams that end their span when they end or break, and the GenAI metrics."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.observe import otel
from scripted_server import ScriptedServer, json_reply, sse_reply
from test_faults_support import DONE, chunk, completion, error_body, openai


@pytest.fixture
def srv():
    with ScriptedServer() as s:
        yield s


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer = TracerProvider()
        tracer.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracer = tracer

    def finished(self) -> list:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        out = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def telemetry():
    t = Telemetry()
    otel.instrument(tracer_provider=t.tracer, meter_provider=t.meters)
    yield t
    otel.uninstrument()


def test_import_msgflux_imports_no_opentelemetry() -> None:
    code = ("import sys, msgflux as mf; import msgflux.observe; "
            "m = mf.Model.chat_completion('openai/gpt-4o', api_key='x'); "
            "print(sorted(n for n in sys.modules if n.startswith('opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_call_is_one_span_with_the_genai_attributes(srv, telemetry) -> None:
    srv.enqueue(json_reply(429, error_body(429), headers={"retry-after": "0"}))
    body = completion("hi")
    body["usage"] = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
                     "prompt_tokens_details": {"cached_tokens": 4}}
    srv.enqueue(json_reply(200, body))
    with openai(srv, temperature=0.5, max_tokens=20) as model:
        model("hello")
    [span] = telemetry.finished()
    assert span.name == "chat gpt-4o" and span.kind == SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai" and a["gen_ai.request.model"] == "gpt-4o"
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.max_tokens"]) == (0.5, 20)
    assert a["gen_ai.response.model"] == "m" and a["gen_ai.response.id"] == "c1"
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 3)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == srv.port
    assert "gen_ai.input.messages" not in a and "error.type" not in a
    assert [e.name for e in span.events] == ["gen_ai.client.retry"]
    assert span.events[0].attributes["error.type"] == "RateLimitError"
    assert span.status.status_code != StatusCode.ERROR
    tokens = {p.attributes["gen_ai.token.type"]: p.sum
              for p in telemetry.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 11, "output": 3}
    [duration] = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and duration.attributes["gen_ai.provider.name"] == "openai"


def test_a_failed_call_ends_its_span_in_error(srv, telemetry) -> None:
    srv.enqueue(json_reply(400, error_body(400)))
    with openai(srv) as model, pytest.raises(exc.BadRequestError):
        model("hello")
    [span] = telemetry.finished()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "BadRequestError"
    assert [e.name for e in span.events] == ["exception"]
    [duration] = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "BadRequestError"
    assert telemetry.points("gen_ai.client.token.usage") == []


def test_a_stream_span_ends_when_the_stream_ends(srv, telemetry) -> None:
    usage = {"id": "s1", "model": "m", "choices": [],
             "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}}
    srv.enqueue(sse_reply([chunk("Hel"), chunk("lo", finish="stop"), usage, DONE]))
    with openai(srv) as model:
        response = model("hi", stream=True)
        assert telemetry.finished() == []  # started, not ended
        assert "".join(response.consume()) == "Hello"
    [span] = telemetry.finished()
    assert span.attributes["gen_ai.usage.output_tokens"] == 2
    assert span.status.status_code != StatusCode.ERROR


def test_a_broken_stream_ends_its_span_in_error(srv, telemetry) -> None:
    srv.enqueue(sse_reply([chunk("Hel"), chunk("lo")]))  # cut short: no finish, no [DONE]
    with openai(srv) as model:
        response = model("hi", stream=True)
        with pytest.raises(exc.StreamError):
            "".join(response.consume())
    [span] = telemetry.finished()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "StreamError"


def test_content_is_recorded_only_when_asked(srv) -> None:
    t = Telemetry()
    otel.instrument(tracer_provider=t.tracer, meter_provider=t.meters, capture_content=True)
    try:
        srv.enqueue(json_reply(200, completion("the answer")))
        with openai(srv) as model:
            model("my question", system_prompt="be brief")
    finally:
        otel.uninstrument()
    [span] = t.finished()
    messages = json.loads(span.attributes["gen_ai.input.messages"])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["parts"] == [{"type": "text", "content": "my question"}]
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output[0]["parts"][0]["content"] == "the answer"


def test_uninstrument_stops_tracing(srv) -> None:
    t = Telemetry()
    otel.instrument(tracer_provider=t.tracer, meter_provider=t.meters)
    otel.uninstrument()
    srv.enqueue(json_reply(200, completion("x")))
    with openai(srv) as model:
        model("hi")
    assert t.finished() == []
    assert mf.observe.otel is otel
