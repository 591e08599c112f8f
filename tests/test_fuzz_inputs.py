"""Property-based bad input: messages, ChatBlock output, tool schemas, generation
schemas (random msgspec Structs), model paths and constructor/call parameters.

The outcome is always either a request the dialect encodes (``build_request``
gives JSON bytes) or one of our typed errors
(:class:`~msgflux.exceptions.MsgfluxError`) — never a foreign exception — and
bad input fails before any network I/O.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import typing
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import msgflux as mf
from msgflux import exceptions as exc
from msgflux.exceptions import ConfigurationError, MsgfluxError
from msgflux.models.options import CALL_ARGS, INIT_ARGS
from scripted_server import ScriptedServer

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
UNUSED = "http://127.0.0.1:9"  # discard port: nothing may ever be sent there
PATHS = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-x",
         "google": "google/gemini-2.0-flash", "groq": "groq/llama-3.1-8b-instant",
         "openrouter": "openrouter/openai/gpt-4o"}

_models: dict[str, typing.Any] = {}


def model_for(name: str):
    model = _models.get(name)
    if model is None:
        model = _models[name] = mf.Model.chat_completion(
            PATHS[name], base_url=UNUSED + ("/v1" if name != "anthropic" else ""),
            api_key="sk-fuzz", max_tokens=64)
    return model


def prepare(model, messages, **kwargs):
    """The model's pure steps up to the encoded request; no I/O."""
    args = {name: kwargs.get(name) for name in CALL_ARGS[1:]}
    args["stream"] = bool(args["stream"])
    call = model.prepare(messages, **args)
    http = call.http_request()
    assert http.method == "POST" and http.url.startswith(UNUSED)
    json.loads(http.body)  # valid JSON
    return call


def outcome(model, messages, **kwargs) -> str:
    try:
        prepare(model, messages, **kwargs)
    except MsgfluxError as e:
        assert str(e)
        return type(e).__name__
    return "ok"


# ---------------------------------------------------------------- value strategies

json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
json_values = st.recursive(json_scalars, lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                           max_leaves=8)
weird = st.one_of(json_values, st.binary(max_size=4), st.just(object()),
                  st.just(float("nan")), st.just(float("inf")), st.integers(2**64, 2**80),
                  st.just(b"x"), st.tuples(st.integers()), st.sets(st.integers(), max_size=2))

# JSON-like trees with leaves JSON cannot hold (objects, bytes, sets, huge ints, NaN).
any_values = st.recursive(json_scalars | weird, lambda kids: st.lists(kids, max_size=3)
                          | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                          max_leaves=6)
roles = st.sampled_from(["user", "assistant", "system", "tool", "developer"]) | weird
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": any_values}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.one_of(
        st.text(max_size=20), any_values,
        st.fixed_dictionaries({"url": any_values}, optional={"detail": any_values}))}),
    st.fixed_dictionaries({"type": st.just("input_audio"), "input_audio": st.one_of(
        any_values, st.fixed_dictionaries({}, optional={"data": any_values,
                                                         "format": any_values}))}),
    st.fixed_dictionaries({"type": st.just("file"), "file": st.one_of(
        any_values, st.fixed_dictionaries({}, optional={
            "file_data": any_values | st.just("data:application/pdf;base64,AAAA"),
            "file_id": any_values, "filename": any_values, "url": any_values}))}),
    st.dictionaries(st.sampled_from(["type", "text", "image_url"]), weird, max_size=3),
    weird,
)
content = st.none() | st.text(max_size=20) | st.lists(parts, max_size=3) | parts | weird
tool_call = st.one_of(weird, st.fixed_dictionaries(
    {"id": any_values, "type": st.just("function"),
     "function": st.one_of(weird, st.fixed_dictionaries({"name": any_values},
                                                        optional={"arguments": weird}))}))
