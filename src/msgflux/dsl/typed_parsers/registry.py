"""The registry of typed parsers, by name.

Built-in parsers are registered by module path and imported on first use, so looking
one up (or importing this module) does not import its dependencies.

Adding your own::

    from msgflux.dsl.typed_parsers import register_typed_parser

    @register_typed_parser
    class TypedYAML:
        typed_parser_type = "typed_yaml"
        template = "{{ instructions }}\\nAnswer only in YAML."

        @classmethod
        def decode(cls, text): ...

        @classmethod
        def encode(cls, obj): ...

    model(..., typed_parser="typed_yaml")

``register_typed_parser(obj, name=..., replace=True)`` also works as a plain call, with
an instance as well as a class.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, TypeVar, overload

from msgflux.exceptions import InvalidParameterError, TypedParserNotFoundError

__all__ = [
    "TypedParserRegistry",
    "get_typed_parser",
    "register_typed_parser",
    "typed_parser_registry",
]

_P = TypeVar("_P")

_BUILTINS = {"typed_xml": ("msgflux.dsl.typed_parsers.typed_xml", "TypedXMLParser")}


def _check(parser: Any, name: str | None) -> str:
    """The name to register ``parser`` under; raises if it lacks a member of the protocol."""
    missing = [
        m
        for m in ("typed_parser_type", "template")
        if not isinstance(getattr(parser, m, None), str)
    ]
    missing += [m for m in ("decode", "encode") if not callable(getattr(parser, m, None))]
    if missing:
        raise InvalidParameterError(
            f"{parser!r} is not a typed parser: it needs str attributes typed_parser_type "
            f"and template and methods decode(text) and encode(obj); missing or wrong: "
            f"{', '.join(missing)}"
        )
    name = name or parser.typed_parser_type
    if not name:
        raise InvalidParameterError("a typed parser needs a non-empty name")
    return name


class TypedParserRegistry(MutableMapping[str, Any]):
    """``name -> parser``; a missing name raises :class:`TypedParserNotFoundError`
    (a ``ValueError``) naming the registered ones, and ``in``/``get`` work as on a dict."""

    def __init__(self) -> None:
        self._parsers: dict[str, Any] = {}
        self._lazy: dict[str, tuple[str, str]] = dict(_BUILTINS)

    def __getitem__(self, name: str) -> Any:
        parser = self._parsers.get(name)
        if parser is not None:
            return parser
        target = self._lazy.get(name)
        if target is None:
            raise TypedParserNotFoundError(self._unknown(name))
        parser = getattr(importlib.import_module(target[0]), target[1])
        self._parsers[name] = parser
        del self._lazy[name]
        return parser

    def __setitem__(self, name: str, parser: Any) -> None:
        self._lazy.pop(name, None)
        self._parsers[_check(parser, name)] = parser

    def __delitem__(self, name: str) -> None:
        if self._parsers.pop(name, None) is None and self._lazy.pop(name, None) is None:
            raise TypedParserNotFoundError(self._unknown(name))

    def __contains__(self, name: object) -> bool:
        return name in self._parsers or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._parsers, *self._lazy}))

    def __len__(self) -> int:
        return len(self._parsers) + len(self._lazy)

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except TypedParserNotFoundError:
            return default

    def __repr__(self) -> str:
        return f"TypedParserRegistry({list(self)})"

    def _unknown(self, name: object) -> str:
        import difflib  # only on the error path

        known = list(self)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return (
            f"no typed parser named {name!r}; registered: {', '.join(known) or 'none'}.{hint} "
            f"Add one with msgflux.dsl.typed_parsers.register_typed_parser."
        )


typed_parser_registry = TypedParserRegistry()


def get_typed_parser(name: str) -> Any:
    """The parser registered as ``name``; :class:`TypedParserNotFoundError` if none."""
    return typed_parser_registry[name]


@overload
def register_typed_parser(parser: _P, *, name: str | None = ..., replace: bool = ...) -> _P: ...
@overload
def register_typed_parser(
    parser: None = ..., *, name: str | None = ..., replace: bool = ...
) -> Callable[[_P], _P]: ...
def register_typed_parser(
    parser: Any = None, *, name: str | None = None, replace: bool = False
) -> Any:
    """Register ``parser`` (class or instance) under ``name`` (default: its
    ``typed_parser_type``) and return it unchanged; usable as a decorator, with or
    without arguments. An existing name raises unless ``replace=True``.
    """

    def register(obj: _P) -> _P:
        key = _check(obj, name)
        if key in typed_parser_registry and not replace:
            raise InvalidParameterError(
                f"a typed parser named {key!r} is already registered; pass replace=True "
                f"to replace it"
            )
        typed_parser_registry[key] = obj
        return obj

    return register if parser is None else register(parser)
