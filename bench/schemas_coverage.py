"""How many real-world JSON Schemas msgflux can ask for, per dialect (JSONSchemaBench).

    python bench/schemas_coverage.py                 # every schema, every dialect (~1 h)
    python bench/schemas_coverage.py --limit 100     # the first 100 of each (~15 min)
    python bench/schemas_coverage.py --llama 40      # also: 40 schemas on the real local model
    python bench/schemas_coverage.py --markdown      # the table of bench/SCHEMAS.md

The schemas are read from ``../shared/data/jsonschemabench/`` (JSONSchemaBench, MIT; see
its README), never copied into the repository. For each schema that is itself a valid
JSON Schema, and each dialect, two questions:

**accepted**: msgflux turns it into a request (``generation_schema=<the dict>``), and the
schema in that request keeps to what the provider documents for its schema-constrained
output — OpenAI strict structured outputs ("Supported schemas": an object root, every
object closed with every property required, the listed keywords and string formats,
``$defs`` references, at most 10 levels of nesting, 5,000 properties, 1,000 enum values
and 120,000 characters of names and values), Anthropic ``output_config.format`` ("JSON
Schema limitations": its listed keywords, closed objects, no recursion, ``minItems`` 0 or
1, scalar enums), Gemini ``responseJsonSchema`` (its listed keywords).

**round trip**: answers that the sent schema allows come back valid. Two answers are
written for the sent schema — one taking the first branch of every choice and filling
every list, one taking ``null`` wherever the schema allows it — and each is decoded by
msgflux (restored from the strict shape and validated against the *original* schema).
A constraint the provider's subset cannot carry (e.g. ``minLength`` for OpenAI) makes
this fail when the written answer breaks it: that is an answer the provider could give.

**local model** (``--llama N``): N schemas asked of the embedded SmolLM2-135M through
llama.cpp's grammar-constrained ``json_schema`` mode; an answer counts when it validates
(a cut at ``max_tokens`` counts as a failure).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "jsonschemabench"

DIALECTS = ("openai", "anthropic", "google")
MODELS = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-5", "google": "gemini-2.5-flash"}


def load(limit: int | None = None, data: Path = DATA) -> Iterator[tuple[str, str, Any]]:
    """``(category, id, schema)`` of every schema (the first ``limit`` of each file)."""
    for path in sorted(data.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f):
                if limit is not None and n >= limit:
                    break
                row = json.loads(line)
                yield row["category"], row["id"], row["schema"]


# ---------------------------------------------------------------- the request


def sent_schema(dialect: str, output: Any) -> dict[str, Any]:
    """The schema as the dialect writes it into the request."""
    from msgflux.models import dialects
    from msgflux.models.dialects.base import Endpoint
    from msgflux.models.request import ChatRequest, Message

    module = dialects.get_dialect(dialect)
    request = ChatRequest(model=MODELS[dialect], messages=(Message("user", "x"),),
                          output=output, max_tokens=100)
    body = json.loads(module.build_request(request, Endpoint(dialect, "http://h", "k")).body)
    if dialect == "openai":
        return body["response_format"]["json_schema"]["schema"]
    if dialect == "anthropic":
        return body["output_config"]["format"]["schema"]
    return body["generationConfig"]["responseJsonSchema"]


# ---------------------------------------------------------------- documented subsets

_STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6",
                   "uuid"}
_OPENAI_KEYS = {"type", "description", "properties", "required", "additionalProperties",
                "items", "anyOf", "enum", "$ref", "$defs", "pattern", "format", "minimum",
                "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
                "maxItems"}
_ANTHROPIC_KEYS = {"type", "description", "title", "properties", "required",
                   "additionalProperties", "items", "anyOf", "allOf", "enum", "const", "$ref",
                   "$defs", "definitions", "default", "format", "minItems", "pattern"}
_ANTHROPIC_FORMATS = _STRICT_FORMATS | {"uri"}
_GOOGLE_KEYS = {"$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description",
                "enum", "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum",
                "anyOf", "oneOf", "properties", "additionalProperties", "required",
                "propertyOrdering"}
_MAPS = ("properties", "$defs", "definitions")


def violations(dialect: str, schema: dict[str, Any]) -> list[str]:
    """What in ``schema`` the provider's documented subset does not allow."""
    problems: list[str] = []
    keys = {"openai": _OPENAI_KEYS, "anthropic": _ANTHROPIC_KEYS, "google": _GOOGLE_KEYS}[dialect]
    stats = Counter()
    defs = schema.get("$defs", {})

    def walk(node: Any, depth: int, where: str) -> None:
        if not isinstance(node, dict):
            problems.append(f"{where}: not a schema")
            return
        for key, value in node.items():
            if key not in keys:
                problems.append(f"{where}: keyword {key}")
            if key in _MAPS and isinstance(value, dict):
                for name, sub in value.items():
                    stats["chars"] += len(name)
                    if key == "properties":
                        stats["properties"] += 1
                    walk(sub, depth + (key == "properties"), f"{where}.{name}")
            elif key in ("items", "additionalProperties") and isinstance(value, dict):
                walk(value, depth, f"{where}[]")  # levels of nesting are object levels
            elif key in ("anyOf", "allOf", "oneOf", "prefixItems") and isinstance(value, list):
                for i, sub in enumerate(value):
                    walk(sub, depth, f"{where}|{i}")
        if dialect == "openai" and depth > 10:
            problems.append(f"{where}: nested deeper than 10")
        kind = node.get("type")
        enum = node.get("enum")
        if isinstance(enum, list):
            stats["enum"] += len(enum)
            stats["chars"] += sum(len(str(v)) for v in enum)
            if dialect == "anthropic" and any(isinstance(v, (dict, list)) for v in enum):
                problems.append(f"{where}: enum of non-scalars")
        if dialect in ("openai", "anthropic") and (
                kind == "object" or (isinstance(kind, list) and "object" in kind)):
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: object not closed")
            if dialect == "openai" and set(node.get("required", ())) != set(
                    node.get("properties", {})):
                problems.append(f"{where}: not every property required")
        fmt = node.get("format")
        if fmt is not None:
            allowed = {"openai": _STRICT_FORMATS, "anthropic": _ANTHROPIC_FORMATS}.get(dialect)
            if allowed is not None and fmt not in allowed:
                problems.append(f"{where}: format {fmt}")
        if dialect == "anthropic" and node.get("minItems", 0) > 1:
            problems.append(f"{where}: minItems above 1")
        ref = node.get("$ref")
        if isinstance(ref, str) and not (ref == "#" or ref.startswith("#/$defs/")):
            problems.append(f"{where}: $ref {ref}")

    walk(schema, 1, "$")
    if dialect == "openai":
        if schema.get("type") != "object" or "anyOf" in schema:
            problems.append("$: the root is not an object")
        if stats["properties"] > 5000 or stats["enum"] > 1000 or stats["chars"] > 120_000:
            problems.append("$: over OpenAI's size limits")
    if dialect == "anthropic" and defs and _recursive(defs):
        problems.append("$: recursive")
    return problems


