"""``generation_schema``: the output types users bring, their JSON Schema, and their results.

A type compiles once (cached) into a :class:`CompiledSchema`: its JSON Schema in
the logical and strict shapes (:mod:`msgflux.models.schema`) and how to turn the
model's JSON back into what the type promises. What each kind gives back:

==========================================  ================================================
``generation_schema=``                      ``response.consume()``
==========================================  ================================================
a ``msgspec.Struct``                        a :class:`~msgflux.dotdict.dotdict` (the spec's
                                            shape: nested dicts, Enum members as values)
a pydantic v2 ``BaseModel``                 an instance, validated by the model (validators
                                            and defaults run)
a dataclass                                 an instance (``__post_init__`` runs)
a ``TypedDict``                             a dotdict
a JSON Schema ``dict``                      a dotdict (or the value, for a non-object root),
                                            validated against that schema
any other type msgspec knows (``int``,      the value converted to that type (``Enum`` →
``list[str]``, ``Literal``, ``Enum``,       member, ``tuple`` → tuple, a Struct inside →
unions, ``tuple``, ``NamedTuple``…)         the Struct)
a type only pydantic knows (e.g.            the value validated by ``pydantic.TypeAdapter``
``list[SomeBaseModel]``)
==========================================  ================================================

pydantic is imported only when a pydantic type is passed (then it is already
imported by the caller); a JSON Schema dict is validated with the
``jsonschema`` package (``pip install "msgflux[jsonschema]"``), imported on the
first such schema.

Constraints and descriptions (``msgspec.Meta``, ``pydantic.Field``,
docstrings) are part of the schema: they reach the provider where its schema
subset takes them (see :mod:`msgflux.models.schema` and the dialects' pruning),
are written into the description where it does not, and are always enforced
here, because the answer is validated by the type (or schema) itself.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from typing import Any

import msgspec

from msgflux.dotdict import to_dotdict, to_dotdict_for
from msgflux.exceptions import (
    InvalidParameterError,
    MissingDependencyError,
    StructuredOutputError,
)
from msgflux.models.request import OutputSchema
from msgflux.models.schema import LoweredSchema, lower, restore

__all__ = ["CompiledSchema", "compile_schema", "decode_structured", "extract_json",
           "validate_value"]


class CompiledSchema:
    """Everything needed to ask for and read back one output type.

    ``kind``: ``struct``, ``pydantic``, ``dataclass``, ``typeddict``, ``plain`` or
    ``json_schema``; ``output``: what goes in the request; ``lowered``: both
    shapes; ``needs_restore``: whether the strict shape differs from the type's.
    """

    __slots__ = ("_adapter", "_decode", "_dotted", "_validator", "kind", "lowered", "name",
                 "needs_restore", "output", "schema", "type")

    def __init__(self, type_: Any, kind: str, name: str, lowered: LoweredSchema,
                 adapter: Any = None, validator: Any = None) -> None:
        self.type = type_
        self.kind = kind
        self.name = name
        self.lowered = lowered
        self.needs_restore = lowered.needs_restore
        self.schema = lowered.logical
        root = lowered.logical["properties"]["value"] if lowered.wrapped else lowered.logical
        doc = root.get("description")
        self.output = OutputSchema(name=re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "output",
                                   schema=lowered.logical, strict_schema=lowered.strict,
                                   description=doc if isinstance(doc, str) else None)
        self._adapter = adapter  # a pydantic TypeAdapter, for types only pydantic knows
        self._validator = validator  # a jsonschema validator, for JSON Schema dicts
        # The typed JSON decoder of a Struct and the dotdict conversion of its builtins,
        # made once (the hot path of decode_fast).
        self._decode = msgspec.json.Decoder(type_).decode if kind == "struct" else None
        self._dotted = to_dotdict_for(type_) if kind == "struct" else to_dotdict

    def __repr__(self) -> str:
        return f"CompiledSchema({self.kind}: {self.name})"

    def result(self, value: Any, lax: bool = False) -> Any:
        """The caller's result from a decoded, restored JSON value (validates it).

        ``lax``: accept strings for numbers and booleans (values read from text, as
        typed XML is)."""
        kind = self.kind
        if kind == "struct" or kind == "typeddict":
            return self._dotted(msgspec.to_builtins(msgspec.convert(value, self.type,
                                                                    strict=not lax)))
        if kind == "pydantic":
            if self._adapter is not None:
                return self._adapter.validate_python(value)
            return self.type.model_validate(value)
        if kind == "json_schema":
            errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
            if errors:
                raise _SchemaMismatchError(errors)
            return to_dotdict(value)
        return msgspec.convert(value, self.type, strict=not lax)

    def decode_fast(self, text: str | bytes) -> Any:
        """The result straight from JSON text when no restoring is needed (the hot path)."""
        if self._decode is not None:  # a Struct
            return self._dotted(msgspec.to_builtins(self._decode(text)))
        if self.kind == "pydantic" and self._adapter is None:
            return self.type.model_validate_json(text)
        return self.result(msgspec.json.decode(text))


class _SchemaMismatchError(Exception):
    def __init__(self, errors: list[Any]) -> None:
        shown = "; ".join(
            f"{e.message} at $" + "".join(f"[{p!r}]" for p in e.absolute_path)
            for e in errors[:5]
        )
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(shown + more)


def compile_schema(schema_type: Any) -> CompiledSchema:
    """Compile an output type or a JSON Schema dict (cached; bad types fail clearly)."""
    if isinstance(schema_type, dict):
        try:
            key = msgspec.json.encode(schema_type)
        except (TypeError, ValueError, OverflowError) as e:
            raise InvalidParameterError(
                f"generation_schema: a JSON Schema dict must hold JSON values only ({e})"
            ) from None
        return _compile_json(key)
    try:
        hash(schema_type)
    except TypeError:
        return _compile(schema_type)
    return _compile_cached(schema_type)


@functools.lru_cache(maxsize=512)
def _compile_cached(schema_type: Any) -> CompiledSchema:
    return _compile(schema_type)


def _pydantic_base() -> Any:
    """``pydantic.BaseModel`` if pydantic is imported (a pydantic type implies it is)."""
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def _compile(schema_type: Any) -> CompiledSchema:
    name = getattr(schema_type, "__name__", None) or "output"
    base = _pydantic_base()
    if base is not None and isinstance(schema_type, type) and issubclass(schema_type, base):
        if not hasattr(schema_type, "model_json_schema"):
            raise InvalidParameterError(
                f"generation_schema {name} is a pydantic v1 model; msgflux supports pydantic "
                "v2 models (pydantic >= 2.0)."
            )
        return _compiled_pydantic(schema_type, name, None)
    if not _is_type(schema_type):
        raise InvalidParameterError(
            f"generation_schema must be a type or a JSON Schema dict, got {schema_type!r:.100}. "
            "Use a msgspec.Struct, a pydantic model, a dataclass, a TypedDict, a type such as "
            "list[str], or a JSON Schema dict."
        )
    try:
        raw = msgspec.json.schema(schema_type)
    except (TypeError, ValueError) as e:
        if base is not None:  # e.g. list[SomePydanticModel]: a type only pydantic knows
            import pydantic

            try:
                adapter = pydantic.TypeAdapter(schema_type)
            except Exception:
                adapter = None
            if adapter is not None:
                return _compiled_pydantic(schema_type, name, adapter)
        raise InvalidParameterError(
            f"generation_schema {name} cannot be turned into JSON Schema: {e}"
        ) from None
    except KeyError as e:
        # msgspec < 0.23 cannot name two different Structs that share a module and a
        # name (0.23 names them Item and Item_2). Such code is legitimate: say how to
        # get past the old msgspec.
        raise InvalidParameterError(
            f"generation_schema {name} uses two different Structs named "
            f"{getattr(e.args[0], '__qualname__', e) if e.args else e} in one module, which "
            f"msgspec {msgspec.__version__} cannot describe: upgrade msgspec to 0.23 or "
            "later, or rename one of them"
        ) from None
    return CompiledSchema(schema_type, _kind(schema_type), name, lower(raw, f"generation_schema "
                                                                           f"{name}"))


def _is_type(value: Any) -> bool:
    """A class, or a typing construct (``list[str]``, ``Literal[...]``, ``int | None``)."""
    if isinstance(value, type):
        return True
    return type(value).__module__ in ("typing", "types", "typing_extensions")


def _kind(schema_type: Any) -> str:
    if isinstance(schema_type, type):
        if issubclass(schema_type, msgspec.Struct):
            return "struct"
        if dataclasses.is_dataclass(schema_type):
            return "dataclass"
        if issubclass(schema_type, dict) and hasattr(schema_type, "__required_keys__"):
            return "typeddict"
    return "plain"


def _compiled_pydantic(schema_type: Any, name: str, adapter: Any) -> CompiledSchema:
    try:
        raw = (adapter.json_schema() if adapter is not None
               else schema_type.model_json_schema())
    except Exception as e:  # pydantic's own errors: a type it cannot describe
        raise InvalidParameterError(
            f"generation_schema {name} cannot be turned into JSON Schema: {e}"
        ) from None
    return CompiledSchema(schema_type, "pydantic", name,
                          lower(raw, f"generation_schema {name}"), adapter=adapter)


@functools.lru_cache(maxsize=256)
def _compile_json(key: bytes) -> CompiledSchema:
    schema = msgspec.json.decode(key)
    try:
        import jsonschema
    except ImportError:
        raise MissingDependencyError(
            "generation_schema as a JSON Schema dict is validated with the jsonschema "
            'package: pip install "msgflux[jsonschema]"'
        ) from None
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise InvalidParameterError(
            f"generation_schema is not a valid JSON Schema: {e.message}"
        ) from None
    validator = cls(schema, format_checker=jsonschema.FormatChecker())
    title = schema.get("title") if isinstance(schema, dict) else None
    name = title if isinstance(title, str) and title else "output"
    return CompiledSchema(schema, "json_schema", name, lower(schema), validator=validator)


# ---------------------------------------------------------------- decoding


def decode_structured(compiled: CompiledSchema, text: str | bytes, *,
                      lenient: bool = False) -> Any:
    """Decode, restore and validate the model's JSON; a typed error keeps the raw text.

    ``lenient``: the answer was only asked for in the prompt, so the JSON may sit in
    a code fence or between sentences (see :func:`extract_json`).
    """
    raw = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if lenient:
        text = extract_json(raw)
    try:
        if not compiled.needs_restore:
            return compiled.decode_fast(text)
        return compiled.result(restore(msgspec.json.decode(text), compiled.lowered))
    except msgspec.DecodeError as e:
        raise StructuredOutputError(
            f"The model's output is not valid JSON for {compiled.name}: {e}", raw=raw
        ) from None
    except Exception as e:
        raise _mismatch(compiled, e, raw) from None


def validate_value(compiled: CompiledSchema, value: Any, raw: str, lax: bool = False) -> Any:
    """Restore and validate an already decoded value (from typed XML, or a stream)."""
    try:
        return compiled.result(restore(value, compiled.lowered), lax)
    except Exception as e:
        raise _mismatch(compiled, e, raw) from None


def _mismatch(compiled: CompiledSchema, error: Exception, raw: str) -> Exception:
    """A validation failure of any kind (msgspec, pydantic, jsonschema) as one error."""
    if isinstance(error, (msgspec.ValidationError, _SchemaMismatchError, TypeError, ValueError)):
        return StructuredOutputError(
            f"The model's output does not match {compiled.name}: {error}", raw=raw
        )
    return error


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON of a prompted answer: a fenced block, else from the first ``{``/``[`` to
    the last ``}``/``]``, else the text itself."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
        return stripped
    fence = _FENCE.search(text)
    if fence is not None:
        return fence.group(1).strip()
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    end = max(text.rfind("}"), text.rfind("]"))
    if starts and end > min(starts):
        return text[min(starts):end + 1]
    return stripped
