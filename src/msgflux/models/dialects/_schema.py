"""JSON Schema pruning for providers that accept only part of the vocabulary.

A schema is walked as data: keywords are kept or dropped, while the names under
``properties``/``$defs`` and the values of ``enum``/``const``/``default``/
``examples`` are left alone (they are data, not keywords). The input is never
modified; a new tree comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["per_schema", "prune_schema"]

T = TypeVar("T")
_MEMO_SIZE = 256

# Keys whose value maps names to sub-schemas.
_NAMED = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
# Keys whose value is data, not schema.
_DATA = frozenset({"enum", "const", "default", "examples", "example", "required",
                   "propertyOrdering"})


def per_schema(fn: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
    """``fn(schema)`` worked out once per schema object, then reused.

    Compiled output types are cached, so every call of a model hands a dialect the
    same schema dict: lowering it again on each request cost tens of microseconds.
    The memo holds the schema itself, so an id is never mistaken for a new dict's;
    schemas are never modified (see the module doc), so a result stays right.
    """
    memo: dict[int, tuple[dict[str, Any], T]] = {}

    def once(schema: dict[str, Any]) -> T:
        hit = memo.get(id(schema))
        if hit is not None and hit[0] is schema:
            return hit[1]
        result = fn(schema)
        if len(memo) >= _MEMO_SIZE:
            memo.clear()  # many distinct schemas: start over rather than grow
        memo[id(schema)] = (schema, result)
        return result

    return once


def prune_schema(
    schema: dict[str, Any],
    keep: Callable[[str, Any], bool],
    rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of ``schema`` holding only the keywords for which ``keep(key, value)`` is true.

    ``rewrite`` (optional) may replace each schema node before it is filtered,
    e.g. to spell a keyword the provider lacks with one it has.
    """
    return _node(schema, keep, rewrite)


def _node(node: dict[str, Any], keep: Callable[[str, Any], bool],
          rewrite: Callable[[dict[str, Any]], dict[str, Any]] | None) -> dict[str, Any]:
    if rewrite is not None:
        node = rewrite(node)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if not keep(key, value):
            continue
        if key in _DATA:
            out[key] = value
        elif key in _NAMED and isinstance(value, dict):
            out[key] = {name: _node(sub, keep, rewrite) if isinstance(sub, dict) else sub
                        for name, sub in value.items()}
        elif isinstance(value, dict):
            out[key] = _node(value, keep, rewrite)
        elif isinstance(value, list):
            out[key] = [_node(v, keep, rewrite) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out
