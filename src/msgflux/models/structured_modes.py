"""Structured output that lands: which mode asks for it, falling back, asking again.

A ``generation_schema`` can be asked for in several **modes**, from the most to the
least constrained:

``json_schema``
    the provider's native schema-constrained output (OpenAI/compatible
    ``response_format: json_schema``, Anthropic ``output_config.format``, Gemini
    ``responseJsonSchema``);
``tool``
    one forced tool whose input is the answer (tool calling is constrained on
    more models than output is);
``json_object``
    the provider's JSON mode, with the schema in the prompt;
``prompt``
    the schema in the prompt only (any model);
``typed_xml`` (or any registered typed parser)
    the answer as typed XML, with the schema's fields in the prompt; chosen with
    ``structured_mode="typed_xml"`` or ``typed_parser="typed_xml"`` beside the schema.

**Planning.** :func:`plan_structured` orders the JSON modes a model can serve: those
its dialect has (Anthropic has no JSON mode; its native format exists from Claude
4.5), minus what its models.dev profile rules out (``structured_output: false`` →
no ``json_schema``; ``tool_call: false`` → no ``tool``). ``structured_mode=`` forces
one mode (nothing else is tried).

**Falling back.** When the provider answers a mode with a 400/422 saying it does not
support it (the response format, the schema, the tool), the next mode is tried, and
the model remembers where it landed: its next structured calls start there (on the
model's :class:`~msgflux.models.call.Wiring`, under a lock).

**Asking again.** When the answer does not decode or validate, the validation error
is sent back with the answer and the model asked again, at most
``max_validation_retries`` times (default :data:`DEFAULT_VALIDATION_RETRIES` = 1:
constrained modes practically never need one, and in prompted modes one round
with the error in hand fixes most slips; more rounds mostly repeat a mistake the
model cannot see, each at the price of a whole call). Refusals and answers cut at
the token limit are not asked again (the same request would end the same way).
The final error keeps every raw answer (``raw_answers``) and the summed usage
(``metadata``). A stream falls back too, while nothing has reached the caller; it is
not asked again (its partial objects have been handed out).

``metadata`` of the answer: ``structured_mode`` (the mode that produced it),
``attempts`` (calls that produced an answer), and the usage and cost of all of them.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from msgflux.exceptions import (
    BadRequestError,
    InvalidParameterError,
    OutputTruncatedError,
    RefusalError,
    ResponseError,
    StructuredOutputError,
    TypedParserError,
)
from msgflux.models.request import ChatRequest, Message, OutputSchema, TextPart
from msgflux.models.response import ModelResponse, ModelStreamResponse

__all__ = ["DEFAULT_VALIDATION_RETRIES", "JSON_MODES", "Plan", "StructuredStreamCall", "aanswer",
           "answer", "current", "plan_structured", "refuses_mode", "stream_call"]

JSON_MODES = ("json_schema", "tool", "json_object", "prompt")
DEFAULT_VALIDATION_RETRIES = 1

# The JSON modes each dialect can express, best first.
_DIALECT_MODES = {
    "openai": JSON_MODES,
    "openai_responses": JSON_MODES,
    "google": JSON_MODES,
    "anthropic": ("json_schema", "tool", "prompt"),
}
_OTHER_DIALECT = ("json_schema", "prompt")

_lock = threading.Lock()


class Plan:
    """How one structured call is asked for: the modes to try in order, whether one was
    forced, how many times a failed validation is asked again."""

    __slots__ = ("_outputs", "compiled", "forced", "modes", "parser", "retries")

    def __init__(self, compiled: Any, parser: Any, modes: tuple[str, ...], forced: bool,
                 retries: int) -> None:
        self.compiled = compiled
        self.parser = parser
        self.modes = modes
        self.forced = forced
        self.retries = retries
        self._outputs: dict[str, OutputSchema] = {}  # per mode (a model keeps its plans)

    def __repr__(self) -> str:
        return f"Plan(modes={self.modes}, retries={self.retries})"

    def after(self, mode: str) -> str | None:
        """The mode to try when ``mode`` was refused (``None``: nothing left)."""
        if self.forced or mode not in self.modes:
            return None
        i = self.modes.index(mode)
        return self.modes[i + 1] if i + 1 < len(self.modes) else None

    def apply(self, request: ChatRequest, mode: str | None) -> ChatRequest:
        """``request`` (with no output yet) asking for the answer in ``mode``."""
        compiled = self.compiled
        if compiled is None or mode is None:
            return request  # a typed parser alone: the caller's prompt asks for its format
        if mode in ("json_schema", "tool", "json_object"):
            output = self._outputs.get(mode)
            if output is None:
                output = self._outputs[mode] = msgspec.structs.replace(compiled.output, mode=mode)
            request = msgspec.structs.replace(request, output=output)
        if mode in ("json_object", "prompt"):
            return _with_instruction(request, _json_instruction(compiled))
        if mode == "tool":
            return _with_instruction(request, _tool_instruction(compiled))
        if mode not in JSON_MODES:
            return _with_instruction(request, _parser_instruction(self.parser, compiled))
        return request


def plan_structured(wiring: Any, compiled: Any, parser: Any, parser_name: Any, forced: Any,
                    retries: Any) -> Plan | None:
    """The plan of a call (``None`` for a plain text call); bad options fail here."""
    if compiled is None and parser is None:
        if forced is not None or retries is not None:
            what = "structured_mode" if forced is not None else "max_validation_retries"
            raise InvalidParameterError(
                f"{what} applies to structured calls: pass generation_schema (or typed_parser)"
            )
        return None
    count = _retries(retries)
    if compiled is None:
        if forced is not None:
            raise InvalidParameterError(
                "structured_mode needs a generation_schema; a typed_parser alone is asked "
                "for by your own prompt"
            )
        return Plan(None, parser, (parser_name,), True, count)
    if parser is not None:
        if forced is not None and forced != parser_name:
            raise InvalidParameterError(
                f"typed_parser={parser_name!r} asks for the answer as {parser_name}, but "
                f"structured_mode={forced!r}: pass one of them"
            )
        return Plan(compiled, parser, (parser_name,), True, count)
    available = _json_modes(wiring)
    if forced is not None:
        if not isinstance(forced, str):
            raise InvalidParameterError(f"structured_mode must be a str, got {forced!r}")
        if forced in JSON_MODES:
            if forced not in _DIALECT_MODES.get(wiring.row.dialect, _OTHER_DIALECT):
                raise InvalidParameterError(
                    f"structured_mode={forced!r} does not exist for provider "
                    f"{wiring.provider!r}; it takes "
                    f"{', '.join(_DIALECT_MODES.get(wiring.row.dialect, _OTHER_DIALECT))} "
                    "(or typed_xml)"
                )
            return Plan(compiled, None, (forced,), True, count)
        from msgflux.dsl.typed_parsers import get_typed_parser
        from msgflux.exceptions import TypedParserNotFoundError

        try:
            forced_parser = get_typed_parser(forced)
        except TypedParserNotFoundError:
            raise InvalidParameterError(
                f"structured_mode must be one of {', '.join(JSON_MODES)} or a typed parser "
                f"such as 'typed_xml', got {forced!r}"
            ) from None
        return Plan(compiled, forced_parser, (forced,), True, count)
    start = getattr(wiring, "structured_start", None)
    if start in available:
        available = available[available.index(start):]
    return Plan(compiled, None, available, False, count)


def _retries(value: Any) -> int:
    if value is None:
        return DEFAULT_VALIDATION_RETRIES
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterError(
            f"max_validation_retries must be an int >= 0, got {value!r}"
        )
    return value


def _json_modes(wiring: Any) -> tuple[str, ...]:
    """The JSON modes this model can serve, best first (see the module doc)."""
    dialect = wiring.row.dialect
    modes = list(_DIALECT_MODES.get(dialect, _OTHER_DIALECT))
    if dialect == "anthropic":
        from msgflux.models.dialects.anthropic import native_output

        if not native_output(wiring.model_id):
            modes.remove("json_schema")  # the same forced tool, honestly named
    profile = wiring.profile
    if profile is not None:
        caps = profile.capabilities
        if caps.structured_output is False and "json_schema" in modes:
            modes.remove("json_schema")
        if not caps.tool_call and "tool" in modes:
            modes.remove("tool")
    return tuple(modes)


def current(call: Any) -> Any:
    """``call`` in the mode its model now starts from (a later step of a tool loop after
    a downgrade), or ``call`` itself."""
    plan, start = call.plan, call.wiring.structured_start
    if plan is None or plan.forced or start == call.mode or start not in plan.modes:
        return call
    if plan.modes.index(start) < plan.modes.index(call.mode):
        return call
    return call.derive(plan.apply(call.base, start), mode=start)


def stream_call(call: Any) -> Any:
    """The stream side of ``call``: one that falls back through modes for a structured call."""
    return StructuredStreamCall(call) if call.plan is not None else call.stream_call()


def remember(wiring: Any, mode: str) -> None:
    """Start this model's next structured calls at ``mode`` (a downgrade that worked)."""
    with _lock:
        wiring.structured_start = mode


