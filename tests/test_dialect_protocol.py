"""Every dialect module satisfies the declared Dialect protocol, name for name."""

from __future__ import annotations

import inspect

import pytest

from msgflux.models.dialects import DIALECTS, get_dialect
from msgflux.models.dialects.base import Dialect, TokenCounter

_METHODS = ("build_request", "parse_response", "stream_decoder", "parse_error")
_OPTIONAL = ("count_tokens",)  # TokenCounter: a dialect without it gets an estimate


def _parameters(fn) -> list[tuple[str, bool]]:
    """(name, has a default) of each parameter, ``self`` left out."""
    return [(p.name, p.default is not inspect.Parameter.empty)
            for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", DIALECTS)
def test_dialect_module_satisfies_the_protocol(name: str) -> None:
    dialect = get_dialect(name)
    assert isinstance(dialect.REQUIRES_MAX_TOKENS, bool)
    for method in _METHODS:
        fn = getattr(dialect, method)
        assert callable(fn), f"{name}.{method}"
        assert _parameters(fn) == _parameters(getattr(Dialect, method)), f"{name}.{method}"
    for method in _OPTIONAL:
        fn = getattr(dialect, method, None)
        if fn is not None:
            assert callable(fn), f"{name}.{method}"
            assert _parameters(fn) == _parameters(getattr(TokenCounter, method)), (
                f"{name}.{method}")


def test_the_protocol_declares_what_the_model_layer_uses() -> None:
    declared = {n for n in vars(Dialect) if not n.startswith("_")}
    declared |= set(Dialect.__annotations__)
    assert declared == {*_METHODS, "REQUIRES_MAX_TOKENS"}


def test_the_optional_protocol_declares_what_counting_uses() -> None:
    declared = {n for n in vars(TokenCounter) if not n.startswith("_")}
    assert declared == set(_OPTIONAL)


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        get_dialect("soap")


def test_an_output_schema_is_encoded_once_per_schema_and_dialect_shape() -> None:
    import msgspec

    from msgflux.models.dialects import base

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    made: list[dict] = []

    def reshape(s: dict) -> dict:
        made.append(s)
        return {**s, "additionalProperties": False}

    plain = base.schema_json(schema)
    assert msgspec.json.decode(plain) == schema
    assert base.schema_json(schema) is plain  # the second call reuses the bytes
    shaped = base.schema_json(schema, "x", reshape)
    assert base.schema_json(schema, "x", reshape) is shaped
    assert made == [schema]  # reshaped once, and kept apart from the plain JSON
    assert msgspec.json.decode(shaped) == {**schema, "additionalProperties": False}
    twin = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert base.schema_json(twin) is not plain  # per object, not per value
    assert msgspec.json.decode(base.schema_json(twin)) == schema
