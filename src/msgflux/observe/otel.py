"""OpenTelemetry for chat calls, following the GenAI semantic conventions.

    pip install "msgflux[otel]"

    from msgflux.observe import otel
    otel.instrument()                      # the global tracer and meter providers
    otel.instrument(tracer_provider=tp, meter_provider=mp, capture_content=True)
    otel.uninstrument()

Each call is one span ``chat {model}`` (kind CLIENT) from its start to its
answer — for a stream, to the stream's end or break — covering every retry,
with the attributes of the GenAI conventions: ``gen_ai.operation.name``,
``gen_ai.provider.name`` (and the older ``gen_ai.system``), the request's model
and sampling parameters, ``server.address``/``server.port``, the response's
model, id and finish reasons, ``gen_ai.usage.input_tokens``/``output_tokens``
(with the cache reads and writes), and ``error.type`` with an ERROR status when
the call fails. Each retry is a span event ``gen_ai.client.retry``. Metrics:
the histograms ``gen_ai.client.token.usage`` (``{token}``, by
``gen_ai.token.type``) and ``gen_ai.client.operation.duration`` (``s``).
Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``) is
recorded only with ``capture_content=True``.

Nothing of OpenTelemetry is imported until :func:`instrument` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgflux._version import __version__
from msgflux.observe import _observation
from msgflux.observe.events import (
    CallFailed,
    Event,
    RequestStarted,
    ResponseReceived,
    RetryScheduled,
)

if TYPE_CHECKING:
    from msgflux.models.request import ChatRequest, Message

__all__ = ["instrument", "uninstrument"]

# msgflux provider ids -> the conventions' well-known gen_ai.provider.name values.
_PROVIDERS = {"google": "gcp.gemini", "gemini": "gcp.gemini", "mistral": "mistral_ai",
              "xai": "x_ai", "azure": "azure.ai.openai"}
# Bucket boundaries the conventions ask for.
_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                  16777216, 67108864]
_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24,
                     20.48, 40.96, 81.92]

_active: _Telemetry | None = None


def instrument(tracer_provider: Any = None, meter_provider: Any = None, *,
               capture_content: bool = False) -> None:
    """Trace every chat call and record the GenAI metrics, until :func:`uninstrument`.

    ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers (the global ones
    when ``None``). ``capture_content``: record the messages and the answer on the
    span (off by default: they often hold personal data). Calling it again replaces
    the previous setup.
    """
    global _active
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        from msgflux.exceptions import MissingDependencyError

        raise MissingDependencyError(
            "OpenTelemetry is not installed: pip install 'msgflux[otel]' "
            "(and opentelemetry-sdk to export spans and metrics)"
        ) from None
    telemetry = _Telemetry(
        trace.get_tracer("msgflux", __version__, tracer_provider),
        metrics.get_meter("msgflux", __version__, meter_provider),
        bool(capture_content),
    )
    uninstrument()
    _active = telemetry
    _observation.add_sink(telemetry)


def uninstrument() -> None:
    """Stop tracing calls (spans already started still end)."""
    global _active
    if _active is not None:
        _observation.remove_sink(_active)
        _active = None


class _Telemetry:
    """The OpenTelemetry listener: one span per call, kept on the call's observation."""

    def __init__(self, tracer: Any, meter: Any, capture_content: bool) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.capture = capture_content
        self.kind = SpanKind.CLIENT
        self.error_status = Status
        self.error_code = StatusCode.ERROR
        self.tokens = _histogram(meter, "gen_ai.client.token.usage", "{token}",
                                 "Number of input and output tokens used.", _TOKEN_BUCKETS)
        self.duration = _histogram(meter, "gen_ai.client.operation.duration", "s",
                                   "GenAI operation duration.", _DURATION_BUCKETS)

    def on_event(self, obs: Any, event: Event) -> None:
        if isinstance(event, RequestStarted):
            self._start(obs, event)
            return
        state = obs.otel
        if state is None:
            return
        span, labels = state
        if isinstance(event, RetryScheduled):
            span.add_event("gen_ai.client.retry", {
                "retry": event.retry, "max_retries": event.max_retries,
                "delay": event.delay, "error.type": event.reason,
                **({"http.response.status_code": event.status} if event.status else {}),
            })
        elif isinstance(event, ResponseReceived):
            obs.otel = None
            self._answered(span, labels, event, obs.output)
        elif isinstance(event, CallFailed):
            obs.otel = None
            self._failed(span, labels, event)

    # -------------------------------------------------------------- span life

    def _start(self, obs: Any, event: RequestStarted) -> None:
        request: ChatRequest = obs.request
        host, _, port = event.server.rpartition(":")
        base = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _PROVIDERS.get(event.provider, event.provider),
            "gen_ai.system": _PROVIDERS.get(event.provider, event.provider),
            "gen_ai.request.model": event.model,
            "server.address": host or event.server,
        }
        if port.isdigit():
            base["server.port"] = int(port)
        attributes = dict(base)
        for key, value in (("temperature", request.temperature), ("top_p", request.top_p),
                           ("max_tokens", request.max_tokens), ("seed", request.seed)):
            if value is not None:
                attributes[f"gen_ai.request.{key}"] = value
        if request.stop:
            attributes["gen_ai.request.stop_sequences"] = list(request.stop)
        if request.output is not None:
            attributes["gen_ai.output.type"] = "json"
        if self.capture:
            attributes["gen_ai.input.messages"] = _messages_json(request.messages)
        span = self.tracer.start_span(f"chat {event.model}", kind=self.kind,
                                      attributes=attributes)
        obs.otel = (span, base)  # the span, and the metrics' attributes

    def _answered(self, span: Any, labels: dict[str, Any], event: ResponseReceived,
                  output: Any) -> None:
        if event.response_model:
            span.set_attribute("gen_ai.response.model", event.response_model)
        if event.response_id:
            span.set_attribute("gen_ai.response.id", event.response_id)
        if event.finish_reason:
            span.set_attribute("gen_ai.response.finish_reasons", [event.finish_reason])
        usage = event.usage
        if usage is not None:
            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
            if usage.cached_tokens is not None:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
            if usage.cache_write_tokens is not None:
                span.set_attribute("gen_ai.usage.cache_creation.input_tokens",
                                   usage.cache_write_tokens)
        if event.cost is not None:
            span.set_attribute("msgflux.cost_usd", event.cost)
        span.set_attribute("msgflux.attempts", event.attempts)
        if self.capture and output is not None:
            span.set_attribute("gen_ai.output.messages", _output_json(output, event))
        span.end()
        labels = dict(labels)
        if event.response_model:
            labels["gen_ai.response.model"] = event.response_model
        self.duration.record(event.duration, labels)
        if usage is not None:
            self.tokens.record(usage.prompt_tokens, {**labels, "gen_ai.token.type": "input"})
            self.tokens.record(usage.completion_tokens,
                               {**labels, "gen_ai.token.type": "output"})

    def _failed(self, span: Any, labels: dict[str, Any], event: CallFailed) -> None:
        span.set_attribute("error.type", event.error_type)
        span.set_attribute("msgflux.attempts", event.attempts)
        span.record_exception(event.error)
        span.set_status(self.error_status(self.error_code, str(event.error)[:200]))
        span.end()
        self.duration.record(event.duration, {**labels, "error.type": event.error_type})