# ---------------------------------------------------------------- prompts


def _with_instruction(request: ChatRequest, text: str) -> ChatRequest:
    """The instruction joined to the first system message (or one made for it): some
    chat templates refuse a second system message."""
    messages = list(request.messages)
    first = messages[0] if messages else None
    if first is not None and first.role == "system":
        content = first.content
        if isinstance(content, str) or content is None:
            joined: Any = f"{content}\n\n{text}" if content else text
        else:
            joined = (*content, TextPart(text))
        messages[0] = msgspec.structs.replace(first, content=joined)
    else:
        messages.insert(0, Message("system", text))
    return msgspec.structs.replace(request, messages=tuple(messages))


def _json_instruction(compiled: Any) -> str:
    # An example of the shape first: given only a schema, small models write a schema back.
    example = msgspec.json.encode(_example(compiled.schema, compiled.lowered.defs, 0)).decode()
    schema = msgspec.json.encode(_without_titles(compiled.schema)).decode()
    return ("Reply with a JSON object shaped like this example, with your own values:\n"
            f"{example}\nReply with the JSON only: no text before or after it, no code "
            f"fences.\nThe JSON must follow this JSON Schema: {schema}")


def _without_titles(node: Any) -> Any:
    """The schema for the prompt: titles (type names) only tempt a model to write a
    schema back."""
    if isinstance(node, dict):
        return {k: (v if k in ("properties", "$defs") and not isinstance(v, dict) else
                    {n: _without_titles(x) for n, x in v.items()} if k in ("properties", "$defs")
                    else _without_titles(v))
                for k, v in node.items() if k != "title"}
    if isinstance(node, list):
        return [_without_titles(v) for v in node]
    return node


