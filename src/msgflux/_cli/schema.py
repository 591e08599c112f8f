"""``msgflux chat --json-schema FILE``: a JSON Schema document turned into a msgspec Struct.

The model API takes ``generation_schema=`` a Struct, which msgflux lowers to each
provider's strict mode and validates the answer against. Building the Struct from the
user's schema keeps both of those for the command line. Keywords that would change what
is valid but have no Struct equivalent are refused, so the printed JSON never silently
breaks the user's schema.
"""

from __future__ import annotations

import datetime
import keyword
import re
import uuid
from typing import Annotated, Any, Literal, Union

import msgspec

__all__ = ["SchemaFileError", "load_schema_struct", "struct_from_json_schema"]


class SchemaFileError(ValueError):
    """The schema file cannot be read or expressed as a Struct (a usage error: exit 2)."""


# Validation keywords with no Struct counterpart: ignoring them would accept invalid output.
_UNSUPPORTED = ("allOf", "not", "if", "then", "else", "patternProperties", "prefixItems",
                "dependentRequired", "dependentSchemas", "contains", "uniqueItems")
_FORMATS: dict[str, type] = {
    "date-time": datetime.datetime, "date": datetime.date, "time": datetime.time,
    "uuid": uuid.UUID,
}
_SCALARS: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool, "null": None,
}
# JSON Schema keyword -> msgspec.Meta argument, per kind of value.
_META = {
    "string": {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"},
    "number": {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt",
               "exclusiveMaximum": "lt", "multipleOf": "multiple_of"},
    "array": {"minItems": "min_length", "maxItems": "max_length"},
    "object": {"minProperties": "min_length", "maxProperties": "max_length"},
}
_META["integer"] = _META["number"]


def load_schema_struct(path: str) -> type[msgspec.Struct]:
    """Read ``path`` and build its Struct; every failure is a one-line SchemaFileError."""
    try:
        with open(path, "rb") as f:
            document = msgspec.json.decode(f.read())
    except OSError as e:
        raise SchemaFileError(f"--json-schema: cannot read {path}: {e.strerror or e}") from None
    except msgspec.DecodeError as e:
        raise SchemaFileError(f"--json-schema: {path} is not valid JSON: {e}") from None
    stem = re.sub(r"\W", "_", path.replace("\\", "/").rsplit("/", 1)[-1].split(".")[0])
    return struct_from_json_schema(document, name=stem or "Output")


def struct_from_json_schema(document: Any, name: str = "Output") -> type[msgspec.Struct]:
    """A Struct type accepting exactly the JSON objects ``document`` describes.

    Accepts a bare schema or OpenAI's wrappers (``{"name", "schema"}`` and
    ``{"type": "json_schema", "json_schema": {...}}``). The root must be an object.
    """
    if not isinstance(document, dict):
        raise SchemaFileError("--json-schema: the file must hold a JSON object (a schema)")
    if document.get("type") == "json_schema" and isinstance(document.get("json_schema"), dict):
        document = document["json_schema"]
    if "schema" in document and "properties" not in document:
        name = str(document.get("name") or name)
        document = document["schema"]
    return _Builder(document).root(name)


class _Builder:
    def __init__(self, root: dict[str, Any]) -> None:
        self.doc = root
        self.defs = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.by_ref: dict[str, Any] = {}  # one type per $ref target, built once

    def root(self, name: str) -> type[msgspec.Struct]:
        node, seen = self.deref(self.doc, ())
        if node.get("type") != "object" or not isinstance(node.get("properties"), dict):
            raise SchemaFileError(
                "--json-schema: the root must be an object schema with \"properties\" "
                '(e.g. {"type": "object", "properties": {"answer": {"type": "string"}}})'
            )
        return self.struct(node, str(node.get("title") or name), seen)

    def deref(self, node: Any, seen: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
        if not isinstance(node, dict):
            # ``true`` / ``{}`` mean "anything", which strict structured output cannot ask for.
            raise SchemaFileError(f"--json-schema: expected a schema object, got {node!r}")
        ref = node.get("$ref")
        if ref is None:
            return node, seen
        key = re.sub(r"^#/(\$defs|definitions)/", "", ref) if isinstance(ref, str) else None
        if key is None or key == ref or key not in self.defs:
            raise SchemaFileError(
                f"--json-schema: cannot resolve $ref {ref!r}; only local #/$defs/... "
                "references are supported"
            )
        if key in seen:
            raise SchemaFileError(
                f"--json-schema: {key} refers to itself; recursive schemas are not supported"
            )
        target = {**self.defs[key], **{k: v for k, v in node.items() if k != "$ref"}}
        return target, (*seen, key)

    def type(self, node: Any, where: str, seen: tuple[str, ...]) -> Any:
        ref = node.get("$ref") if isinstance(node, dict) and len(node) == 1 else None
        if ref in self.by_ref:
            return self.by_ref[ref]
        tp = self.build(node, where, seen)
        if ref is not None:
            self.by_ref[ref] = tp
        return tp

    def build(self, node: Any, where: str, seen: tuple[str, ...]) -> Any:
        depth = len(seen)
        node, seen = self.deref(node, seen)
        if len(seen) > depth:
            where = seen[-1]  # a $ref target is named after its definition
        bad = [k for k in _UNSUPPORTED if k in node]
        if bad:
            raise SchemaFileError(
                f"--json-schema: {where} uses {', '.join(bad)}, which msgflux cannot enforce"
            )
        if "const" in node:
            return self.annotate(_literal([node["const"]], where), node, None)
        if "enum" in node:
            return self.annotate(_literal(node["enum"], where), node, None)
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            union = [self.type(b, where, seen) for b in branches]
            return self.annotate(Union[tuple(union)], node, None)  # noqa: UP007 (runtime tuple)
        kinds = node.get("type")
        if isinstance(kinds, list):
            union = [self.type({**node, "type": k}, where, seen) for k in kinds]
            return Union[tuple(union)]  # noqa: UP007
        if kinds == "object":
            props = node.get("properties")
            extra = node.get("additionalProperties")
            if isinstance(props, dict):
                return self.annotate(self.struct(node, _title(node, where), seen), node, None)
            value = self.type(extra, f"{where}{{}}", seen) if isinstance(extra, dict) else Any
            return self.annotate(dict[str, value], node, "object")
        if kinds == "array":
            items = node.get("items")
            item = self.type(items, f"{where}[]", seen) if items is not None else Any
            return self.annotate(list[item], node, "array")
        if kinds == "string" and node.get("format") in _FORMATS:
            return self.annotate(_FORMATS[node["format"]], node, None)
        if kinds in _SCALARS:
            return self.annotate(_SCALARS[kinds], node, kinds)
        if kinds is None:
            return self.annotate(Any, node, None)  # msgflux itself says why Any cannot work
        raise SchemaFileError(f"--json-schema: {where} has unknown type {kinds!r}")

    def annotate(self, tp: Any, node: dict[str, Any], kind: str | None) -> Any:
        meta = {arg: node[key] for key, arg in _META.get(kind or "", {}).items() if key in node}
        if isinstance(node.get("description"), str):
            meta["description"] = node["description"]
        if not meta:
            return tp
        try:
            return Annotated[tp, msgspec.Meta(**meta)]
        except (TypeError, ValueError) as e:
            raise SchemaFileError(f"--json-schema: bad constraint {meta}: {e}") from None

    def struct(self, node: dict[str, Any], name: str, seen: tuple[str, ...]) -> type:
        required = set(node.get("required", ()))
        fields: list[Any] = []
        for i, (prop, sub) in enumerate(node["properties"].items()):
            tp = self.type(sub, f"{name}.{prop}", seen)
            # JSON names that are not Python identifiers keep their spelling on the wire.
            py_name = prop if prop.isidentifier() and not keyword.iskeyword(prop) else f"f{i}"
            if prop in required:
                default: Any = msgspec.field(name=prop) if py_name != prop else msgspec.NODEFAULT
            else:
                # UNSET, not None: an absent optional property stays absent in the output.
                tp = Union[tp, msgspec.UnsetType]  # noqa: UP007
                default = msgspec.field(default=msgspec.UNSET, name=prop)
            fields.append((py_name, tp) if default is msgspec.NODEFAULT else (py_name, tp, default))
        struct = msgspec.defstruct(
            re.sub(r"\W", "_", name) or "Output", fields, kw_only=True,
            forbid_unknown_fields=node.get("additionalProperties") is False,
        )
        if isinstance(node.get("description"), str):
            struct.__doc__ = node["description"]
        return struct


def _literal(values: Any, where: str) -> Any:
    if not isinstance(values, list) or not values:
        raise SchemaFileError(f"--json-schema: {where} has an empty or invalid enum")
    if any(isinstance(v, bool) or not isinstance(v, str | int | None) for v in values):
        raise SchemaFileError(
            f"--json-schema: {where}: enum/const values must be strings, integers or null"
        )
    return Literal[tuple(values)]


def _title(node: dict[str, Any], where: str) -> str:
    return str(node.get("title") or where.replace(".", "_").replace("[]", "_item"))