message = st.fixed_dictionaries({"role": roles}, optional={
    "content": content,
    "tool_calls": st.lists(tool_call, max_size=2) | weird,
    "tool_call_id": st.text(max_size=5) | weird,
    "name": weird,
    "thinking_blocks": st.lists(st.dictionaries(
        st.sampled_from(["type", "thinking", "signature", "data"]),
        st.just("redacted_thinking") | weird, max_size=3), max_size=2) | weird,
})
messages_st = st.one_of(st.text(max_size=30), st.lists(message, max_size=4), message, weird,
                        st.lists(weird, max_size=2))


# ---------------------------------------------------------------- messages and ChatBlock


@pytest.mark.parametrize("provider", list(PATHS))
@FUZZ
@given(msgs=messages_st, system=st.none() | st.text(max_size=10) | weird,
       prefill=st.none() | st.text(max_size=10) | weird)
@example(msgs=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 1}}]}],
         system=None, prefill=None)
@example(msgs=[{"role": "assistant", "tool_calls": [{"id": 1, "type": "function",
                                                     "function": {"name": 2,
                                                                  "arguments": {"a": 1}}}]}],
         system="s", prefill=None)
def test_random_messages_give_a_request_or_a_typed_error(provider, msgs, system, prefill) -> None:
    outcome(model_for(provider), msgs, system_prompt=system, prefilling=prefill)


chatblock_calls = st.one_of(
    st.tuples(st.just("call"), weird | st.sampled_from(["user", "assistant", "system", "assist"]),
              weird, st.none() | weird),
    st.tuples(st.just("user"), weird, st.none() | parts | st.lists(parts, max_size=2) | weird),
    st.tuples(st.just("assistant"), weird),
    st.tuples(st.just("system"), weird),
    st.tuples(st.just("tool"), weird, weird),
    st.tuples(st.just("tool_call"), weird, weird, weird),
    st.tuples(st.just("assist_tool_calls"), st.lists(tool_call, max_size=2) | weird),
    st.tuples(st.just("image"), st.text(alphabet="abc:/.", max_size=12) | weird, st.none()),
    st.tuples(st.just("text"), weird),
)


@FUZZ
@given(st.lists(chatblock_calls, min_size=1, max_size=4))
def test_chatblock_output_gives_a_request_or_a_typed_error(calls) -> None:
    built = []
    for kind, *args in calls:
        try:
            if kind == "call":
                built.append(mf.ChatBlock(*args))
            else:
                built.append(getattr(mf.ChatBlock, kind)(*args))
        except MsgfluxError:
            continue
        except (TypeError, AttributeError) as e:  # a wrong argument type at a builder
            pytest.fail(f"ChatBlock.{kind}{tuple(args)!r} raised {type(e).__name__}: {e}")
    outcome(model_for("openai"), built)
    outcome(model_for("anthropic"), built)


# ---------------------------------------------------------------- tools


params = st.one_of(weird, st.fixed_dictionaries(
    {"type": st.just("object") | weird},
    optional={"properties": st.dictionaries(st.text(max_size=5), json_values, max_size=3)
              | weird, "required": st.lists(st.text(max_size=5), max_size=2) | weird,
              "additionalProperties": json_values}))
tool = st.one_of(weird, st.fixed_dictionaries(
    {"type": st.just("function") | weird,
     "function": st.one_of(weird, st.fixed_dictionaries(
         {"name": st.text(max_size=8) | weird},
         optional={"description": weird, "parameters": params, "strict": weird}))}),
    st.fixed_dictionaries({"name": st.text(max_size=8) | weird}, optional={"parameters": params}))
tool_choices = st.none() | st.sampled_from(["auto", "required", "none", "any"]) | weird | \
    st.fixed_dictionaries({"type": st.just("function"),
                           "function": st.fixed_dictionaries({"name": st.text(max_size=8)})})


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
@FUZZ
@given(tools=st.lists(tool, max_size=3) | weird, choice=tool_choices, stream=st.booleans())
@example(tools=[{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}}}}], choice="f", stream=True)
def test_random_tool_schemas_give_a_request_or_a_typed_error(provider, tools, choice,
                                                             stream) -> None:
    outcome(model_for(provider), "hi", tool_schemas=tools, tool_choice=choice, stream=stream)


# ---------------------------------------------------------------- generation schemas