def _tool_instruction(compiled: Any) -> str:
    return (f"Answer by calling the function {compiled.output.name} with the answer as its "
            "arguments.")


def _example(node: Any, defs: dict[str, Any], depth: int) -> Any:
    """A value of the schema's shape, with placeholder values (for the prompt)."""
    node = _deref(node, defs)
    if depth > 6:
        return None
    enum = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(enum, list) and enum:
        return enum[0]
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        real = [b for b in branches if isinstance(b, dict) and b.get("type") != "null"]
        return _example(real[0], defs, depth + 1) if real else None
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        props = node.get("properties") or {}
        if not props and isinstance(node.get("additionalProperties"), dict):
            return {"key": _example(node["additionalProperties"], defs, depth + 1)}
        return {k: _example(v, defs, depth + 1) for k, v in props.items()}
    if kind == "array" or "items" in node or "prefixItems" in node:
        if "prefixItems" in node:
            return [_example(v, defs, depth + 1) for v in node["prefixItems"]]
        items = node.get("items")
        return [_example(items, defs, depth + 1)] if isinstance(items, dict) else []
    return _PLACEHOLDERS.get(kind, "...")


_PLACEHOLDERS: dict[Any, Any] = {"string": "...", "integer": 0, "number": 0.0,
                                 "boolean": True, "null": None}


def _parser_instruction(parser: Any, compiled: Any) -> str:
    logical, defs = compiled.lowered.logical, compiled.lowered.defs
    fields = "\n".join(_outline(logical, defs, "", 0))
    instructions = f"Give the answer with these fields (name: dtype):\n{fields}"
    encode = getattr(parser, "encode", None)
    if callable(encode):
        try:
            shape = encode(_example(logical, defs, 0))
        except Exception:  # a parser that cannot write this shape: the fields say enough
            shape = None
        if shape:
            instructions += f"\n\nShaped like this example, with your own values:\n{shape}"
    template = getattr(parser, "template", None)
    if not template:
        return instructions
    try:
        import jinja2
    except ImportError:
        from msgflux.exceptions import MissingDependencyError

        raise MissingDependencyError(
            f"Asking for a {parser.typed_parser_type} answer renders its Jinja template: "
            'pip install "msgflux[templates]"'
        ) from None
    return jinja2.Template(template).render(instructions=instructions).strip()