def _recursive(defs: dict[str, Any]) -> bool:
    refs = {name: set(re.findall(r'"#/\$defs/([^"]+)"', json.dumps(body)))
            for name, body in defs.items()}

    def reaches(start: str, seen: set[str]) -> bool:
        for nxt in refs.get(start, ()):
            if nxt == start or nxt in seen:
                return True
            if reaches(nxt, seen | {nxt}):
                return True
        return False

    return any(reaches(name, {name}) for name in refs)


# ---------------------------------------------------------------- answers the schema allows


class _Writer:
    """Writes one answer a schema allows (``nulls``: null wherever allowed)."""

    def __init__(self, defs: dict[str, Any], nulls: bool) -> None:
        self.defs = defs
        self.nulls = nulls
        self.written = 0

    @property
    def minimal(self) -> bool:
        """Past a few thousand values (a recursive schema), write the least allowed."""
        return self.nulls or self.written > 3000

    def value(self, node: Any, depth: int = 0) -> Any:
        self.written += 1
        if not isinstance(node, dict) or depth > 60:
            return None
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = self.defs.get(ref.rsplit("/", 1)[-1]) if ref != "#" else None
            # A reference counts as a few levels: recursive answers stay shallow (an
            # answer 20 levels deep in a oneOf of 15 rules takes jsonschema minutes).
            return self.value(target, depth + 3) if target is not None else None
        if "const" in node:
            return node["const"]
        if isinstance(node.get("enum"), list) and node["enum"]:
            values = node["enum"]
            if (self.minimal or depth > 6) and None in values:
                return None
            return next((v for v in values if v is not None), values[0])
        for key in ("anyOf", "oneOf"):
            branches = [b for b in node.get(key) or () if isinstance(b, dict)]
            if branches:
                nulls = [b for b in branches if b.get("type") == "null"]
                if (self.minimal or depth > 6) and nulls:
                    return None
                real = [b for b in branches if b.get("type") != "null"] or branches
                depth_ok = real if depth < 8 else real[::-1]  # deep: prefer the last (a leaf)
                return self.value({**{k: v for k, v in node.items() if k != key},
                                   **depth_ok[0]}, depth + 1)
        kind = node.get("type")
        if isinstance(kind, list):
            if (self.minimal or depth > 6) and "null" in kind:
                return None
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = ("object" if "properties" in node else "array" if "items" in node
                    else "string")
        return getattr(self, "_" + kind, lambda n, d: None)(node, depth)

    def _object(self, node: dict[str, Any], depth: int) -> Any:
        props = node.get("properties") or {}
        required = [n for n in node.get("required", ()) if isinstance(n, str)]
        if self.minimal or depth > 3:  # deep down, only what must be there
            props = {k: v for k, v in props.items() if k in required}
        out = {k: self.value(v, depth + 1) for k, v in props.items()}
        extra = node.get("additionalProperties")
        for name in required:  # required, but described only by patternProperties (if at all)
            if name not in out:
                sub = next((v for p, v in (node.get("patternProperties") or {}).items()
                            if re.search(p, name)), extra if isinstance(extra, dict) else {})
                out[name] = self.value(sub, depth + 1)
        return out

    def _array(self, node: dict[str, Any], depth: int) -> Any:
        if "prefixItems" in node:
            return [self.value(v, depth + 1) for v in node["prefixItems"]]
        low = node.get("minItems", 0)
        count = low if self.minimal or depth > 4 else max(low, 1)
        count = min(count, node.get("maxItems", count))
        return [self.value(node.get("items"), depth + 1) for _ in range(count)]

    def _string(self, node: dict[str, Any], depth: int) -> Any:
        fmt = node.get("format")
        if fmt in _FORMAT_EXAMPLES:
            return _FORMAT_EXAMPLES[fmt]
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            return matching(pattern)
        return "ab"

    def _integer(self, node: dict[str, Any], depth: int) -> Any:
        return int(self._number(node, depth))

    def _number(self, node: dict[str, Any], depth: int) -> Any:
        low = node.get("minimum", node.get("exclusiveMinimum"))
        high = node.get("maximum", node.get("exclusiveMaximum"))
        value = 1
        if isinstance(low, (int, float)):
            value = low + (1 if "exclusiveMinimum" in node else 0)
        if isinstance(high, (int, float)) and value > high:
            value = high - (1 if "exclusiveMaximum" in node else 0)
        step = node.get("multipleOf")
        if isinstance(step, (int, float)) and step > 0:
            value = step * max(1, round(value / step))
        return value

    def _boolean(self, node: dict[str, Any], depth: int) -> Any:
        return True

    def _null(self, node: dict[str, Any], depth: int) -> Any:
        return None


