"""Functions as tools, and tool names every provider accepts.

``tool_schemas=[get_weather, search_docs, {...a tool dict...}]``: a function (sync
or async, a bound method, a ``functools.partial``, any callable) becomes a tool from
its name, signature, type hints and docstring. Parameter descriptions are read
from Google (``Args:``), NumPy (``Parameters`` / ``----------``) and Sphinx
(``:param name:``) docstrings; the text before those sections describes the tool.
:meth:`FunctionTool.arguments` decodes and validates a call's arguments into the
annotated types (``list[int]``, Structs, dataclasses, Enums, pydantic models…)
before the function sees them; an argument left out keeps the function's default.

Tool names: OpenAI and Anthropic take ``[a-zA-Z0-9_-]{1,64}``, Gemini
``[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}``. A :class:`Toolset` sends every name in the
intersection (``[a-zA-Z_][a-zA-Z0-9_-]{0,63}``): a name outside it (dots, spaces,
a leading digit, more than 64 characters) is sent as a safe spelling, unique
within the call, and the model's calls are mapped back to the name the caller
gave, so the dialects only ever see valid names and the caller only theirs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import re
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from msgflux.exceptions import InvalidParameterError, ToolCallArgumentsError
from msgflux.models.options import MAPPING, tool_spec
from msgflux.models.request import Message, ToolCall, ToolSpec

__all__ = ["FunctionTool", "Toolset", "parse_docstring", "safe_tool_name", "toolset"]


# ---------------------------------------------------------------- the toolset of a call


class Toolset:
    """The tools of one call: specs under the caller's names and as sent, the functions
    to run, and the mapping between the names."""

    __slots__ = ("_to_user", "_to_wire", "functions", "renamed", "specs", "wire_specs")

    def __init__(self, specs: tuple[ToolSpec, ...], functions: dict[str, FunctionTool]) -> None:
        self.specs = specs
        self.functions = functions
        self._to_wire: dict[str, str] = {}
        taken: set[str] = set()
        # Valid names keep their spelling; the others get one that no valid name has.
        for spec in sorted(specs, key=lambda s: not _VALID.match(s.name)):
            wire = safe_tool_name(spec.name, taken)
            taken.add(wire)
            self._to_wire[spec.name] = wire
        self._to_user = {w: u for u, w in self._to_wire.items()}
        self.renamed = any(u != w for u, w in self._to_wire.items())
        self.wire_specs = tuple(msgspec.structs.replace(s, name=self._to_wire[s.name])
                                for s in specs) if self.renamed else specs

    def __repr__(self) -> str:
        return f"Toolset({[s.name for s in self.specs]})"

    def wire(self, name: str) -> str:
        """The name sent for the caller's ``name`` (a name from elsewhere: made safe)."""
        wire = self._to_wire.get(name)
        return wire if wire is not None else safe_tool_name(name, set())

    def user(self, wire: str) -> str:
        """The caller's name of a tool the model called (unknown names as they came)."""
        return self._to_user.get(wire, wire)

    def to_wire(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        """The conversation with the tool names of its calls and results as sent."""
        out = []
        for m in messages:
            if m.tool_calls:
                m = msgspec.structs.replace(m, tool_calls=tuple(
                    msgspec.structs.replace(c, name=self.wire(c.name)) for c in m.tool_calls))
            if m.role == "tool" and m.name is not None:
                m = msgspec.structs.replace(m, name=self.wire(m.name))
            out.append(m)
        return tuple(out)

    def from_wire(self, calls: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
        return tuple(msgspec.structs.replace(c, name=self.user(c.name)) for c in calls)


_VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")


def safe_tool_name(name: str, taken: set[str]) -> str:
    """``name`` if every provider takes it and it is free, else a safe spelling of it:
    other characters become ``_``, a long name keeps its start and gets a short hash
    of the whole name, and a clash gets a number."""
    if _VALID.match(name) and name not in taken:
        return name
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "tool"
    if not (base[0].isalpha() or base[0] == "_"):
        base = f"t_{base}"
    if len(base) > 64 or base in taken or base != name:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        base = base if len(base) <= 64 and base not in taken else f"{base[:55]}_{digest}"
    candidate, n = base, 2
    while candidate in taken:
        suffix = f"_{n}"
        candidate = base[:64 - len(suffix)] + suffix
        n += 1
    return candidate


def toolset(tool_schemas: Any) -> Toolset | None:
    """``tool_schemas=``: functions and OpenAI-shaped tool dicts → a Toolset (``None``
    when there are none)."""
    if not tool_schemas:
        return None
    if isinstance(tool_schemas, (dict, str)) or callable(tool_schemas) or not isinstance(
            tool_schemas, (list, tuple)):
        raise InvalidParameterError(
            "tool_schemas must be a list of functions or tool dicts like "
            '{"type": "function", "function": {"name": ..., "parameters": {...}}}'
        )
    specs: list[ToolSpec] = []
    functions: dict[str, FunctionTool] = {}
    for i, tool in enumerate(tool_schemas):
        if isinstance(tool, FunctionTool) or (callable(tool) and not isinstance(tool, MAPPING)):
            function = tool if isinstance(tool, FunctionTool) else _function_tool(tool)
            spec = function.spec
            functions[spec.name] = function
        else:
            spec = tool_spec(tool, i)
        if any(s.name == spec.name for s in specs):
            raise InvalidParameterError(f"tool_schemas has two tools named {spec.name!r}")
        specs.append(spec)
    return Toolset(tuple(specs), functions)


# ---------------------------------------------------------------- functions


def _function_tool(fn: Callable[..., Any]) -> FunctionTool:
    """``FunctionTool(fn)``, made once per function: reading a function (signature,
    docstring, the arguments' Struct) takes ~0.2 ms, and a model is handed the same
    functions on every call."""
    try:
        hash(fn)
    except TypeError:  # a callable object without a hash: read it each time
        return FunctionTool(fn)
    return _function_tool_of(fn)


@functools.lru_cache(maxsize=256)
def _function_tool_of(fn: Callable[..., Any]) -> FunctionTool:
    return FunctionTool(fn)


class FunctionTool:
    """A Python callable offered as a tool.

    ``FunctionTool(fn, name=None, description=None)`` overrides what is read from
    the function; passing the bare function to ``tool_schemas`` is the same as
    ``FunctionTool(fn)``. ``spec`` is what the model sees; :meth:`arguments` turns a
    call's JSON arguments into keyword arguments; :meth:`invoke` / :meth:`ainvoke`
    run it (a sync function called from ``ainvoke`` runs in a worker thread).
    """

    __slots__ = ("_adapter", "_fields", "_positional", "_struct", "fn", "is_async", "spec")

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 description: str | None = None) -> None:
        if not callable(fn):
            raise InvalidParameterError(f"a tool function must be callable, got {fn!r}")
        self.fn = fn
        target = _unwrapped(fn)
        self.is_async = inspect.iscoroutinefunction(target) or (
            not inspect.isroutine(target) and inspect.iscoroutinefunction(type(target).__call__))
        tool_name = name or getattr(target, "__name__", None) or type(fn).__name__
        if not isinstance(tool_name, str) or not tool_name or tool_name == "<lambda>":
            raise InvalidParameterError(
                f"tool {fn!r} has no usable name (a lambda?): wrap it as "
                "FunctionTool(fn, name='...')"
            )
        summary, params = parse_docstring(inspect.getdoc(target) or "")
        parameters, self._struct, self._adapter, self._fields, self._positional = _parameters(
            fn, tool_name, params)
        self.spec = ToolSpec(tool_name, description or summary or None, parameters)

    def __repr__(self) -> str:
        return f"FunctionTool({self.spec.name})"

    def arguments(self, raw: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """``(args, kwargs)`` for the function from a call's parsed JSON arguments,
        validated into the annotated types; ToolCallArgumentsError says what is wrong."""
        try:
            if self._adapter is not None:
                obj = self._adapter.model_validate(dict(raw))
            else:
                obj = msgspec.convert(dict(raw), self._struct, strict=False)
        except Exception as e:  # msgspec's or pydantic's validation error, said to the model
            raise ToolCallArgumentsError(
                f"Invalid arguments for tool {self.spec.name!r}: {e}",
                raw=msgspec.json.encode(dict(raw)).decode(), tool_name=self.spec.name,
            ) from None
        values = {f: getattr(obj, f) for f in self._fields}
        values = {k: v for k, v in values.items() if v is not msgspec.UNSET}
        if self._adapter is not None:
            values = {k: v for k, v in values.items() if k in obj.model_fields_set}
        args = [values.pop(name) for name in self._positional if name in values]
        return args, values

    def invoke(self, raw: Mapping[str, Any]) -> Any:
        """Run the tool on a call's arguments (an async function: on a private loop)."""
        args, kwargs = self.arguments(raw)
        result = self.fn(*args, **kwargs)
        if inspect.isawaitable(result):
            import asyncio

            async def wait() -> Any:
                return await result

            return asyncio.run(wait())
        return result

    async def ainvoke(self, raw: Mapping[str, Any]) -> Any:
        """Run the tool on the running loop (a sync function: in a worker thread)."""
        args, kwargs = self.arguments(raw)
        if self.is_async:
            return await self.fn(*args, **kwargs)
        import asyncio

        result = await asyncio.to_thread(self.fn, *args, **kwargs)
        return await result if inspect.isawaitable(result) else result


def _unwrapped(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _parameters(fn: Any, name: str, docs: dict[str, str]
                ) -> tuple[dict[str, Any], Any, Any, list[str], list[str]]:
    """``(JSON Schema, argument Struct, pydantic model, field names, positional-only names)``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        raise InvalidParameterError(f"tool {name!r}: cannot read its signature ({e})") from None
    target = _unwrapped(fn)
    try:
        hints = typing.get_type_hints(target if inspect.isroutine(target) else
                                      type(target).__call__, include_extras=True)
    except Exception as e:  # an annotation that names something undefined
        raise InvalidParameterError(
            f"tool {name!r}: its type hints cannot be resolved ({e})"
        ) from None
    fields: list[tuple[str, Any, Any]] = []
    positional: list[str] = []
    defaults: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name.startswith("_"):
            raise InvalidParameterError(
                f"tool {name!r}: parameter {param.name!r} starts with an underscore, which "
                "a tool's arguments cannot carry; rename it or bind it with functools.partial"
            )
        if param.kind == param.POSITIONAL_ONLY:
            positional.append(param.name)
        annotation = hints.get(param.name, Any)
        doc = docs.get(param.name)
        if doc and not _described(annotation):
            annotation = typing.Annotated[annotation, msgspec.Meta(description=doc)]
        if param.default is param.empty:
            fields.append((param.name, annotation, msgspec.NODEFAULT))
        else:
            defaults[param.name] = param.default
            fields.append((param.name, typing.Union[annotation, msgspec.UnsetType],  # noqa: UP007
                           msgspec.UNSET))
    struct = msgspec.defstruct(f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}_arguments", fields,
                               kw_only=True)
    adapter = None
    try:
        raw = msgspec.json.schema(struct)
    except (TypeError, ValueError) as e:
        adapter = _pydantic_arguments(name, fields, defaults, docs)
        if adapter is None:
            raise InvalidParameterError(
                f"tool {name!r}: its parameters cannot be described as JSON Schema ({e})"
            ) from None
        raw = adapter.model_json_schema()
    from msgflux.models.schema import lower

    schema = lower(raw, f"tool {name!r}").logical
    schema.pop("title", None)
    props = schema.get("properties", {})
    for key, value in defaults.items():
        if key in props and isinstance(props[key], dict):
            with contextlib.suppress(TypeError, ValueError):  # else the default goes unsaid
                props[key] = {**props[key], "default": msgspec.to_builtins(value)}
    return schema, struct, adapter, [f[0] for f in fields], positional


def _described(annotation: Any) -> bool:
    return any(isinstance(m, msgspec.Meta) and m.description
               for m in getattr(annotation, "__metadata__", ()))


def _pydantic_arguments(name: str, fields: list[tuple[str, Any, Any]],
                        defaults: dict[str, Any], docs: dict[str, str]) -> Any:
    """A pydantic model of the arguments, for annotations only pydantic knows."""
    if "pydantic" not in sys.modules:
        return None
    import pydantic

    definitions: dict[str, Any] = {}
    for field, annotation, _ in fields:
        base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Union \
            and msgspec.UnsetType in typing.get_args(annotation) else annotation
        if field in defaults:
            default = pydantic.Field(default=defaults[field], description=docs.get(field))
        else:
            default = pydantic.Field(description=docs.get(field))
        definitions[field] = (base, default)
    try:
        return pydantic.create_model(f"{name}_arguments", **definitions)
    except Exception:
        return None


# ---------------------------------------------------------------- docstrings

_GOOGLE_ARGS = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword "
                          r"Arguments|Other Parameters)\s*:\s*$")
_GOOGLE_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]{1,30}:\s*$")
_GOOGLE_ITEM = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_RULE = re.compile(r"^\s*-{3,}\s*$")
_NUMPY_ITEM = re.compile(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*"
                         r"\s*(?::\s*(.*))?$")
_SPHINX_FIELD = re.compile(r"^\s*:([A-Za-z]+)(?:\s+([^:]*?))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """``(description, {parameter: description})`` of a Google, NumPy or Sphinx docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    params: dict[str, str] = {}
    summary: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _NUMPY_RULE.match(lines[i + 1]) if i + 1 < len(lines) else False:
            header = line.strip().lower()
            i = _numpy_section(lines, i + 2, params if header in (
                "parameters", "params", "arguments", "other parameters",
                "keyword arguments") else None)
            continue
        google = _GOOGLE_ARGS.match(line)
        if google is not None:
            i = _google_section(lines, i + 1, len(google.group(1)), params)
            continue
        sphinx = _SPHINX_FIELD.match(line)
        if sphinx is not None:
            i = _sphinx_field(lines, i, sphinx, params)
            continue
        if _GOOGLE_SECTION.match(line) and i + 1 < len(lines) and lines[i + 1].startswith(
                (" ", "\t")):
            i = _google_section(lines, i + 1, len(line) - len(line.lstrip()), None)
            continue
        summary.append(line)
        i += 1
    return "\n".join(summary).strip(), params


def _google_section(lines: list[str], i: int, indent: int,
                    params: dict[str, str] | None) -> int:
    current: str | None = None
    item_indent: int | None = None
    while i < len(lines):
        line = lines[i]
        if line.strip():
            depth = len(line) - len(line.lstrip())
            if depth <= indent:
                break
            if item_indent is None:
                item_indent = depth
            if depth == item_indent:
                m = _GOOGLE_ITEM.match(line.strip())
                current = m.group(1) if m is not None else None
                if m is not None and params is not None:
                    params[current] = m.group(3).strip()
            elif current is not None and params is not None:
                params[current] = f"{params[current]} {line.strip()}".strip()
        i += 1
    return i


def _numpy_section(lines: list[str], i: int, params: dict[str, str] | None) -> int:
    current: list[str] = []
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1]) and line.strip():
            break  # the next section's header
        if line.strip() and not line.startswith((" ", "\t")):
            m = _NUMPY_ITEM.match(line.strip())
            current = [n.strip().lstrip("*") for n in line.split(":")[0].split(",")] \
                if m is not None else []
            if params is not None:
                for name in current:
                    params[name] = ""
        elif line.strip() and params is not None:
            for name in current:
                params[name] = f"{params[name]} {line.strip()}".strip()
        i += 1
    return i


def _sphinx_field(lines: list[str], i: int, m: re.Match[str], params: dict[str, str]) -> int:
    kind, arg, text = m.group(1), m.group(2) or "", m.group(3)
    parts = [text.strip()]
    i += 1
    while i < len(lines) and lines[i].startswith((" ", "\t")) and lines[i].strip():
        parts.append(lines[i].strip())
        i += 1
    if kind in ("param", "parameter", "arg", "argument", "key", "keyword") and arg:
        name = arg.split()[-1]  # ":param int x:" names x
        params[name] = " ".join(p for p in parts if p)
    return i