def _outline(node: dict[str, Any], defs: dict[str, Any], indent: str, depth: int) -> list[str]:
    """One line per field, ``name: dtype - description``; nested objects indented."""
    lines = []
    required = set(node.get("required", ()))
    for name, sub in (node.get("properties") or {}).items():
        sub = _deref(sub, defs)
        line = f"{indent}{name}: {_dtype(sub, defs)}"
        if name not in required:
            line += " (optional)"
        text = sub.get("description")
        if isinstance(text, str) and text:
            line += f" - {' '.join(text.split())[:300]}"
        lines.append(line)
        if sub.get("properties") and depth < 4:
            lines.extend(_outline(sub, defs, indent + "  ", depth + 1))
    return lines


def _dtype(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """The typed-XML spelling of a schema's type."""
    node = _deref(node, defs)
    enum = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(enum, list):
        return "one of " + ", ".join(msgspec.json.encode(v).decode() for v in enum[:20])
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return " | ".join(dict.fromkeys(_dtype(b, defs) for b in branches if isinstance(b, dict)))
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(_dtype({**node, "type": k}, defs) for k in kind)
    if kind == "array" or "items" in node or "prefixItems" in node:
        items = node.get("items")
        return f"list[{_dtype(items, defs)}]" if isinstance(items, dict) else "list"
    if kind == "object" or "properties" in node:
        extra = node.get("additionalProperties")
        if not node.get("properties") and isinstance(extra, dict):
            return f"dict[str, {_dtype(extra, defs)}]"
        return "dict"
    return _DTYPES.get(kind, "str") if isinstance(kind, str) else "str"


_DTYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool",
           "null": "none"}


def _deref(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref[len("#/$defs/"):], {})
    return node if isinstance(node, dict) else {}


_FEEDBACK_LIMIT = 2000


def _feedback(request: ChatRequest, raw: str, error: Exception, mode: str | None) -> ChatRequest:
    """``request`` continued with the rejected answer and what was wrong with it."""
    what = "typed XML" if mode not in JSON_MODES else "JSON"
    problem = str(error)
    if len(problem) > _FEEDBACK_LIMIT:
        problem = problem[:_FEEDBACK_LIMIT] + "..."
    turns = (
        Message("assistant", raw or "(empty answer)"),
        Message("user", f"That answer cannot be used: {problem}\nAnswer again with only the "
                        f"corrected {what}, following the required format exactly."),
    )
    return msgspec.structs.replace(request, messages=(*request.messages, *turns))


# ---------------------------------------------------------------- refusals of a mode

# What a provider's 400 says when it refuses a mode (the parameter, and a refusal word).
_MODE_WORDS = {
    "json_schema": ("response_format", "json_schema", "output_config", "responsejsonschema",
                    "response_json_schema", "responseschema", "structured output", "schema",
                    "json mode"),
    "tool": ("tool", "function"),
    "json_object": ("response_format", "json_object", "json mode", "responsemimetype",
                    "response_mime_type"),
}
_REFUSING = ("not supported", "unsupported", "does not support", "doesn't support",
             "not support", "invalid", "not permitted", "not allowed", "unknown",
             "unrecognized", "extra inputs", "not available", "cannot", "can't",
             "no longer", "not enabled")


def refuses_mode(error: BaseException, mode: str | None) -> bool:
    """Is ``error`` the provider saying it cannot serve ``mode`` (not some other 400)?"""
    words = _MODE_WORDS.get(mode or "")
    if words is None or not isinstance(error, BadRequestError):
        return False
    text = " ".join(str(x) for x in (error.message, error.code, error.body) if x).lower()
    return any(w in text for w in words) and any(w in text for w in _REFUSING)


# ---------------------------------------------------------------- running