_FORMAT_EXAMPLES = {
    "date-time": "2024-01-02T03:04:05Z", "date": "2024-01-02", "time": "03:04:05Z",
    "duration": "P1D", "email": "a@example.com", "hostname": "example.com",
    "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "uri": "https://example.com/a", "uri-reference": "/a", "iri": "https://example.com/a",
    "regex": "a+", "json-pointer": "/a",
}


def matching(pattern: str) -> str:
    """A short string ``re.search(pattern, ...)`` accepts (``"ab"`` when none is found)."""
    try:
        import re._parser as sre  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        import sre_parse as sre  # type: ignore[no-redef]
    try:
        text = _emit(sre.parse(pattern), {})
    except Exception:
        return "ab"
    try:
        return text if re.search(pattern, text) else "ab"
    except re.error:
        return "ab"


def _emit(parsed: Any, groups: dict[int, str]) -> str:
    out = []
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_one_of(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = arg
            out.append(_emit(sub, groups) * low)
        elif name == "SUBPATTERN":
            text = _emit(arg[-1], groups)
            if arg[0] is not None:
                groups[arg[0]] = text
            out.append(text)
        elif name == "BRANCH":
            out.append(_emit(arg[1][0], groups))
        elif name == "GROUPREF":
            out.append(groups.get(arg, ""))
        elif name in ("ATOMIC_GROUP",):
            out.append(_emit(arg, groups))
        # AT (anchors), ASSERT / ASSERT_NOT (lookarounds): nothing to write
    return "".join(out)


def _one_of(items: Any) -> str:
    """A character of a class ``[...]`` (of its complement for ``[^...]``)."""
    negate = any(str(op) == "NEGATE" for op, _ in items)
    if not negate:
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                return chr(arg)
            if name == "RANGE":
                return chr(arg[0])
            if name == "CATEGORY":
                return {"CATEGORY_DIGIT": "0", "CATEGORY_SPACE": " "}.get(str(arg), "a")
        return "a"
    pattern = "[" + "".join(_class_text(op, arg) for op, arg in items) + "]"
    return next((c for c in "ab0_ -." if re.fullmatch(pattern, c)), "a")


def _class_text(op: Any, arg: Any) -> str:
    name = str(op)
    if name == "NEGATE":
        return "^"
    if name == "LITERAL":
        return re.escape(chr(arg))
    if name == "RANGE":
        return f"{re.escape(chr(arg[0]))}-{re.escape(chr(arg[1]))}"
    if name == "CATEGORY":
        return {"CATEGORY_DIGIT": r"\d", "CATEGORY_SPACE": r"\s",
                "CATEGORY_WORD": r"\w"}.get(str(arg), "")
    return ""


# ---------------------------------------------------------------- measuring


class Result:
    def __init__(self) -> None:
        self.total = 0
        self.invalid = 0  # not a valid JSON Schema: left out
        self.refused = Counter()  # dialect -> msgflux refused to compile it
        self.accepted = Counter()
        self.round_trip = Counter()
        self.both = Counter()
        self.reasons: dict[str, Counter] = {d: Counter() for d in DIALECTS}


class _Slow(Exception):  # noqa: N818 - a signal, not an error of msgflux
    pass


def _alarm(*_: Any) -> None:
    raise _Slow


def measure(rows: Any, progress: bool = False, seconds: int = 20) -> Result:
    """Measure every schema; one that takes over ``seconds`` (jsonschema can take minutes
    on deep recursive answers) counts as failed on every dialect (``timed out``)."""
    import signal

    result = Result()
    handler = signal.signal(signal.SIGALRM, _alarm)
    try:
        for _category, _id, schema in rows:
            result.total += 1
            if progress and result.total % 250 == 0:
                print(f"... {result.total} schemas", file=sys.stderr, flush=True)
            signal.alarm(seconds)
            try:
                _measure_one(schema, result)
            except (_Slow, MemoryError, RecursionError):
                for d in DIALECTS:
                    result.reasons[d]["timed out"] += 1
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, handler)
    return result


