"""JSONSchemaBench coverage on a small slice (the full table: bench/schemas_coverage.py,
bench/SCHEMAS.md). Reads the schemas from ../shared/data/jsonschemabench."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

import msgflux as mf
from msgflux import exceptions as exc

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _coverage() -> Any:
    spec = importlib.util.spec_from_file_location("msgflux_schemas_coverage",
                                                  BENCH / "schemas_coverage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


coverage = _coverage()
if not coverage.DATA.is_dir():
    pytest.skip(f"JSONSchemaBench not found at {coverage.DATA}", allow_module_level=True)


def sample(per_category: int, limit: int) -> list[Any]:
    return coverage.small(list(coverage.load(per_category)), limit)


def test_a_slice_is_accepted_and_round_trips_on_every_dialect() -> None:
    rows = sample(4, 4000)
    result = coverage.measure(rows)
    measured = result.total - result.invalid
    assert measured >= 20
    for dialect in coverage.DIALECTS:
        # Recorded on this slice when the lowering was written: every schema but one
        # that needs a constraint a provider cannot carry (see bench/SCHEMAS.md).
        assert result.both[dialect] >= measured - 3, (dialect, result.reasons[dialect])


def test_the_subset_checker_finds_what_a_provider_rejects() -> None:
    open_object = {"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}}
    assert "$: object not closed" in coverage.violations("openai", open_object)
    assert "$.a: keyword minLength" in coverage.violations("openai", open_object)
    recursive = {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}},
                 "required": ["n"], "additionalProperties": False,
                 "$defs": {"N": {"type": "object",
                                 "properties": {"n": {"anyOf": [{"$ref": "#/$defs/N"},
                                                                {"type": "null"}]}},
                                 "required": ["n"], "additionalProperties": False}}}
    assert "$: recursive" in coverage.violations("anthropic", recursive)
    assert coverage.violations("openai", recursive) == []


def test_answers_are_written_for_patterns_and_formats() -> None:
    for pattern in ("^[A-Z]{2}-[0-9]{3}$", "[0-9a-fA-F]+", "^(foo|bar)\\d?$", "^a.b+c*$"):
        import re

        assert re.search(pattern, coverage.matching(pattern)), pattern


def test_constrained_answers_from_the_real_server_validate(llama_server) -> None:
    # llama.cpp turns the schema into a grammar: an answer validates unless it was cut at
    # max_tokens (SmolLM2 can repeat a string until then). A few of the smallest schemas.
    rows = sorted(sample(3, 600), key=lambda r: len(json.dumps(r[2])))[:3]
    model = mf.Model.chat_completion("llamacpp-server/x", base_url=llama_server.base_url,
                                     temperature=0)
    valid = 0
    for _category, _id, schema in rows:
        try:
            model("Give an example of this JSON object.", generation_schema=schema,
                  structured_mode="json_schema", max_validation_retries=0, max_tokens=64)
            valid += 1
        except exc.OutputTruncatedError:
            pass
    assert valid >= 1
