"""generation_schema: strict lowering, restoring and validation (pure)."""

from __future__ import annotations

import enum
import subprocess
import sys
from typing import Any, Literal, NamedTuple, Optional

import jsonschema
import msgspec
import pytest

from msgflux import exceptions as exc
from msgflux.models.structured import compile_schema, decode_structured


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(msgspec.Struct):
    street: str
    city: str


class Person(msgspec.Struct):
    name: str
    age: int
    address: Address
    tags: list[str]
    scores: dict[str, float]
    nickname: Optional[str] = None  # noqa: UP045 - the typing.Optional spelling is under test
    email: str | None = None
    level: Literal["junior", "senior"] = "junior"
    color: Color = Color.RED
    active: bool = True


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def test_strict_schema_is_closed_and_complete() -> None:
    out = compile_schema(Person).output
    strict = out.strict_schema
    for node in walk(strict):
        assert "$ref" not in node and "default" not in node and "title" not in node
        if node.get("type") == "object":
            assert node["additionalProperties"] is False
            assert set(node["required"]) == set(node["properties"])
    assert strict["properties"]["scores"]["type"] == "array"  # map lowered to entries
    assert out.name == "Person"
    # The strict schema is itself a valid JSON Schema.
    jsonschema.Draft202012Validator.check_schema(strict)


def test_decode_lowered_shape_restores_defaults_and_maps() -> None:
    compiled = compile_schema(Person)
    text = (
        '{"name":"Ann","age":30,"address":{"street":"1 Main","city":"NYC"},"tags":["a"],'
        '"scores":[{"key":"math","value":9.5}],"nickname":null,"email":null,'
        '"level":null,"color":null,"active":null}'
    )
    jsonschema.validate(msgspec.json.decode(text), compiled.output.strict_schema)
    result = decode_structured(compiled, text)
    assert result == {
        "name": "Ann", "age": 30, "address": {"street": "1 Main", "city": "NYC"},
        "tags": ["a"], "scores": {"math": 9.5}, "nickname": None, "email": None,
        "level": "junior", "color": "red", "active": True,
    }
    assert result.address.city == "NYC"  # attribute access, nested too
    assert isinstance(result["color"], str)  # Enum values, not Enum objects


def test_decode_logical_shape_too() -> None:
    compiled = compile_schema(Person)
    text = ('{"name":"B","age":1,"address":{"street":"s","city":"c"},"tags":[],'
            '"scores":{"x":1},"color":"blue"}')
    assert decode_structured(compiled, text).scores == {"x": 1.0}


def test_a_schema_with_nothing_to_restore_decodes_directly() -> None:
    # Address needs no lowering (no optional field, no map): the direct decode path.
    compiled = compile_schema(Address)
    assert not compiled.needs_restore
    result = decode_structured(compiled, b'{"street": "Rue 1", "city": "Paris"}')
    assert result == {"street": "Rue 1", "city": "Paris"} and result.city == "Paris"
    with pytest.raises(exc.StructuredOutputError) as info:
        decode_structured(compiled, '{"street": 1, "city": "Paris"}')
    assert info.value.raw == '{"street": 1, "city": "Paris"}'


def test_validation_errors_keep_raw_text() -> None:
    compiled = compile_schema(Person)
    with pytest.raises(exc.StructuredOutputError) as info:
        decode_structured(compiled, '{"name": "x"}')
    assert info.value.raw == '{"name": "x"}'
    with pytest.raises(exc.StructuredOutputError):
        decode_structured(compiled, '{"name": "x", "age": "old"')


def test_bad_schemas_fail_clearly() -> None:
    class Loose(msgspec.Struct):
        anything: Any

    with pytest.raises(exc.InvalidParameterError, match="Any"):
        compile_schema(Loose)
    with pytest.raises(exc.InvalidParameterError, match=r"msgspec\.Struct"):
        compile_schema(dict)


def test_compile_is_cached_per_type() -> None:
    assert compile_schema(Person) is compile_schema(Person)


# ---------------------------------------------------------------- fixed-length tuples


class Point(NamedTuple):
    x: float
    y: float = 0.0


class Shapes(msgspec.Struct):
    point: tuple[float, float]
    record: tuple[int, str, bool]
    path: list[tuple[int, int]]
    named: Point
    maybe: tuple[int, int] | None = None
    nested: tuple[tuple[int, int], dict[str, int]] | None = None