def _measure_one(schema: Any, result: Result) -> None:
    import msgspec

    from msgflux import exceptions as exc
    from msgflux.models.structured import compile_schema, decode_structured

    try:
        compiled = compile_schema(schema)
    except exc.InvalidParameterError as e:
        if "not a valid JSON Schema" in str(e):
            result.invalid += 1
            return
        for d in DIALECTS:
            result.refused[d] += 1
            result.reasons[d][str(e).split(":")[-1].strip()[:50]] += 1
        return
    outcome = {}
    for dialect in DIALECTS:
        sent = sent_schema(dialect, compiled.output)
        problems = violations(dialect, sent)
        trip = None
        defs = sent.get("$defs", {})
        for nulls in (False, True):
            answer = _Writer(defs, nulls).value(sent)
            try:
                decode_structured(compiled, msgspec.json.encode(answer))
            except Exception as e:  # a failed round trip, whatever raised
                trip = trip or f"round trip: {str(e).split(': ', 1)[-1][:40]}"
        outcome[dialect] = (problems[0].split(": ", 1)[-1][:40] if problems else None, trip)
    for dialect, (problem, trip) in outcome.items():  # counted once all went through
        for reason in (problem, trip):
            if reason is not None:
                result.reasons[dialect][reason] += 1
        result.accepted[dialect] += problem is None
        result.round_trip[dialect] += trip is None
        result.both[dialect] += problem is None and trip is None


