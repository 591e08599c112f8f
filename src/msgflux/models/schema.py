"""JSON Schema for structured output: normalising, strict lowering, restoring.

Every output type (a Struct, a pydantic model, ``list[str]``, a raw JSON Schema
dict…) becomes a JSON Schema here, in two shapes of the same schema:

- the **logical** shape: the schema as written, normalised — local ``$ref``\\ s
  resolved (inlined, except recursive ones, kept under ``$defs``), ``allOf``
  merged, draft-4 spellings (``items`` arrays, boolean ``exclusiveMinimum``,
  ``definitions``) brought to 2020-12, and a root that is not an object wrapped
  as ``{"value": …}`` (providers want an object at the root);
- the **strict** shape, lowered to what strict modes accept (OpenAI strict
  structured outputs, whose subset the others' strict modes share): every object
  closed with every property required (optional ones made nullable), maps
  written as lists of ``{"key", "value"}`` entries, fixed-length tuples written
  as objects keyed ``"0"``, ``"1"``, …, free-form values (``Any``, ``{}``) as a
  recursive ``JSONValue``, ``oneOf`` as ``anyOf``, ``const`` as a one-value
  ``enum``, and the keywords strict modes reject removed — each removed
  constraint is appended to the node's description, so the model still reads
  it, and the decoder enforces it.

:func:`restore` undoes the lowering on a decoded value, whichever shape the model
followed; the caller then validates the result against the original type or
schema, so nothing the lowering dropped goes unchecked.

Fixed-length tuples (``prefixItems``): OpenAI strict structured outputs
("Supported schemas", guide "Structured model outputs") lists only ``items``,
``minItems`` and ``maxItems`` for arrays, and Anthropic's
``output_config.format`` only ``items`` and ``minItems`` of 0 or 1 (its SDK's
``transform_schema`` keeps nothing else on an array); the Gemini API's
``responseJsonSchema`` lists ``prefixItems``. So the strict shape writes a tuple
as a closed object with one schema per position (a fixed array of a union would
let a string stand where the tuple has a number), and the logical shape, sent to
Gemini, to non-strict servers and as a tool's input schema, keeps
``prefixItems``.

The constraints the strict shape keeps are those OpenAI documents for strict
mode: ``pattern`` and ``format`` (date-time, time, date, duration, email,
hostname, ipv4, ipv6, uuid) on strings; ``minimum``, ``maximum``,
``exclusiveMinimum``, ``exclusiveMaximum`` and ``multipleOf`` on numbers;
``minItems`` and ``maxItems`` on arrays. ``minLength``/``maxLength``,
``uniqueItems``, ``minProperties``/``maxProperties``, ``not``,
``if``/``then``/``else``, dependencies and ``contains`` are removed (and
enforced when decoding). Dialects prune further for their provider.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from msgflux.exceptions import InvalidParameterError

__all__ = ["JSON_VALUE", "STRICT_FORMATS", "LoweredSchema", "constraint_note", "inline_refs",
           "lower", "restore"]

JSON_VALUE = "JSONValue"  # the $defs name of the strict shape's free-form value
WRAP_KEY = "value"  # the property holding a root that is not an object
EXTRA_KEY = "__extra__"  # entries of an object's extra properties, in the strict shape

STRICT_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname",
                            "ipv4", "ipv6", "uuid"})

# Annotations that carry no meaning for generation (``description`` is kept).
_ANNOTATIONS = frozenset({
    "title", "default", "examples", "example", "$schema", "$id", "id", "$comment",
    "$anchor", "$dynamicAnchor", "$vocabulary", "readOnly", "writeOnly", "deprecated",
    "discriminator", "contentMediaType", "contentEncoding", "contentSchema", "markdownDescription",
    "x-order", "propertyOrdering",
})
# Constraints the strict shape keeps, per type.
_KEEP = {
    "string": frozenset({"pattern", "format", "enum"}),
    "number": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                         "multipleOf", "enum"}),
    "integer": frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                          "multipleOf", "enum"}),
    "boolean": frozenset({"enum"}),
    "null": frozenset(),
    "array": frozenset({"minItems", "maxItems"}),
    "object": frozenset(),
}
# Keywords that hold one sub-schema, a list of them, or a map of names to them.
_ONE = frozenset({"additionalProperties", "items", "not", "if", "then", "else", "contains",
                  "propertyNames", "additionalItems", "unevaluatedProperties",
                  "unevaluatedItems"})
_LIST = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_MAP = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs",
                  "definitions"})
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
# Keywords that say which type a node without "type" has.
_IMPLIED = (
    ("object", ("properties", "additionalProperties", "patternProperties", "required",
                "minProperties", "maxProperties", "propertyNames")),
    ("array", ("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains")),
    ("string", ("pattern", "minLength", "maxLength", "format")),
    ("number", ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")),
)


class LoweredSchema:
    """The two shapes of one output schema (see the module doc)."""

    __slots__ = ("defs", "logical", "needs_restore", "strict", "wrapped")

    def __init__(self, logical: dict[str, Any], defs: dict[str, Any], strict: dict[str, Any],
                 wrapped: bool, needs_restore: bool) -> None:
        self.logical = logical
        self.defs = defs
        self.strict = strict
        self.wrapped = wrapped
        self.needs_restore = needs_restore


def lower(schema: dict[str, Any], where: str = "generation_schema") -> LoweredSchema:
    """Normalise ``schema`` and lower it to the strict shape (pure; ``schema`` is only read).

    Raises InvalidParameterError for what cannot be sent: a ``$ref`` to another
    document, a pointer that leads nowhere.
    """
    norm = _Normalizer(schema, where)
    root = norm.node(schema, ())
    defs = norm.defs
    ref = root.get("$ref")
    if isinstance(ref, str) and ref[len("#/$defs/"):] in defs:  # a recursive root
        root = {**defs[ref[len("#/$defs/"):]], **{k: v for k, v in root.items() if k != "$ref"}}
    wrapped = not _is_object_root(root)
    if wrapped:
        root = {"type": "object", "properties": {WRAP_KEY: root}, "required": [WRAP_KEY],
                "additionalProperties": False}
    lowerer = _Lowerer(defs)
    strict = lowerer.node(root, where)
    strict_defs = {name: lowerer.node(body, f"{where}/$defs/{name}")
                   for name, body in defs.items()}
    if lowerer.json_value:
        strict_defs[JSON_VALUE] = _json_value()
    if strict_defs:
        strict["$defs"] = strict_defs
    logical = dict(root)
    if defs:
        logical["$defs"] = defs
    return LoweredSchema(logical, defs, strict, wrapped, lowerer.restore or wrapped)


def _is_object_root(root: dict[str, Any]) -> bool:
    """Does the root stay an object in the strict shape (a map becomes a list)?"""
    return (_kinds(root) == "object" and bool(root.get("properties"))
            and not any(k in root for k in ("anyOf", "oneOf", "$ref", "enum", "const")))


# ---------------------------------------------------------------- normalising


# A definition used more than once and longer than this (in JSON characters) stays under
# $defs instead of being copied to every use: copies of big shared definitions can blow a
# schema up a thousandfold (JSONSchemaBench has such schemas).
_SHARED_INLINE_LIMIT = 1500


class _Normalizer:
    """Resolves local references and brings old spellings to 2020-12.

    A reference is inlined unless it refers to a schema being expanded (recursion),
    or to a big definition used more than once: such a target becomes
    ``$defs/<name>`` and every reference to it a ``$ref``.
    """

    def __init__(self, document: dict[str, Any], where: str) -> None:
        self.document = document
        self.where = where
        self.defs: dict[str, Any] = {}
        self.names: dict[str, str] = {}  # pointer of a target kept in $defs -> its name
        self.done: dict[str, Any] = {}  # pointer -> its normalised (inlined) body
        self.uses = _ref_counts(document)

    def node(self, node: Any, stack: tuple[str, ...]) -> dict[str, Any]:
        if node is True or node == {}:
            return {}
        if node is False:
            return {"not": {}}
        if not isinstance(node, dict):
            raise InvalidParameterError(
                f"{self.where}: a schema must be a JSON object or a boolean, got {node!r:.80}"
            )
        ref = node.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref, node, stack)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "definitions"):
                continue  # reached through the pointers that use them
            if key in _MAP and isinstance(value, dict):
                out[key] = {name: self.node(sub, stack) for name, sub in value.items()}
            elif key in _LIST and isinstance(value, list):
                out[key] = [self.node(sub, stack) for sub in value]
            elif key == "items" and isinstance(value, list):  # draft 4-2019 tuple
                out["prefixItems"] = [self.node(sub, stack) for sub in value]
                extra = node.get("additionalItems")
                if extra is False or "additionalItems" not in node:
                    out.setdefault("maxItems", len(value))
            elif key in _ONE and isinstance(value, (dict, bool)):
                if key == "additionalItems":
                    continue  # read with "items" above
                if key == "items" and value is False and "prefixItems" in node:
                    out.setdefault("maxItems", len(node["prefixItems"]))  # a closed tuple
                    continue
                out[key] = value if (key == "additionalProperties" and isinstance(value, bool)) \
                    else self.node(value, stack)
            elif key == "dependencies" and isinstance(value, dict):
                out[key] = {k: self.node(v, stack) if isinstance(v, (dict, bool)) else v
                            for k, v in value.items()}
            else:
                out[key] = value
        return _modernise(out)

    def _ref(self, ref: str, node: dict[str, Any], stack: tuple[str, ...]) -> dict[str, Any]:
        pointer = _pointer(ref, self.where)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if pointer in stack or pointer in self.names:
            name = self._name(pointer)
            if pointer not in stack and name not in self.defs:
                self.node(_resolve(self.document, pointer, self.where), (*stack, pointer))
            out: dict[str, Any] = {"$ref": f"#/$defs/{name}"}
            if isinstance(siblings.get("description"), str):
                out["description"] = siblings["description"]
            return out
        body = self.done.get(pointer)
        if body is None:
            target = _resolve(self.document, pointer, self.where)
            if self.uses.get(pointer, 0) > 1 and _annotations_only(siblings) \
                    and _size(target) > _SHARED_INLINE_LIMIT:
                name = self._name(pointer)  # kept under $defs from now on
                self.defs[name] = self.node(target, (*stack, pointer))
                return self._ref(ref, node, stack)
            body = self.node(target, (*stack, pointer))
            if pointer in self.names:  # it referred to itself while being expanded
                self.defs[self.names[pointer]] = body
                return self._ref(ref, node, stack)
            self.done[pointer] = body
        if not siblings:
            return body
        return _merge([body, self.node(siblings, stack)])

    def _name(self, pointer: str) -> str:
        name = self.names.get(pointer)
        if name is None:
            base = re.sub(r"[^A-Za-z0-9_.-]", "_", pointer.rsplit("/", 1)[-1]) or "Root"
            name = base
            n = 2
            while name in self.names.values() or name == JSON_VALUE:
                name = f"{base}_{n}"
                n += 1
            self.names[pointer] = name
        return name


def _ref_counts(document: Any) -> dict[str, int]:
    """How many times each local pointer is referred to in the document."""
    counts: dict[str, int] = {}
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                counts[ref] = counts.get(ref, 0) + 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return counts


def _size(node: Any) -> int:
    import msgspec

    try:
        return len(msgspec.json.encode(node))
    except (TypeError, ValueError):
        return 0


def _annotations_only(siblings: dict[str, Any]) -> bool:
    return all(k in _ANNOTATIONS or k == "description" for k in siblings)


def _pointer(ref: str, where: str) -> str:
    if ref == "#" or ref.startswith("#/"):
        return ref
    raise InvalidParameterError(
        f"{where}: $ref {ref!r} points outside the schema; only local references "
        "(#/$defs/..., #/definitions/...) can be sent to a model. Inline the referenced "
        "schema under $defs."
    )


def _resolve(document: dict[str, Any], pointer: str, where: str) -> Any:
    node: Any = document
    for part in pointer[2:].split("/") if pointer != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        from urllib.parse import unquote

        part = unquote(part)
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise InvalidParameterError(f"{where}: $ref {pointer!r} leads nowhere in the schema")
    return node


def _modernise(node: dict[str, Any]) -> dict[str, Any]:
    """Draft-4 bounds, OpenAPI ``nullable`` and ``allOf`` brought to one spelling."""
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = node.get(exclusive)
        if isinstance(flag, bool):
            node = dict(node)
            del node[exclusive]
            if flag and bound in node:
                node[exclusive] = node.pop(bound)
    if node.get("nullable") is True:
        node = {k: v for k, v in node.items() if k != "nullable"}
        kind = node.get("type")
        if isinstance(kind, str):
            node["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            node["type"] = [*kind, "null"]
    if isinstance(node.get("allOf"), list):
        rest = {k: v for k, v in node.items() if k != "allOf"}
        node = _merge([rest, *node["allOf"]])
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict) and isinstance(node.get("required"), list):
        # A required name that only a pattern describes becomes a property (the same
        # schema applies), so every shape can say it must be there and what it holds.
        props = dict(node.get("properties") or {})
        for name in node["required"]:
            if isinstance(name, str) and name not in props:
                sub = _value_schema(node, name)
                if sub:
                    props[name] = sub
        if props:
            node = {**node, "properties": props}
    return node


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One schema holding what every part requires (``allOf``, or a ``$ref`` with
    siblings). Properties and ``required`` are united; for other keywords the first
    part that sets one wins (the decoder checks the original anyway)."""
    out: dict[str, Any] = {}
    for part in parts:
        if "$ref" in part and "$ref" in out:
            continue  # two recursive references: keep the first
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged = dict(out.get("properties", {}))
                for name, sub in value.items():
                    merged[name] = _merge([merged[name], sub]) if name in merged else sub
                out["properties"] = merged
            elif key == "required" and isinstance(value, list):
                out["required"] = list(dict.fromkeys([*out.get("required", []), *value]))
            elif key == "type" and "type" in out and out["type"] != value:
                out["type"] = _intersect_types(out["type"], value)
            elif key not in out:
                out[key] = value
    return out


