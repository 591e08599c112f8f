"""Typed parsers: let a model answer in a typed text format instead of JSON.

>>> from msgflux.dsl.typed_parsers import typed_parser_registry
>>> typed_xml = typed_parser_registry["typed_xml"]
>>> typed_xml.decode('<name>fair</name><n dtype="int">2</n>')
{'name': 'fair', 'n': 2}

``typed_parser_registry`` maps names to parsers; ``register_typed_parser`` adds your own
(see :mod:`msgflux.dsl.typed_parsers.base` for what a parser is). Importing this package
imports neither defusedxml nor jinja2: parsers load on first lookup, and defusedxml on
the first decode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from msgflux.dsl.typed_parsers.base import BaseTypedParser, TypedParser
from msgflux.dsl.typed_parsers.registry import (
    TypedParserRegistry,
    get_typed_parser,
    register_typed_parser,
    typed_parser_registry,
)

__all__ = [
    "BaseTypedParser",
    "TypedParser",
    "TypedParserRegistry",
    "TypedXMLParser",
    "get_typed_parser",
    "register_typed_parser",
    "typed_parser_registry",
]

if TYPE_CHECKING:
    from msgflux.dsl.typed_parsers.typed_xml import TypedXMLParser


def __getattr__(name: str) -> Any:
    if name != "TypedXMLParser":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = typed_parser_registry["typed_xml"]
    globals()[name] = value
    return value
