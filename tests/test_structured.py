"""generation_schema: strict lowering, restoring and validation (pure)."""

from __future__ import annotations

import dataclasses
import enum
import subprocess
import sys
from typing import Annotated, Any, Literal, NamedTuple, Optional, TypedDict

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
    for bad in (42, "Person", print, Person(name="x", age=1, address=Address("s", "c"),
                                             tags=[], scores={})):
        with pytest.raises(exc.InvalidParameterError, match="type or a JSON Schema dict"):
            compile_schema(bad)
    with pytest.raises(exc.InvalidParameterError, match="points outside"):
        compile_schema({"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}})
    with pytest.raises(exc.InvalidParameterError, match="not a valid JSON Schema"):
        compile_schema({"type": "object", "properties": {"a": {"type": 5}}})


def test_free_form_values_go_as_a_recursive_json_value() -> None:
    class Loose(msgspec.Struct):
        anything: Any
        extra: dict[str, Any]

    compiled = compile_schema(Loose)
    strict = compiled.output.strict_schema
    assert strict["properties"]["anything"] == {"$ref": "#/$defs/JSONValue"}
    assert "JSONValue" in strict["$defs"]
    jsonschema.Draft202012Validator.check_schema(strict)
    text = ('{"anything": {"entries": [{"key": "a", "value": [1, {"entries": []}]}]},'
            '"extra": [{"key": "k", "value": null}]}')
    jsonschema.validate(msgspec.json.decode(text), strict)
    assert decode_structured(compiled, text) == {"anything": {"a": [1, {}]}, "extra": {"k": None}}


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


# ---------------------------------------------------------------- the types users bring


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


@dataclasses.dataclass
class Reading:
    """A sensor reading."""

    sensor: Annotated[str, msgspec.Meta(pattern="^[a-z]+$", description="sensor name")]
    value: Annotated[float, msgspec.Meta(ge=0, le=100)]
    unit: str = "C"

    def __post_init__(self) -> None:
        self.sensor = self.sensor.lower()


class Contact(TypedDict):
    name: str
    emails: list[str]


@pytest.mark.parametrize(("type_", "text", "expected"), [
    (list[str], '{"value": ["a", "b"]}', ["a", "b"]),
    (list[str], '["a"]', ["a"]),  # the bare value of a prompted answer
    (int, '{"value": 3}', 3),
    (Literal["yes", "no"], '{"value": "no"}', "no"),
    (Mood, '{"value": "sad"}', Mood.SAD),
    (int | str, '{"value": "x"}', "x"),
    (tuple[int, str], '{"value": {"0": 1, "1": "a"}}', (1, "a")),
    (dict[str, int], '{"value": [{"key": "a", "value": 1}]}', {"a": 1}),
    (Contact, '{"name": "Ann", "emails": ["a@b.c"]}', {"name": "Ann", "emails": ["a@b.c"]}),
])
def test_plain_types_are_wrapped_and_unwrapped(type_: Any, text: str, expected: Any) -> None:
    compiled = compile_schema(type_)
    assert compiled.output.strict_schema["type"] == "object"  # providers want an object root
    assert decode_structured(compiled, text) == expected
    jsonschema.Draft202012Validator.check_schema(compiled.output.strict_schema)


def test_a_dataclass_comes_back_as_an_instance_with_constraints_enforced() -> None:
    compiled = compile_schema(Reading)
    assert compiled.kind == "dataclass"
    strict = compiled.output.strict_schema
    assert compiled.output.description == "A sensor reading."
    assert strict["properties"]["sensor"] == {"description": "sensor name", "type": "string",
                                              "pattern": "^[a-z]+$"}
    assert strict["properties"]["value"]["minimum"] == 0
    result = decode_structured(compiled, '{"sensor": "t", "value": 20.5, "unit": null}')
    assert result == Reading("t", 20.5, "C")  # the default applied, __post_init__ ran
    with pytest.raises(exc.StructuredOutputError, match="Expected `float` <= 100"):
        decode_structured(compiled, '{"sensor": "t", "value": 120, "unit": "C"}')
    with pytest.raises(exc.StructuredOutputError):
        decode_structured(compiled, '{"sensor": "T1", "value": 1, "unit": "C"}')


def test_a_recursive_struct_keeps_defs_and_restores() -> None:
    compiled = compile_schema(Tree)
    strict = compiled.output.strict_schema
    assert strict["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    jsonschema.Draft202012Validator.check_schema(strict)
    text = ('{"label": "a", "children": [{"label": "b", "children": [], "note": null}],'
            ' "note": null}')
    jsonschema.validate(msgspec.json.decode(text), strict)
    result = decode_structured(compiled, text)
    assert result.children[0].label == "b" and result.note == "-"


class Tree(msgspec.Struct):
    label: str
    children: list[Tree]
    note: str = "-"


JSON_SCHEMA = {
    "title": "Order",
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^o[0-9]+$"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/item"}},
        "meta": {"type": "object", "patternProperties": {"^x-": {"type": "string"}},
                 "additionalProperties": False},
        "kind": {"oneOf": [{"const": "retail"}, {"const": "wholesale"}]},
        "note": {"type": "string", "maxLength": 5},
    },
    "required": ["id", "items", "kind"],
    "definitions": {"item": {"type": "object", "properties": {
        "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
        "required": ["sku", "qty"]}},
}


def test_a_json_schema_dict_is_lowered_restored_and_validated() -> None:
    compiled = compile_schema(JSON_SCHEMA)
    assert compiled.kind == "json_schema" and compiled.output.name == "Order"
    strict = compiled.output.strict_schema
    for node in walk(strict):
        assert "oneOf" not in node and "const" not in node and "patternProperties" not in node
        assert "maxLength" not in node
    assert strict["properties"]["note"]["anyOf"][0]["description"] == "(maxLength: 5)"
    text = ('{"id": "o1", "items": [{"sku": "a", "qty": 2}], "kind": "retail",'
            '"meta": [{"key": "x-a", "value": "b"}], "note": null}')
    jsonschema.validate(msgspec.json.decode(text), strict)
    result = decode_structured(compiled, text)
    assert result == {"id": "o1", "items": [{"sku": "a", "qty": 2}], "kind": "retail",
                      "meta": {"x-a": "b"}}
    # What the strict shape could not say is still enforced.
    with pytest.raises(exc.StructuredOutputError, match="too long"):
        decode_structured(compiled, text.replace('"note": null', '"note": "toolong"'))


pydantic = pytest.importorskip("pydantic")


class Item(pydantic.BaseModel):
    """One line of an order."""

    sku: str = pydantic.Field(description="stock keeping unit", min_length=2)
    qty: int = pydantic.Field(ge=1)
    tags: list[str] = pydantic.Field(default_factory=list)

    @pydantic.field_validator("sku")
    @classmethod
    def upper(cls, value: str) -> str:
        return value.upper()


class Order(pydantic.BaseModel):
    items: list[Item]
    total: float | None = None


def test_a_pydantic_model_comes_back_as_a_validated_instance() -> None:
    compiled = compile_schema(Order)
    assert compiled.kind == "pydantic"
    strict = compiled.output.strict_schema
    item = strict["properties"]["items"]["items"]
    assert item["description"].startswith("One line of an order.")
    assert item["properties"]["qty"]["minimum"] == 1
    assert item["properties"]["sku"]["description"] == "stock keeping unit\n(minLength: 2)"
    jsonschema.Draft202012Validator.check_schema(strict)
    text = '{"items": [{"sku": "ab", "qty": 1, "tags": null}], "total": null}'
    jsonschema.validate(msgspec.json.decode(text), strict)
    order = decode_structured(compiled, text)
    assert isinstance(order, Order)
    assert order.items[0].sku == "AB" and order.items[0].tags == []  # validator, default
    with pytest.raises(exc.StructuredOutputError, match="greater than or equal to 1"):
        decode_structured(compiled, '{"items": [{"sku": "ab", "qty": 0}]}')


def test_a_type_only_pydantic_knows_goes_through_a_type_adapter() -> None:
    compiled = compile_schema(list[Item])
    result = decode_structured(compiled, '{"value": [{"sku": "xy", "qty": 2, "tags": []}]}')
    assert isinstance(result[0], Item) and result[0].sku == "XY"


# ---------------------------------------------------------------- dotdict per type


class _Leaf(msgspec.Struct):
    a: int
    b: str = "x"


class _Renamed(msgspec.Struct, rename="camel", omit_defaults=True):
    inner_value: Optional[_Leaf] = None  # noqa: UP045 - read at runtime on 3.10
    some_list: list[_Leaf] = []


class _Tree(msgspec.Struct):
    label: str
    children: list[_Tree] = []


class _Cat(msgspec.Struct, tag=True):
    name: str


class _Dog(msgspec.Struct, tag=True):
    name: str
    friend: Optional[_Leaf] = None  # noqa: UP045


class _Pair(msgspec.Struct, array_like=True):
    left: _Leaf
    right: int


class _Mixed(msgspec.Struct):
    leaf: _Leaf
    maybe: Optional[_Leaf]  # noqa: UP045
    many: list[_Leaf]
    kinds: set[int]
    frozen: frozenset[str]
    pets: list[_Cat | _Dog]
    by_name: dict[str, _Leaf]
    fixed: tuple[_Leaf, int]
    var: tuple[_Leaf, ...]
    anything: Any
    pair: _Pair
    renamed: _Renamed
    tree: _Tree


def _same_shape(a: Any, b: Any) -> None:
    """Equal, and the same container classes all the way down (dotdict is not dict)."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same_shape(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same_shape(x, y)
    else:
        assert a == b


_MIXED = _Mixed(
    leaf=_Leaf(1), maybe=None, many=[_Leaf(2), _Leaf(3, "y")], kinds={1, 2},
    frozen=frozenset({"z"}), pets=[_Cat("c"), _Dog("d", _Leaf(4))],
    by_name={"k": _Leaf(5)}, fixed=(_Leaf(6), 7), var=(_Leaf(8),),
    anything={"free": [{"form": 1}]}, pair=_Pair(_Leaf(9), 10),
    renamed=_Renamed(inner_value=_Leaf(11)),
    tree=_Tree("root", [_Tree("kid", [_Tree("grandkid")])]),
)


@pytest.mark.parametrize("value", [
    _MIXED,
    msgspec.structs.replace(_MIXED, maybe=_Leaf(12), renamed=_Renamed(some_list=[_Leaf(13)]),
                            anything=None, many=[]),
    _Leaf(1),
    _Tree("alone"),
])
def test_the_dotdict_plan_of_a_type_converts_as_the_generic_walk_does(value: Any) -> None:
    from msgflux.dotdict import dotdict, to_dotdict, to_dotdict_for

    builtins = msgspec.to_builtins(value)
    planned = to_dotdict_for(type(value))(msgspec.to_builtins(value))
    _same_shape(planned, to_dotdict(builtins))
    assert isinstance(planned, dotdict)


def test_a_struct_answer_comes_back_as_dotdicts_through_the_plan() -> None:
    compiled = compile_schema(_Mixed)
    text = msgspec.json.encode(_MIXED)
    got = decode_structured(compiled, text)
    from msgflux.dotdict import to_dotdict

    _same_shape(got, to_dotdict(msgspec.to_builtins(msgspec.json.decode(text, type=_Mixed))))
    assert got.tree.children[0].children[0].label == "grandkid"
    assert got.renamed.innerValue.a == 11
