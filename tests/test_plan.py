"""Planning schemas: fillable under strict json_schema, documented, decodable."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import jsonschema
import msgspec
import pytest

import msgflux as mf
from msgflux.exceptions import ToolCallArgumentsError
from msgflux.generation.plan import (
    Action,
    ChainOfThoughts,
    ReAct,
    SelfConsistency,
    TreeOfThoughts,
)
from msgflux.models.structured import compile_schema, decode_structured

# What a model could write for each schema (the shapes the end-to-end test will get).
DOCUMENTS: dict[type, dict[str, Any]] = {
    ChainOfThoughts: {
        "reasoning": "25 * 4 = 100. 100 + 17 = 117.",
        "final_answer": "117",
    },
    ReAct: {
        "thought": "I need the weather in Paris.",
        "actions": [{"name": "get_weather", "arguments": '{"location": "Paris, France"}'}],
        "final_answer": None,
    },
    SelfConsistency: {
        "paths": [
            {"reasoning": "25*4=100, +17 = 117", "answer": "117"},
            {"reasoning": "4*25 is 100; 117", "answer": "117"},
            {"reasoning": "25*4+17 = 118?", "answer": "118"},
        ],
        "final_answer": "117",
    },
    TreeOfThoughts: {
        "thoughts": [
            {"id": 1, "parent_id": None, "content": "Multiply first", "evaluation": "promising"},
            {"id": 2, "parent_id": None, "content": "Add first", "evaluation": "dead_end"},
            {"id": 3, "parent_id": 1, "content": "100 + 17 = 117", "evaluation": "promising"},
        ],
        "best_path": [1, 3],
        "final_answer": "117",
    },
}
SCHEMAS = list(DOCUMENTS)


def test_guide_access_pattern() -> None:
    # Access built-in planning schemas
    ChainOfThoughts = mf.generation.plan.ChainOfThoughts  # noqa: N806 - the guide's names
    ReAct = mf.generation.plan.ReAct  # noqa: N806
    SelfConsistency = mf.generation.plan.SelfConsistency  # noqa: N806

    assert {ChainOfThoughts, ReAct, SelfConsistency} <= set(SCHEMAS)
    assert mf.generation.plan.TreeOfThoughts is TreeOfThoughts
    assert mf.generation.ChainOfThoughts is ChainOfThoughts


def test_guide_import_pattern() -> None:
    from msgflux.generation.plan import (  # noqa: F401
        ChainOfThoughts,
        ReAct,
        SelfConsistency,
        TreeOfThoughts,
    )


def test_guide_example_result_has_reasoning_and_final_answer() -> None:
    """What ``model(messages=..., generation_schema=ChainOfThoughts).consume()`` returns."""
    compiled = compile_schema(ChainOfThoughts)
    answer = msgspec.json.encode(DOCUMENTS[ChainOfThoughts])
    result = decode_structured(compiled, answer)
    assert isinstance(result, dict)
    assert result == DOCUMENTS[ChainOfThoughts]
    assert result.final_answer == "117"
    assert result.reasoning


def test_reasoning_module_keeps_the_0_5_1_names() -> None:
    from msgflux.generation import reasoning

    assert reasoning.ChainOfThought is ChainOfThoughts
    assert reasoning.ReAct is ReAct
    assert reasoning.SelfConsistency is SelfConsistency
    assert mf.generation.reasoning is reasoning


def test_generation_package_is_lazy() -> None:
    code = (
        "import sys, msgflux.generation\n"
        "assert 'msgflux.generation.plan' not in sys.modules\n"
        "import msgflux as mf\n"
        "assert mf.generation.plan.ReAct.__name__ == 'ReAct'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- strict-mode fitness


def _walk(node: Any, path: str = "$") -> Any:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


_SCHEMA_KEYS = ("type", "$ref", "anyOf", "enum", "const")


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_nothing_strict_mode_cannot_express(schema_type: type) -> None:
    raw = msgspec.json.schema(schema_type)
    for path, node in _walk(raw):
        if path.endswith(".properties") or path.endswith(".$defs") or path == "$":
            continue
        assert any(k in node for k in _SCHEMA_KEYS), f"{path} accepts anything: {node}"
        assert "default" not in node, f"{path} has a default (strict mode has none)"
        if node.get("type") == "object":
            assert node.get("properties"), f"{path} is a free-form object"
            assert node.get("additionalProperties") in (None, False), path
        assert node.get("type") != "array" or "items" in node, f"{path} is an untyped list"


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_no_recursion(schema_type: type) -> None:
    defs = msgspec.json.schema(schema_type)["$defs"]

    def refs(node: Any) -> set[str]:
        return {n["$ref"].rsplit("/", 1)[1] for _, n in _walk(node) if "$ref" in n}

    def visit(name: str, seen: tuple[str, ...]) -> None:
        assert name not in seen, f"recursive schema: {' -> '.join((*seen, name))}"
        for child in refs(defs[name]):
            visit(child, (*seen, name))

    visit(schema_type.__name__, ())


def _strict(schema_type: type) -> dict[str, Any]:
    """The usual strict lowering: refs inlined, objects closed, all properties required."""
    raw = msgspec.json.schema(schema_type)
    defs = raw["$defs"]

    def lower(node: Any) -> Any:
        if isinstance(node, list):
            return [lower(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return lower(defs[node["$ref"].rsplit("/", 1)[1]])
        out = {k: lower(v) for k, v in node.items() if k not in ("title", "default")}
        if out.get("type") == "object":
            out["additionalProperties"] = False
            out["required"] = list(out["properties"])
        return out

    return lower({"$ref": raw["$ref"]})


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_strict_schema_accepts_what_a_model_writes(schema_type: type) -> None:
    strict = _strict(schema_type)
    jsonschema.Draft202012Validator.check_schema(strict)
    for path, node in _walk(strict):
        if node.get("type") == "object":
            assert node["additionalProperties"] is False, path
            assert sorted(node["required"]) == sorted(node["properties"]), path
    document = DOCUMENTS[schema_type]
    jsonschema.validate(document, strict)
    # ... and the document decodes into the Struct
    decoded = msgspec.json.decode(msgspec.json.encode(document), type=schema_type)
    assert msgspec.to_builtins(decoded) == document


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_strict_schema_rejects_extra_and_missing_keys(schema_type: type) -> None:
    strict = _strict(schema_type)
    document = dict(DOCUMENTS[schema_type])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**document, "extra": 1}, strict)
    missing = dict(document)
    missing.pop("final_answer")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, strict)


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_the_models_own_lowering_takes_every_schema(schema_type: type) -> None:
    compiled = compile_schema(schema_type)
    strict = compiled.output.strict_schema
    for path, node in _walk(strict):
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, path
            assert sorted(node.get("required", [])) == sorted(node["properties"]), path
    jsonschema.validate(DOCUMENTS[schema_type], strict)
    result = decode_structured(compiled, msgspec.json.encode(DOCUMENTS[schema_type]))
    assert result == DOCUMENTS[schema_type]


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_documented_for_the_model_and_the_reader(schema_type: type) -> None:
    raw = msgspec.json.schema(schema_type)
    for name, definition in raw["$defs"].items():
        assert definition.get("description"), f"{name} has no docstring"
        for field, prop in definition["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    doc = schema_type.__doc__ or ""
    for field in schema_type.__struct_fields__:
        assert field in doc, f"{schema_type.__name__}'s docstring does not mention {field}"


@pytest.mark.parametrize("schema_type", SCHEMAS, ids=lambda t: t.__name__)
def test_reasoning_comes_before_the_answer(schema_type: type) -> None:
    # properties are generated in order: the answer must be last
    assert schema_type.__struct_fields__[-1] == "final_answer"


def test_subclass_types_the_answer() -> None:
    class MathCoT(ChainOfThoughts):
        final_answer: float

    schema = _strict(MathCoT)
    assert schema["properties"]["final_answer"] == {"type": "number"}
    assert schema["properties"]["reasoning"]["description"]
    assert msgspec.json.decode(b'{"reasoning": "r", "final_answer": 117}', type=MathCoT) == (
        MathCoT(reasoning="r", final_answer=117.0)
    )


# ---------------------------------------------------------------- ReAct helpers


def test_react_tool_calls_from_struct_and_dict() -> None:
    step = msgspec.json.decode(msgspec.json.encode(DOCUMENTS[ReAct]), type=ReAct)
    expected = [{"name": "get_weather", "arguments": {"location": "Paris, France"}}]
    assert ReAct.tool_calls(step) == expected
    assert ReAct.tool_calls(DOCUMENTS[ReAct]) == expected
    done = {"thought": "I know it.", "actions": [], "final_answer": "22°C"}
    assert ReAct.tool_calls(done) == []
    no_args = ReAct(thought="t", actions=[Action(name="now", arguments="")], final_answer=None)
    assert ReAct.tool_calls(no_args) == [{"name": "now", "arguments": {}}]


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]", "42", '"text"'])
def test_react_bad_arguments_raise_a_typed_error(arguments: str) -> None:
    step = {"thought": "t", "actions": [{"name": "f", "arguments": arguments}]}
    with pytest.raises(ToolCallArgumentsError) as info:
        ReAct.tool_calls(step)
    assert info.value.tool_name == "f"
    assert info.value.raw == arguments
