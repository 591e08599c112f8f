"""``generation_schema``: msgspec Struct ⇄ JSON Schema, strict lowering, decoding.

A Struct compiles once (cached per type) into an :class:`~msgflux.models.request.OutputSchema`
holding two shapes of the same schema: the logical one (references inlined) and
the one lowered to what strict modes accept — every object closed, every
property required (optional ones made nullable), maps written as lists of
``{"key", "value"}`` entries, and keywords strict modes reject removed. Decoding
undoes the lowering whichever shape the model followed, then validates against
the Struct itself, so the result is exactly what the Struct allows.
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
        if "items" in node:
            out["items"] = _lower(node["items"], state, f"{where}[]")
        if "prefixItems" in node:
            out["prefixItems"] = [_lower(i, state, f"{where}[]") for i in node["prefixItems"]]
        return out
    return out


def _restore(value: Any, schema: dict[str, Any]) -> Any:
    """Undo the strict lowering on a decoded value (either shape is accepted)."""
    if "anyOf" in schema:
        for branch in schema["anyOf"]:
            if _matches(value, branch):
                return _restore(value, branch)
        return value
    kind = schema.get("type")
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


_JSON_TYPES = {
    "object": (dict, list), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind is None:
        return True
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