SHAPES_LOGICAL = (
    '{"point":[1.5,2],"record":[1,"a",true],"path":[[0,0],[1,2]],"named":[3.0],'
    '"maybe":[4,5],"nested":[[6,7],{"k":8}]}'
)
SHAPES_LOWERED = (
    '{"point":{"0":1.5,"1":2},"record":{"0":1,"1":"a","2":true},'
    '"path":[{"0":0,"1":0},{"0":1,"1":2}],"named":{"0":3.0,"1":null},'
    '"maybe":{"0":4,"1":5},"nested":{"0":{"0":6,"1":7},"1":[{"key":"k","value":8}]}}'
)
# Tuples come back as tuples, as the Struct declares them.
SHAPES_DECODED = {
    "point": (1.5, 2.0), "record": (1, "a", True), "path": [(0, 0), (1, 2)],
    "named": (3.0, 0.0), "maybe": (4, 5), "nested": ((6, 7), {"k": 8}),
}


def test_tuples_compile_keeping_prefix_items_in_the_logical_schema() -> None:
    out = compile_schema(Shapes).output
    point = out.schema["properties"]["point"]
    assert point["prefixItems"] == [{"type": "number"}, {"type": "number"}]
    assert (point["minItems"], point["maxItems"]) == (2, 2)
    jsonschema.validate(msgspec.json.decode(SHAPES_LOGICAL), out.schema)


def test_tuples_are_objects_in_the_strict_schema() -> None:
    strict = compile_schema(Shapes).output.strict_schema
    for node in walk(strict):
        assert "prefixItems" not in node and node.get("items") is not False
    assert strict["properties"]["record"] == {
        "type": "object",
        "properties": {"0": {"type": "integer"}, "1": {"type": "string"},
                       "2": {"type": "boolean"}},
        "required": ["0", "1", "2"],
        "additionalProperties": False,
    }
    # A NamedTuple field with a default may be null (then the default applies).
    assert strict["properties"]["named"]["properties"]["1"] == {
        "anyOf": [{"type": "number"}, {"type": "null"}]}
    jsonschema.Draft202012Validator.check_schema(strict)
    jsonschema.validate(msgspec.json.decode(SHAPES_LOWERED), strict)


@pytest.mark.parametrize("text", [SHAPES_LOWERED, SHAPES_LOGICAL])
def test_tuples_round_trip_from_either_shape(text: str) -> None:
    compiled = compile_schema(Shapes)
    assert compiled.needs_restore
    result = decode_structured(compiled, text)
    assert result == SHAPES_DECODED
    # The result validates against the Struct itself.
    assert msgspec.convert(dict(result), Shapes).record == (1, "a", True)


@pytest.mark.parametrize("point", [
    "[1, 2, 3]", "[1]", '{"0": 1}', '{"0": 1, "1": 2, "2": 3}', '{"1": 1, "2": 2}', '["a", 1]',
])
def test_wrong_length_or_type_tuples_are_rejected(point: str) -> None:
    compiled = compile_schema(Shapes)
    text = SHAPES_LOGICAL.replace('"point":[1.5,2]', f'"point":{point}')
    with pytest.raises(exc.StructuredOutputError) as info:
        decode_structured(compiled, text)
    assert info.value.raw == text


class Pair(msgspec.Struct):
    left: int
    right: int


class Either(msgspec.Struct):
    value: tuple[int, int] | Pair


def test_a_lowered_tuple_is_told_from_an_object_in_a_union() -> None:
    compiled = compile_schema(Either)
    assert decode_structured(compiled, '{"value": {"0": 1, "1": 2}}').value == (1, 2)
    assert decode_structured(compiled, '{"value": {"left": 1, "right": 2}}').value == {
        "left": 1, "right": 2}


def test_mf_dotdict_is_the_class_whatever_was_imported_first() -> None:
    # A fresh interpreter: the models import the submodule msgflux.dotdict, and the
    # import system binds a submodule as an attribute of its package.
    code = ("import msgflux as mf\n"
            "mf.Model.chat_completion('openai/gpt-4o', api_key='k')\n"
            "assert isinstance(mf.dotdict, type), mf.dotdict\n"
            "assert mf.dotdict(a=1).a == 1\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