def llama_sample(rows: list[Any], n: int, model: Any = None, max_tokens: int = 160
                 ) -> tuple[int, int, float]:
    """``(valid answers, schemas asked, seconds)`` of a local model in json_schema mode
    (default: the embedded SmolLM2-135M)."""
    import msgflux as mf
    from msgflux import exceptions as exc
    from msgflux.models.structured import compile_schema

    if model is None:
        model = mf.Model.chat_completion("llamacpp/smollm2", temperature=0, n_ctx=8192)
    asked = valid = 0
    start = time.perf_counter()
    for _category, _id, schema in rows:
        if asked >= n:
            break
        try:
            compile_schema(schema)
        except exc.InvalidParameterError:
            continue
        asked += 1
        try:
            model("Give an example of this JSON object.", generation_schema=schema,
                  structured_mode="json_schema", max_validation_retries=0,
                  max_tokens=max_tokens)
            valid += 1
        except exc.MsgfluxError:
            pass
    return valid, asked, time.perf_counter() - start


def small(rows: Any, limit: int = 2000) -> list[Any]:
    """Schemas whose text is short (the local model can finish their answers)."""
    return [r for r in rows if len(json.dumps(r[2])) <= limit]


def table(result: Result) -> str:
    valid = result.total - result.invalid
    lines = [
        f"{result.total} schemas, {result.invalid} of them not valid JSON Schema (left out): "
        f"{valid} measured.",
        "",
        "| dialect | accepted by the provider's subset | round trip valid | both |",
        "|---|--:|--:|--:|",
    ]
    for d in DIALECTS:
        def pct(n: int) -> str:
            return f"{n / valid:.1%} ({n})" if valid else "-"

        lines.append(f"| {d} | {pct(result.accepted[d])} | {pct(result.round_trip[d])} | "
                     f"{pct(result.both[d])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="schemas per category")
    parser.add_argument("--llama", type=int, default=0, help="schemas for the local model")
    parser.add_argument("--markdown", action="store_true", help="print only the table")
    parser.add_argument("--reasons", action="store_true", help="the commonest failures")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"JSONSchemaBench not found at {DATA}", file=sys.stderr)
        return 2
    rows = list(load(args.limit))
    start = time.perf_counter()
    result = measure(rows, progress=not args.markdown)
    print(table(result))
    if not args.markdown:
        print(f"\n({time.perf_counter() - start:.1f} s)")
    if args.reasons:
        for d in DIALECTS:
            print(f"\n{d}: {result.reasons[d].most_common(12)}")
    if args.llama:
        valid, asked, seconds = llama_sample(small(rows), args.llama)
        print(f"\nlocal SmolLM2-135M (llama.cpp json_schema mode): {valid}/{asked} valid "
              f"({valid / max(asked, 1):.0%}) in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