def _histogram(meter: Any, name: str, unit: str, description: str,
               buckets: list[float]) -> Any:
    try:  # the bucket advisory exists from opentelemetry-api 1.23 on
        return meter.create_histogram(name, unit=unit, description=description,
                                      explicit_bucket_boundaries_advisory=buckets)
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)


def _messages_json(messages: tuple[Message, ...]) -> str:
    """The conversation as the conventions' ``gen_ai.input.messages`` (JSON text)."""
    import msgspec

    from msgflux.models.request import TextPart

    out = []
    for m in messages:
        parts: list[dict[str, Any]] = []
        content = m.content
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif content:
            parts.extend({"type": "text", "content": p.text} if isinstance(p, TextPart)
                         else {"type": type(p).__name__.removesuffix("Part").lower()}
                         for p in content)
        parts.extend({"type": "tool_call", "id": c.id, "name": c.name,
                      "arguments": c.arguments} for c in m.tool_calls)
        if m.role == "tool":
            parts = [{"type": "tool_call_response", "id": m.tool_call_id,
                      "result": content if isinstance(content, str) else ""}]
        out.append({"role": m.role, "parts": parts})
    return msgspec.json.encode(out).decode()


def _output_json(output: Any, event: ResponseReceived) -> str:
    """The answer as the conventions' ``gen_ai.output.messages`` (JSON text)."""
    import msgspec

    if isinstance(output, str):
        parts: list[dict[str, Any]] = [{"type": "text", "content": output}]
    elif hasattr(output, "get_calls"):
        parts = [{"type": "tool_call", "id": c["id"], "name": c["function"]["name"],
                  "arguments": c["function"]["arguments"]} for c in output.get_calls()]
    else:
        parts = [{"type": "text", "content": msgspec.json.encode(output).decode()}]
    return msgspec.json.encode([{"role": "assistant", "parts": parts,
                                 "finish_reason": event.finish_reason}]).decode()