def _struct_types() -> st.SearchStrategy[typing.Any]:
    base = st.sampled_from([int, str, float, bool, bytes, type(None), typing.Any,
                            datetime.datetime, datetime.date, uuid.UUID, decimal.Decimal])

    def extend(inner: st.SearchStrategy[typing.Any]) -> st.SearchStrategy[typing.Any]:
        return st.one_of(
            inner.map(lambda t: list[t]),
            inner.map(lambda t: dict[str, t]),
            inner.map(lambda t: dict[int, t]),
            inner.map(lambda t: tuple[t, ...]),
            inner.map(lambda t: typing.Optional[t]),  # noqa: UP045 - built at runtime
            st.tuples(inner, inner).map(lambda ts: typing.Union[ts[0], ts[1]]),  # noqa: UP007
            st.lists(st.text(max_size=3), min_size=1, max_size=3, unique=True)
            .map(lambda vs: typing.Literal[tuple(vs)]),
            st.builds(_random_struct, st.integers(0, 10**6), st.lists(inner, max_size=3),
                      st.booleans(), st.booleans()),
        )

    return st.recursive(base, extend, max_leaves=6)


def _random_struct(seed: int, types: list[typing.Any], array_like: bool = False,
                   tagged: bool = False) -> type:
    fields = []
    for i, t in enumerate(types):
        if i % 2:
            fields.append((f"f{i}", t, None))
        else:
            fields.append((f"f{i}", t))
    try:
        return msgspec.defstruct(f"S{seed}", fields, array_like=array_like, tag=tagged or None,
                                 kw_only=True)
    except (TypeError, ValueError):
        return msgspec.defstruct(f"S{seed}", [])


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
@FUZZ
@given(seed=st.integers(0, 10**6), types=st.lists(_struct_types(), max_size=4),
       array_like=st.booleans(), tagged=st.booleans(), stream=st.booleans())
def test_random_structs_as_generation_schema(provider, seed, types, array_like, tagged,
                                             stream) -> None:
    schema = _random_struct(seed, types, array_like, tagged)
    result = outcome(model_for(provider), "hi", generation_schema=schema, stream=stream)
    assert result == "ok" or result.endswith("Error")


@FUZZ
@given(schema=weird | st.sampled_from([int, dict, list[int], None.__class__]))
def test_any_generation_schema_gives_a_request_or_a_typed_error(schema) -> None:
    # Types and JSON Schema dicts are output types now; anything else is refused.
    result = outcome(model_for("openai"), "hi", generation_schema=schema)
    if schema is None or isinstance(schema, (type, dict)) or typing.get_origin(schema):
        assert result == "ok" or result.endswith("Error")
    else:
        assert result == "InvalidParameterError"


@FUZZ
@given(parser=weird | st.sampled_from(["typed_xml", "xml", "TYPED_XML", ""]),
       schema=st.none() | st.just(msgspec.defstruct("P", [("a", int)])))
def test_typed_parser_names(parser, schema) -> None:
    outcome(model_for("openai"), "hi", typed_parser=parser, generation_schema=schema)


# ---------------------------------------------------------------- paths and parameters


provider_names = st.sampled_from(["openai", "anthropic", "google", "groq", "openrouter",
                                  "ollama", "vllm", "lmstudio", "llamacpp-server", "mistral",
                                  "deepseek", "OPENAI", " openai ", "gemini", "claude",
                                  "open-ai", ""])
paths = st.one_of(
    weird,
    st.text(max_size=25),
    st.tuples(provider_names | st.text(max_size=8), st.sampled_from(["/", "//", " / ", ""]),
              st.text(max_size=12)).map("".join),
)
values = weird | st.sampled_from([0, -1, 1, 0.5, 2.5, 1e9, "", "x", "http://127.0.0.1:9/v1",
                                  "ftp://x", "https://", [1], ["a"], {"a": 1}, True, None,
                                  mf.Timeouts(total=1), mf.RetryPolicy()])
init_kwargs = st.dictionaries(st.sampled_from([*INIT_ARGS, "bogus", "provider", "model"]),
                              values, max_size=4)


