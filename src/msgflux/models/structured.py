"""``generation_schema``: msgspec Struct ⇄ JSON Schema, strict lowering, decoding.

A Struct compiles once (cached per type) into an :class:`~msgflux.models.request.OutputSchema`
holding two shapes of the same schema: the logical one (references inlined) and
the one lowered to what strict modes accept — every object closed, every
property required (optional ones made nullable), maps written as lists of
``{"key", "value"}`` entries, fixed-length tuples written as objects keyed
``"0"``, ``"1"``, …, and keywords strict modes reject removed. Decoding undoes
the lowering whichever shape the model followed, then validates against the
Struct itself, so the result is exactly what the Struct allows.

Fixed-length tuples (``tuple[float, float]``, NamedTuples, ``array_like``
Structs) are ``prefixItems`` in JSON Schema. What each provider's schema subset
says about it (checked against their documentation):

- OpenAI strict structured outputs ("Supported schemas", platform.openai.com
  docs, guide "Structured model outputs") lists the types, ``anyOf`` and, for
  arrays, only ``items``, ``minItems`` and ``maxItems``; ``prefixItems`` is not
  in the subset (the openai-agents maintainers call it "not a supported
  direction", openai/openai-agents-python#4696).
- Anthropic ``output_config.format`` ("JSON Schema limitations", docs
  "Structured outputs"): arrays take ``items`` and ``minItems`` of 0 or 1; the
  official SDK's ``transform_schema`` (anthropic-sdk-python
  ``lib/_parse/_transform.py``) keeps nothing else on an array either.
- The Gemini API's ``responseJsonSchema``/``parametersJsonSchema`` list
  ``prefixItems``, ``minItems`` and ``maxItems`` among the keywords they
  support (``GenerationConfig.response_json_schema`` in google-genai).

So the strict shape (sent to OpenAI strict mode and Anthropic's native format)
writes a tuple as a closed object ``{"0": …, "1": …}`` with every position
required, and the logical shape (sent to Gemini, to non-strict OpenAI-compatible
servers and as a tool ``input_schema``) keeps ``prefixItems``. An object keeps
one schema per position, so the model cannot put a string where the tuple has
a number; a fixed array of a union with ``minItems``/``maxItems`` could, and its
output would then fail validation. The key order of the object is the tuple's
order, which strict decoders follow.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import msgspec

from msgflux.dotdict import dotdict, to_dotdict
from msgflux.exceptions import InvalidParameterError, StructuredOutputError
from msgflux.models.request import OutputSchema

__all__ = ["CompiledSchema", "compile_schema", "decode_structured"]

# Keywords strict json_schema modes reject or that carry no meaning for generation.
_DROP = frozenset({"title", "default", "discriminator", "examples", "$schema"})


class CompiledSchema:
    """Everything needed to ask for and read back one Struct type."""

    __slots__ = ("needs_restore", "output", "schema", "type")

    def __init__(self, type_: type, output: OutputSchema, needs_restore: bool) -> None:
        self.type = type_
        self.output = output
        self.schema = output.schema
        self.needs_restore = needs_restore


def compile_schema(schema_type: Any) -> CompiledSchema:
    """Compile a msgspec Struct type (cached; bad types fail with a clear error)."""
    if not (isinstance(schema_type, type) and issubclass(schema_type, msgspec.Struct)):
        raise InvalidParameterError(
            f"generation_schema must be a msgspec.Struct subclass, got {schema_type!r}. "
            "Define it as `class Answer(msgspec.Struct): ...`."
        )
    return _compile(schema_type)


@functools.lru_cache(maxsize=512)
def _compile(schema_type: type) -> CompiledSchema:
    try:
        raw = msgspec.json.schema(schema_type)
    except (TypeError, ValueError) as e:
        raise InvalidParameterError(
            f"generation_schema {schema_type.__name__} cannot be turned into JSON Schema: {e}"
        ) from None
    except KeyError as e:
        # msgspec < 0.23 cannot name two different Structs that share a module and a
        # name (0.23 names them Item and Item_2). Such code is legitimate: say how to
        # get past the old msgspec.
        raise InvalidParameterError(
            f"generation_schema {schema_type.__name__} uses two different Structs named "
            f"{getattr(e.args[0], '__qualname__', e) if e.args else e} in one module, which "
            f"msgspec {msgspec.__version__} cannot describe: upgrade msgspec to 0.23 or "
            "later, or rename one of them"
        ) from None
    defs = raw.get("$defs", {})
    logical = _inline(raw, defs, ())
    logical.pop("$defs", None)
    state = {"restore": False}
    strict = _lower(logical, state, schema_type.__name__)
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", schema_type.__name__)[:64] or "output"
    doc = logical.get("description")
    output = OutputSchema(name=name, schema=logical, strict_schema=strict, description=doc)
    return CompiledSchema(schema_type, output, state["restore"])


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/"):]
            if name in seen:
                raise InvalidParameterError(
                    f"generation_schema: {name} refers to itself; recursive schemas are not "
                    "supported for structured output. Bound the depth with separate Structs."
                )
            merged = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[name], defs, (*seen, name)), **merged}
        return {k: _inline(v, defs, seen) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs, seen) for v in node]
    return node


def _is_nullable(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "null":
        return True
    return any(b.get("type") == "null" for b in schema.get("anyOf", ()))


def _lower(node: dict[str, Any], state: dict[str, bool], where: str) -> dict[str, Any]:
    """The strict-mode shape of one (inlined) schema node."""
    if not node or node == {"description": node.get("description")}:
        raise InvalidParameterError(
            f"generation_schema: {where} has no type (Any); strict structured output needs a "
            "concrete type there (str, int, a Struct, list[...], dict[str, ...])."
        )
    out = {k: v for k, v in node.items() if k not in _DROP}
    if "anyOf" in node:
        out["anyOf"] = [_lower(b, state, where) for b in node["anyOf"]]
        return out
    kind = node.get("type")
    if kind == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props is None and isinstance(extra, dict):
            # A map: strict modes need closed objects, so send it as an entry list.
            state["restore"] = True
            value = _lower(extra, state, f"{where}[value]")
            key: dict[str, Any] = {"type": "string"}
            if "propertyNames" in node:
                key.update({k: v for k, v in node["propertyNames"].items() if k not in _DROP})
            out = {k: v for k, v in out.items()
                   if k not in ("additionalProperties", "propertyNames", "minProperties",
                                "maxProperties")}
            out["type"] = "array"
            out["items"] = {
                "type": "object",
                "properties": {"key": key, "value": value},
                "required": ["key", "value"],
                "additionalProperties": False,
            }
            return out
        props = props or {}
        required = set(node.get("required", ()))
        lowered = {}
        for name, sub in props.items():
            low = _lower(sub, state, f"{where}.{name}")
            if name not in required and not _is_nullable(sub):
                state["restore"] = True  # a null here means "use the default"
                low = {"anyOf": [low, {"type": "null"}]}
            lowered[name] = low
        out["properties"] = lowered
        out["required"] = list(props)
        out["additionalProperties"] = False
        return out
    if kind == "array":
        if "prefixItems" in node:
            return _lower_tuple(node, state, where)
        if "items" in node:
            out["items"] = _lower(node["items"], state, f"{where}[]")
        return out
    return out


def _lower_tuple(node: dict[str, Any], state: dict[str, bool], where: str) -> dict[str, Any]:
    """A fixed-length tuple as a closed object keyed by position (see the module doc)."""
    state["restore"] = True
    prefix = node["prefixItems"]
    # Positions past minItems have defaults (NamedTuple, array_like Struct): null there
    # means "use the default", as for an optional property.
    least = node.get("minItems", len(prefix))
    props = {}
    for i, sub in enumerate(prefix):
        low = _lower(sub, state, f"{where}[{i}]")
        if i >= least and not _is_nullable(sub):
            low = {"anyOf": [low, {"type": "null"}]}
        props[str(i)] = low
    out: dict[str, Any] = {"type": "object"}
    if "description" in node:
        out["description"] = node["description"]
    out.update(properties=props, required=list(props), additionalProperties=False)
    return out


def _restore(value: Any, schema: dict[str, Any]) -> Any:
    """Undo the strict lowering on a decoded value (either shape is accepted)."""
    if "anyOf" in schema:
        branch = _branch(value, schema["anyOf"])
        return _restore(value, branch) if branch is not None else value
    kind = schema.get("type")
    if kind == "array" and "prefixItems" in schema:
        return _restore_tuple(value, schema)
    if kind == "object" and isinstance(value, (dict, list)):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and isinstance(extra, dict):
            if isinstance(value, list):
                value = {
                    e["key"]: e["value"] for e in value if isinstance(e, dict) and "key" in e
                }
            return {k: _restore(v, extra) for k, v in value.items()}
        if not isinstance(value, dict) or not props:
            return value
        required = schema.get("required", ())
        out = {}
        for k, v in value.items():
            sub = props.get(k)
            if sub is None:
                out[k] = v
            elif v is None and k not in required and not _is_nullable(sub):
                continue  # the lowered schema's null: let the Struct's default apply
            else:
                out[k] = _restore(v, sub)
        return out
    if kind == "array" and isinstance(value, list) and "items" in schema:
        return [_restore(v, schema["items"]) for v in value]
    return value


def _restore_tuple(value: Any, schema: dict[str, Any]) -> Any:
    prefix = schema["prefixItems"]
    if _is_tuple_object(value, schema):
        items = [value[str(i)] for i in range(len(prefix))]
        # Trailing nulls at positions with a default: let the default apply.
        least = schema.get("minItems", len(prefix))
        while len(items) > least and items[-1] is None and not _is_nullable(
                prefix[len(items) - 1]):
            items.pop()
        value = items
    if not isinstance(value, list):
        return value
    return [_restore(v, prefix[i]) if i < len(prefix) else v for i, v in enumerate(value)]


def _is_tuple_object(value: Any, schema: dict[str, Any]) -> bool:
    """Is ``value`` the strict shape of this tuple: an object with exactly its positions?"""
    if not isinstance(value, dict):
        return False
    n = len(schema["prefixItems"])
    return len(value) == n and all(str(i) in value for i in range(n))


def _branch(value: Any, branches: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``anyOf`` branch a decoded value belongs to.

    A lowered tuple is an object too, so an object whose keys are exactly a tuple
    branch's positions goes to that branch before any object branch is tried.
    """
    for branch in branches:
        if branch.get("type") == "array" and "prefixItems" in branch and _is_tuple_object(
                value, branch):
            return branch
    return next((b for b in branches if _matches(value, b)), None)


_JSON_TYPES = {
    "object": (dict, list), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "object" and isinstance(value, list):
        # Only a map has a list shape (its entries); a Struct never does.
        return schema.get("properties") is None and isinstance(
            schema.get("additionalProperties"), dict)
    return isinstance(value, _JSON_TYPES.get(kind, object))


def decode_structured(compiled: CompiledSchema, text: str | bytes) -> dotdict:
    """Decode, restore and validate model output; a typed error keeps the raw text."""
    raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
    try:
        if compiled.needs_restore:
            value = _restore(msgspec.json.decode(text), compiled.schema)
            obj = msgspec.convert(value, compiled.type)
        else:
            obj = msgspec.json.decode(text, type=compiled.type)
    except msgspec.ValidationError as e:
        raise StructuredOutputError(
            f"The model's output does not match {compiled.type.__name__}: {e}", raw=raw
        ) from None
    except msgspec.DecodeError as e:
        raise StructuredOutputError(
            f"The model's output is not valid JSON for {compiled.type.__name__}: {e}", raw=raw
        ) from None
    return to_dotdict(msgspec.to_builtins(obj))
