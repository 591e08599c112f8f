"""What a typed parser is: a prompt template plus a decoder and an encoder.

A typed parser lets a model answer in a typed text format instead of JSON
(``model(..., typed_parser="typed_xml")``). Any object with these four members can be
registered (see :func:`msgflux.dsl.typed_parsers.register_typed_parser`):

- ``typed_parser_type``: the name it is registered and selected under;
- ``template``: Jinja text taking ``instructions``; rendered, it is a system prompt
  that tells the model how to write its answer;
- ``decode(text) -> dotdict``: the model's answer as a dict (raise
  :class:`~msgflux.exceptions.TypedParserError` with ``raw=text`` when it cannot);
- ``encode(obj) -> str``: the inverse, e.g. to write few-shot examples.

:class:`BaseTypedParser` is a convenient base for class-style parsers (the built-in
ones use classmethods, so the class itself is the registered object).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

from msgflux.dotdict import dotdict

__all__ = ["BaseTypedParser", "TypedParser"]


@runtime_checkable
class TypedParser(Protocol):
    """The structural type of a typed parser (class or instance)."""

    typed_parser_type: str
    template: str

    def decode(self, text: str) -> dotdict: ...

    def encode(self, obj: Mapping[str, Any]) -> str: ...


class BaseTypedParser:
    """Base class: set the two class attributes and implement the two classmethods."""

    typed_parser_type: ClassVar[str]
    template: ClassVar[str]

    @classmethod
    def decode(cls, text: str) -> dotdict:
        raise NotImplementedError(f"{cls.__name__}.decode")

    @classmethod
    def encode(cls, obj: Mapping[str, Any]) -> str:
        raise NotImplementedError(f"{cls.__name__}.encode")