@FUZZ
@given(path=paths, kwargs=init_kwargs)
@example(path="openai/gpt-4o", kwargs={"temperature": float("nan")})
@example(path="openai/gpt-4o", kwargs={"extra_body": {"n": 2**70}})
@example(path="openai/gpt-4o", kwargs={"stop": ["a", 1]})
@example(path="anthropic/claude-x", kwargs={"extra_headers": {"x": 1}})
def test_random_model_paths_and_constructor_parameters(path, kwargs) -> None:
    kwargs = dict(kwargs)
    kwargs.setdefault("api_key", "sk-fuzz")
    # None is "the provider's own URL": like any string, it is pointed at the discard port.
    if isinstance(kwargs.get("base_url"), str) or kwargs.get("base_url") is None:
        kwargs["base_url"] = UNUSED + "/v1"
    try:
        model = mf.Model.chat_completion(path, **kwargs)
    except MsgfluxError as e:
        assert isinstance(e, (ConfigurationError, mf.exceptions.MissingDependencyError)), e
        return
    repr(model)
    json.dumps(model.serialize())  # JSON-serialisable
    if not model._wiring.endpoint_ready:
        return  # the embedded engine would start on first use; nothing to encode here
    with contextlib.suppress(MsgfluxError):
        prepare(model, "hi")


call_kwargs = st.dictionaries(
    st.sampled_from(["system_prompt", "prefilling", "stream", "extra_body", "timeout",
                     "max_retries", "tool_choice", "typed_parser"]), values, max_size=4)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "google"])
@FUZZ
@given(kwargs=call_kwargs)
@example(kwargs={"extra_body": {"n": 2**70}})
@example(kwargs={"extra_body": {"x": float("nan")}})
def test_random_call_parameters(provider, kwargs) -> None:
    outcome(model_for(provider), "hi", **kwargs)


def test_unknown_call_keyword_is_an_error_listing_the_accepted_ones() -> None:
    for call in (model_for("openai"), model_for("openai").prepare):
        with pytest.raises(exc.InvalidParameterError, match="'temprature'") as info:
            call("hi", temprature=0.5)
        assert "temperature" in str(info.value) and "max_tokens" in str(info.value)


# ---------------------------------------------------------------- before the network


BAD_CALLS = [
    ({"messages": []}, "MessageFormatError"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "MessageFormatError"),
    ({"messages": 42}, "MessageFormatError"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "MessageFormatError"),
    ({"messages": "hi", "tool_schemas": {"name": "f"}}, "InvalidParameterError"),
    ({"messages": "hi", "tool_choice": "auto"}, "InvalidParameterError"),
    ({"messages": "hi", "generation_schema": 42}, "InvalidParameterError"),
    ({"messages": "hi", "generation_schema": {"type": 5}}, "InvalidParameterError"),
    ({"messages": "hi", "temperature": 3}, "InvalidParameterError"),
    ({"messages": "hi", "structured_mode": "json_schema"}, "InvalidParameterError"),
    ({"messages": "hi", "typed_parser": "nope"}, "TypedParserNotFoundError"),
    ({"messages": "hi", "timeout": -3}, "InvalidParameterError"),
    ({"messages": "hi", "max_retries": -1}, "InvalidParameterError"),
    ({"messages": "hi", "extra_body": [1]}, "InvalidParameterError"),
]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_bad_input_fails_before_any_network_io(use_async) -> None:
    import asyncio

    with ScriptedServer() as srv:
        model = mf.Model.chat_completion("openai/gpt-4o", base_url=srv.url + "/v1",
                                         api_key="k")
        for kwargs, name in BAD_CALLS:
            kwargs = dict(kwargs)
            msgs = kwargs.pop("messages")
            for stream in (False, True):
                with pytest.raises(MsgfluxError) as info:
                    if use_async:
                        asyncio.run(model.acall(msgs, stream=stream, **kwargs))
                    else:
                        model(msgs, stream=stream, **kwargs)
                assert type(info.value).__name__ == name, (kwargs, info.value)
        model.close()
        assert srv.connections == 0 and not srv.requests