class _Attempts:
    """The course of one structured call, sans-I/O: which call comes next after a
    refused mode or an answer that failed validation, and the answer's metadata."""

    def __init__(self, call: Any) -> None:
        self.raws: list[str] = []
        self.usage: Any = None
        self.left = call.plan.retries

    def refused(self, call: Any, error: BaseException) -> Any:
        """The call in the next mode, or ``error`` raised when there is none."""
        mode = call.plan.after(call.mode)
        if mode is None or not refuses_mode(error, call.mode):
            raise error
        remember(call.wiring, mode)
        return call.derive(call.plan.apply(call.base, mode), mode=mode)

    def invalid(self, call: Any, error: ResponseError) -> Any:
        """The call asking again, or ``error`` (with every raw answer) when it may not."""
        raw = error.raw or ""
        self.raws.append(raw)
        wiring = call.wiring
        self.usage = wiring.usage_of(error.metadata, self.usage)
        if isinstance(error, (RefusalError, OutputTruncatedError)) or self.left <= 0:
            error.raw_answers = list(self.raws)
            if error.metadata is not None:
                error.metadata["structured_mode"] = call.mode
                error.metadata["attempts"] = len(self.raws)
                wiring.set_usage(error.metadata, self.usage)
            raise error
        self.left -= 1
        return call.derive(_feedback(call.request, raw, error, call.mode))

    def finish(self, call: Any, meta: Any) -> None:
        """``meta`` of the answer: the mode, the attempts and the usage of all of them."""
        meta.update(self._named(call))
        if self.raws:
            call.wiring.set_usage(meta, call.wiring.usage_of(meta, self.usage))

    def finish_response(self, call: Any, response: ModelResponse) -> None:
        """:meth:`finish` for a complete answer, whose metadata a first attempt leaves
        to be made when read."""
        if self.raws:
            self.finish(call, response.metadata)
        else:
            response.amend_metadata(self._named(call))

    def _named(self, call: Any) -> dict[str, Any]:
        return {"structured_mode": call.mode, "attempts": len(self.raws) + 1}


_RETRIED = (StructuredOutputError, TypedParserError)


def answer(call: Any) -> ModelResponse | ModelStreamResponse:
    """Run a structured call: fall back through refused modes, ask again after an answer
    that does not validate."""
    if call.request.stream:
        return ModelStreamResponse.open(StructuredStreamCall(call))
    state = _Attempts(call)
    while True:
        try:
            response = call.run()
        except BadRequestError as e:
            call = state.refused(call, e)
            continue
        except _RETRIED as e:
            call = state.invalid(call, e)
            continue
        state.finish_response(call, response)
        return response


async def aanswer(call: Any) -> ModelResponse | ModelStreamResponse:
    """:func:`answer` on the running event loop."""
    if call.request.stream:
        return await ModelStreamResponse.aopen(StructuredStreamCall(call))
    state = _Attempts(call)
    while True:
        try:
            response = await call.arun()
        except BadRequestError as e:
            call = state.refused(call, e)
            continue
        except _RETRIED as e:
            call = state.invalid(call, e)
            continue
        state.finish_response(call, response)
        return response


class StructuredStreamCall:
    """A structured call's stream side that falls back to the next mode while it starts
    (a :class:`~msgflux.models.response.StreamCall`)."""

    def __init__(self, call: Any) -> None:
        self.state = _Attempts(call)
        self.current = call.stream_call()

    @property
    def known_type(self) -> str | None:
        return self.current.known_type

    @property
    def default_type(self) -> str:
        return self.current.default_type

    @property
    def lead(self) -> Any:
        return self.current.lead

    @property
    def partial(self) -> Any:
        return self.current.partial

    def open_sync(self) -> Any:
        return self.current.open_sync()

    async def open_async(self) -> Any:
        return await self.current.open_async()

    def retry(self, attempt: Callable[[], None]) -> None:
        while True:
            try:
                return self.current.retry(attempt)
            except BadRequestError as e:
                self.current = self.state.refused(self.current.call, e).stream_call()

    async def aretry(self, attempt: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                return await self.current.aretry(attempt)
            except BadRequestError as e:
                self.current = self.state.refused(self.current.call, e).stream_call()

    def spent(self, usage: Any) -> None:
        self.current.spent(usage)

    def broken(self, error: BaseException) -> None:
        self.current.broken(error)

    def finish(self, asm: Any) -> tuple[str, Any, Any]:
        try:
            kind, data, meta = self.current.finish(asm)
        except ResponseError as e:
            if e.metadata is not None:
                self.state.finish(self.current.call, e.metadata)
            raise
        self.state.finish(self.current.call, meta)
        return kind, data, meta