def _intersect_types(a: Any, b: Any) -> Any:
    left = set(a) if isinstance(a, list) else {a}
    right = set(b) if isinstance(b, list) else {b}
    if "number" in left:
        left.add("integer")
    if "number" in right:
        right.add("integer")
    both = [t for t in _TYPES if t in left and t in right]
    if not both:
        return a
    return both[0] if len(both) == 1 else both


# ---------------------------------------------------------------- strict lowering


class _Lowerer:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.restore = False
        self.json_value = False

    def node(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        if "$ref" in node:
            return {"$ref": node["$ref"]}  # only recursive references are left
        dropped: dict[str, Any] = {}
        if "const" in node and "enum" not in node:
            node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
        if "oneOf" in node and "anyOf" not in node:
            node = {**{k: v for k, v in node.items() if k != "oneOf"}, "anyOf": node["oneOf"]}
        branches = node.get("anyOf")
        kinds = _kinds(node)
        consumed = {"anyOf", "oneOf", "type", "description", "enum", "$defs", "definitions"}
        if isinstance(branches, list) and branches:
            base = {k: v for k, v in node.items()
                    if k not in ("anyOf", "oneOf", "description") and k not in _ANNOTATIONS}
            if _structural(base) or "type" in base:
                branches = [_merge([base, b]) for b in branches]
                consumed.update(node)
            out = {"anyOf": self._branches(branches, where)}
        elif isinstance(kinds, list):
            typed = [b for b in (_typed(node, k) for k in kinds) if b is not None]
            out = {"anyOf": self._branches(typed, where)} if typed else {"enum": node["enum"]}
            consumed.update(node)
        elif kinds is None:
            if isinstance(node.get("enum"), list):
                out = self._enum(node, dropped)
            else:
                self.json_value = self.restore = True
                out = {"$ref": f"#/$defs/{JSON_VALUE}"}
        else:
            out = self._typed(node, kinds, where, dropped)
            consumed.update(_KEEP[kinds], _HANDLED.get(kinds, ()))
        for key, value in node.items():
            if key not in consumed and key not in _ANNOTATIONS and key not in dropped:
                dropped[key] = value
        note = constraint_note(dropped)
        description = node.get("description")
        if (isinstance(description, str) and description) or note:
            text = "\n".join(x for x in (description, note) if isinstance(x, str) and x)
            if "$ref" in out:  # a $ref takes no siblings in strict modes
                out = {"anyOf": [out]}
            out = {"description": text, **out}
        return out

    def _branches(self, branches: list[Any], where: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, branch in enumerate(branches):
            low = self.node(branch, f"{where}|{i}")
            for b in low["anyOf"] if set(low) == {"anyOf"} else [low]:
                if b not in out:
                    out.append(b)
        return out

    def _enum(self, node: dict[str, Any], dropped: dict[str, Any]) -> dict[str, Any]:
        values = node["enum"]
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            return {"enum": list(values)}
        dropped["enum"] = values
        self.json_value = True
        return {"$ref": f"#/$defs/{JSON_VALUE}"}

    def _typed(self, node: dict[str, Any], kind: str, where: str,
               dropped: dict[str, Any]) -> dict[str, Any]:
        if kind == "object":
            return self._object(node, where, dropped)
        out: dict[str, Any] = {"type": kind}
        if kind == "array":
            if "prefixItems" in node:
                return self._tuple(node, where)
            items = node.get("items")
            out["items"] = self.node(items if isinstance(items, dict) else {}, f"{where}[]")
        for key in _KEEP[kind]:
            if key not in node:
                continue
            value = node[key]
            if key == "format" and value not in STRICT_FORMATS:
                dropped[key] = value
            elif key == "enum":
                if isinstance(value, list) and all(
                        v is None or isinstance(v, (str, int, float, bool)) for v in value):
                    # {"type": "string", "enum": ["s", null]} allows no null
                    out[key] = [v for v in value if _OF_KIND[kind](v)]
                else:
                    dropped[key] = value
            else:
                out[key] = value
        return out

    def _object(self, node: dict[str, Any], where: str, dropped: dict[str, Any]
                ) -> dict[str, Any]:
        props = node.get("properties")
        extra = node.get("additionalProperties")
        patterns = node.get("patternProperties")
        if not props and node.get("required"):  # named, but not described: any value
            props = {name: {} for name in node["required"] if isinstance(name, str)}
        if not isinstance(patterns, dict) or not patterns:
            patterns = None
        open_values = extra if isinstance(extra, dict) else None
        if not props:
            if patterns is None and open_values is None and extra is False:
                return {"type": "object", "properties": {}, "required": [],
                        "additionalProperties": False}
            # A map: strict modes need closed objects, so it goes as a list of entries.
            self.restore = True
            return {"type": "array", "items": self._entries(node, where)}
        required = set(node.get("required", ()))
        missing = [n for n in node.get("required", ()) if isinstance(n, str) and n not in props]
        if missing:  # required, described only by patternProperties (or not at all)
            props = {**props, **{n: _value_schema(node, n) for n in missing}}
        lowered = {}
        for name, sub in props.items():
            low = self.node(sub, f"{where}.{name}")
            if name not in required and not _is_nullable(sub):
                self.restore = True  # a null here means "leave it out"
                low = {"anyOf": [low, {"type": "null"}]} if "anyOf" not in low else {
                    **low, "anyOf": [*low["anyOf"], {"type": "null"}]}
            lowered[name] = low
        if patterns is not None or open_values is not None:
            self.restore = True
            lowered[EXTRA_KEY] = {"anyOf": [
                {"type": "array", "items": self._entries(node, where)}, {"type": "null"}]}
        return {"type": "object", "properties": lowered, "required": list(lowered),
                "additionalProperties": False}

    def _entries(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        """The entry object of a map: ``{"key": <name schema>, "value": <value schema>}``;
        one entry shape per ``patternProperties`` pattern, plus the others'."""
        patterns = node.get("patternProperties") or {}
        extra = node.get("additionalProperties")
        names = node.get("propertyNames")
        shapes = []
        for pattern, sub in patterns.items():
            shapes.append(({"type": "string", "pattern": pattern}, sub))
        if isinstance(extra, dict):
            shapes.append(({"type": "string"}, extra))
        elif extra is not False and not patterns:
            shapes.append(({"type": "string"}, {}))
        if isinstance(names, dict):
            shapes = [({**k, **{x: v for x, v in names.items() if x in ("pattern", "format",
                                                                        "enum")}}, s)
                      for k, s in shapes]
        entries = []
        for key, value in shapes:
            entries.append({
                "type": "object",
                "properties": {"key": self.node(key, f"{where}{{key}}"),
                               "value": self.node(value, f"{where}{{value}}")},
                "required": ["key", "value"],
                "additionalProperties": False,
            })
        return entries[0] if len(entries) == 1 else {"anyOf": entries}

    def _tuple(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        """A fixed-length tuple as a closed object keyed by position (see the module doc)."""
        self.restore = True
        prefix = node["prefixItems"]
        least = node.get("minItems", len(prefix))
        props = {}
        for i, sub in enumerate(prefix):
            low = self.node(sub, f"{where}[{i}]")
            if i >= least and not _is_nullable(sub):
                low = {"anyOf": [low, {"type": "null"}]}
            props[str(i)] = low
        return {"type": "object", "properties": props, "required": list(props),
                "additionalProperties": False}


# Keywords a typed node's lowering consumes itself (not "dropped").
_HANDLED = {
    "object": frozenset({"properties", "required", "additionalProperties",
                         "patternProperties", "propertyNames"}),
    "array": frozenset({"items", "prefixItems"}),
}
def _structural(base: dict[str, Any]) -> bool:
    return any(k in base for k in ("properties", "items", "prefixItems", "required",
                                   "additionalProperties", "patternProperties"))


def _kinds(node: dict[str, Any]) -> str | list[str] | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in _TYPES if k in kind]
        if not kinds:
            return None
        return kinds[0] if len(kinds) == 1 else kinds
    if isinstance(kind, str) and kind in _TYPES:
        return kind
    for implied, keys in _IMPLIED:
        if any(k in node for k in keys):
            return implied
    return None


_OF_KIND: dict[str, Any] = {
    "string": lambda v: isinstance(v, str), "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict),
}


def _typed(node: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The part of a multi-type node that applies to ``kind`` (``None`` when its
    ``enum`` holds no value of that kind: ``{"type": ["string", "null"], "enum": ["a"]}``
    does not allow null)."""
    keep = _KEEP[kind] | _HANDLED.get(kind, frozenset()) | {"description"}
    out = {"type": kind, **{k: v for k, v in node.items() if k in keep}}
    enum = node.get("enum")
    if isinstance(enum, list):
        values = [v for v in enum if _OF_KIND[kind](v)]
        if not values:
            return None
        if kind in _KEEP and "enum" in _KEEP[kind]:
            out["enum"] = values
    return out


def _is_nullable(schema: dict[str, Any]) -> bool:
    """Does ``schema`` allow null (a free-form schema does)?"""
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        return False
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        return False
    if _kinds(schema) is None and not any(k in schema for k in ("enum", "const", "anyOf",
                                                                "oneOf", "$ref", "not")):
        return True
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in (schema.get("enum") or ()):
        return True
    return any(isinstance(b, dict) and _is_nullable(b)
               for b in (*schema.get("anyOf", ()), *schema.get("oneOf", ())))


def constraint_note(dropped: dict[str, Any]) -> str:
    """Removed constraints, for the model to read: ``(minLength: 3, maxLength: 8)``."""
    shown = {k: v for k, v in dropped.items()
             if k not in _ANNOTATIONS and k not in ("$defs", "definitions")}
    if not shown:
        return ""
    import msgspec

    parts = []
    for key, value in shown.items():
        text = msgspec.json.encode(value).decode() if not isinstance(value, str) else value
        parts.append(f"{key}: {text if len(text) <= 200 else text[:200] + '...'}")
    return "(" + ", ".join(parts) + ")"


def _json_value() -> dict[str, Any]:
    """Any JSON value, in the strict shape: objects are ``{"entries": [{key, value}]}``."""
    ref = {"$ref": f"#/$defs/{JSON_VALUE}"}
    return {"anyOf": [
        {"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
        {"type": "array", "items": ref},
        {"type": "object",
         "properties": {"entries": {"type": "array", "items": {
             "type": "object", "properties": {"key": {"type": "string"}, "value": ref},
             "required": ["key", "value"], "additionalProperties": False}}},
         "required": ["entries"], "additionalProperties": False},
    ]}


_INLINE_NODES = 20_000  # expanded recursion must not blow a request up


class _TooBigError(Exception):
    pass


def inline_refs(schema: dict[str, Any], depth: int = 3) -> dict[str, Any]:
    """``schema`` without recursion, for providers that take none: a reference to a
    recursive definition is replaced by the definition, and a path through the schema
    may do so ``depth`` times in all (fewer when the expansion would pass
    :data:`_INLINE_NODES` nodes: a meta-schema refers to itself dozens of times a
    level); past that the reference becomes ``{"type": "null"}`` (deeper values cannot
    be written: an optional field or an empty list ends the structure there). Other
    references stay as they are."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict) or not defs:
        return schema
    recursive = _recursive_defs(defs)
    if not recursive:
        return schema
    nodes = [0]
    limit = [_INLINE_NODES]

    def walk(node: Any, budget: int) -> Any:
        if isinstance(node, list):
            return [walk(v, budget) for v in node]
        if not isinstance(node, dict):
            return node
        nodes[0] += 1
        if nodes[0] > limit[0]:
            raise _TooBigError
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/"):]
            if name not in recursive:
                return node
            if budget <= 0:
                return {"type": "null"}
            return walk(defs[name], budget - 1)
        return {k: v if k in ("enum", "const", "required") else walk(v, budget)
                for k, v in node.items() if k != "$defs"}

    for allowed in range(depth, -1, -1):
        nodes[0] = 0
        if allowed == 0:
            limit[0] = sys.maxsize  # no expansion left to cut: the schema's own size
        try:
            out = walk(schema, allowed)
            kept = {name: walk(body, allowed) for name, body in defs.items()
                    if name not in recursive}
        except _TooBigError:
            continue
        if kept:
            out["$defs"] = kept
        return out
    raise AssertionError("unreachable: depth 0 has no limit")


def _recursive_defs(defs: dict[str, Any]) -> set[str]:
    """The definitions that reach themselves through references."""
    edges = {name: _refs(body) & set(defs) for name, body in defs.items()}
    out = set()
    for name in defs:
        seen: set[str] = set()
        todo = list(edges[name])
        while todo:
            nxt = todo.pop()
            if nxt == name:
                out.add(name)
                break
            if nxt not in seen:
                seen.add(nxt)
                todo.extend(edges.get(nxt, ()))
    return out


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                found.add(ref[len("#/$defs/"):])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


# ---------------------------------------------------------------- restoring


def restore(value: Any, lowered: LoweredSchema) -> Any:
    """Undo the strict lowering on a decoded ``value`` (either shape is accepted) and
    unwrap a wrapped root."""
    if lowered.wrapped:
        if isinstance(value, dict) and len(value) == 1 and WRAP_KEY in value:
            value = value[WRAP_KEY]
        # else: the model wrote the bare value (a prompted mode); take it as it is
        root = lowered.logical["properties"][WRAP_KEY]
        return _restore(value, root, lowered.defs, 0) if lowered.needs_restore else value
    return _restore(value, lowered.logical, lowered.defs, 0)


_MAX_DEPTH = 200  # deeper values are returned as they are (recursion guard)


def _restore(value: Any, schema: dict[str, Any], defs: dict[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref[len("#/$defs/"):])
        if target is None:
            return value
        schema = target
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        base = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        branch = _branch(value, branches, defs)
        if branch is None:
            return value
        if _structural(base):
            branch = _merge([base, branch])
        return _restore(value, branch, defs, depth + 1)
    kinds = _kinds(schema)
    if isinstance(kinds, list):
        kinds = next((k for k in kinds if _matches(value, {"type": k}, defs)), None)
    if kinds is None:
        return _restore_any(value, depth) if not schema.get("enum") else value
    if kinds == "array":
        if "prefixItems" in schema:
            return _restore_tuple(value, schema, defs, depth)
        if isinstance(value, list):
            items = schema.get("items")
            if isinstance(items, dict):
                return [_restore(v, items, defs, depth + 1) for v in value]
        return value
    if kinds == "object":
        return _restore_object(value, schema, defs, depth)
    return value


def _restore_object(value: Any, schema: dict[str, Any], defs: dict[str, Any], depth: int
                    ) -> Any:
    props = schema.get("properties") or {}
    if isinstance(value, list):  # a map's entries
        if props:
            return value
        value = _from_entries(value)
        return {k: _restore(v, _value_schema(schema, k), defs, depth + 1)
                for k, v in value.items()}
    if not isinstance(value, dict):
        return value
    if not props:
        return {k: _restore(v, _value_schema(schema, k), defs, depth + 1)
                for k, v in value.items()}
    required = schema.get("required", ())
    out = {}
    for key, item in value.items():
        if key == EXTRA_KEY and EXTRA_KEY not in props:
            if isinstance(item, list):
                for k, v in _from_entries(item).items():
                    if k not in out:
                        out[k] = _restore(v, _value_schema(schema, k), defs, depth + 1)
            elif isinstance(item, dict):
                out.update(item)
            continue
        sub = props.get(key)
        if sub is None:
            out[key] = _restore(item, _value_schema(schema, key), defs, depth + 1)
        elif item is None and key not in required and not _is_nullable(_deref(sub, defs)):
            continue  # the strict shape's null: "leave it out" (a default applies)
        else:
            out[key] = _restore(item, sub, defs, depth + 1)
    return out


def _value_schema(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """The schema of a map's value under ``key`` (patternProperties first)."""
    for pattern, sub in (schema.get("patternProperties") or {}).items():
        try:
            if re.search(pattern, key):
                return sub
        except re.error:
            continue
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def _from_entries(entries: list[Any]) -> dict[str, Any]:
    return {e["key"]: e["value"] for e in entries
            if isinstance(e, dict) and isinstance(e.get("key"), str) and "value" in e}


def _restore_any(value: Any, depth: int) -> Any:
    """A free-form value: ``{"entries": [...]}`` objects back to dicts, all the way down."""
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [_restore_any(v, depth + 1) for v in value]
    if isinstance(value, dict):
        entries = value.get("entries")
        if len(value) == 1 and isinstance(entries, list) and all(
                isinstance(e, dict) and set(e) == {"key", "value"} for e in entries):
            return {e["key"]: _restore_any(e["value"], depth + 1) for e in entries
                    if isinstance(e["key"], str)}
        return {k: _restore_any(v, depth + 1) for k, v in value.items()}
    return value


def _restore_tuple(value: Any, schema: dict[str, Any], defs: dict[str, Any], depth: int
                   ) -> Any:
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
    return [_restore(v, prefix[i], defs, depth + 1) if i < len(prefix) else v
            for i, v in enumerate(value)]


def _is_tuple_object(value: Any, schema: dict[str, Any]) -> bool:
    """Is ``value`` the strict shape of this tuple: an object with exactly its positions?"""
    if not isinstance(value, dict):
        return False
    n = len(schema["prefixItems"])
    return len(value) == n and all(str(i) in value for i in range(n))


def _deref(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return defs.get(ref[len("#/$defs/"):], schema)
    return schema


def _branch(value: Any, branches: list[Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The ``anyOf`` branch a decoded value belongs to.

    A lowered tuple is an object too, so an object whose keys are exactly a tuple
    branch's positions goes to that branch before any object branch is tried; an
    object goes to the branch whose properties it has most of.
    """
    branches = [_deref(b, defs) for b in branches if isinstance(b, dict)]
    for branch in branches:
        if "prefixItems" in branch and _is_tuple_object(value, branch):
            return branch
    matching = [b for b in branches if _matches(value, b, defs)]
    if len(matching) > 1 and isinstance(value, dict):
        keys = set(value)

        def fit(b: dict[str, Any]) -> tuple[int, ...]:
            props = b.get("properties") or {}
            # Values that contradict the branch (a discriminator's enum), then what it
            # requires but the answer left out (null: the strict shape's "absent"),
            # then how well the keys match.
            wrong = sum(1 for k, sub in props.items() if k in value and value[k] is not None
                        and isinstance(sub, dict) and not _matches(value[k], sub, defs))
            missing = sum(1 for k in b.get("required", ()) if value.get(k) is None)
            names = set(props)
            return (-wrong, -missing, len(keys & names) - len(keys - names),
                    -len(names - keys))

        return max(matching, key=fit)
    return matching[0] if matching else None


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict, list), "array": (list,), "string": (str,), "integer": (int,),
    "number": (int, float), "boolean": (bool,), "null": (type(None),),
}


def _matches(value: Any, schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    schema = _deref(schema, defs)
    enum = schema.get("enum")
    if isinstance(enum, list):
        return value in enum
    if "const" in schema:
        return value == schema["const"]
    kinds = _kinds(schema)
    if kinds is None:
        branches = schema.get("anyOf") or schema.get("oneOf")
        return not branches or any(_matches(value, b, defs) for b in branches
                                   if isinstance(b, dict))
    for kind in (kinds if isinstance(kinds, list) else [kinds]):
        if kind == "object" and isinstance(value, list):
            # Only a map has a list shape (its entries); an object with properties never does.
            if not schema.get("properties"):
                return True
            continue
        if kind in ("integer", "number") and isinstance(value, bool):
            continue
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            continue
        if isinstance(value, _JSON_TYPES[kind]):
            return True
    return False
