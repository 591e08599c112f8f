"""``dotdict``: a ``dict`` whose keys are also attributes.

Used for response metadata and structured results, so ``result.name`` and
``result["name"]`` both work. It stays a real ``dict`` (JSON-encodable,
``==`` to the plain dict, cheap to copy). Nested dicts and lists of dicts are
converted once, on construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["dotdict", "to_dotdict", "to_dotdict_for"]


class dotdict(dict):  # noqa: N801 - the lower-case name is msgflux's public spelling
    """A dict with attribute access; a missing attribute raises ``AttributeError``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{name!r} is not a key of this result; keys: {sorted(self)!r}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *(k for k in self if isinstance(k, str))]

    def copy(self) -> dotdict:
        return to_dotdict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dotdict:
        return to_dotdict(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dotdict, (dict(self),))

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy, nested values converted back too."""
        return _plain(self)


# Values that hold no dict: kept as they are, without a call (most values of a result).
_LEAVES = frozenset({str, int, float, bool, type(None)})


def to_dotdict(value: Any) -> Any:
    """Convert dicts (recursively, through lists and tuples) into ``dotdict``."""
    if isinstance(value, dict):
        return dotdict({k: v if v.__class__ in _LEAVES else to_dotdict(v)
                        for k, v in value.items()})
    if isinstance(value, list):
        return [v if v.__class__ in _LEAVES else to_dotdict(v) for v in value]
    if isinstance(value, tuple):
        return tuple(v if v.__class__ in _LEAVES else to_dotdict(v) for v in value)
    return value


def to_dotdict_for(type_: Any) -> Callable[[Any], Any]:
    """:func:`to_dotdict` for the builtins of one type (``msgspec.to_builtins`` of an
    instance): the same result, with the type read once instead of every value looked
    at on every call. Only dict-holding fields are visited; what the plan cannot tell
    apart (unions, mappings, ``Any``) goes through :func:`to_dotdict`."""
    import msgspec.inspect as mi

    return _plan(mi.type_info(type_), set()) or to_dotdict


# Types whose builtins never hold a dict (to_builtins turns them into str, int, ...).
_LEAF_TYPES = ("StrType", "IntType", "FloatType", "BoolType", "NoneType", "LiteralType",
               "EnumType", "DateTimeType", "DateType", "TimeType", "TimeDeltaType", "UUIDType",
               "DecimalType", "BytesType", "ByteArrayType", "MemoryViewType")


def _plan(t: Any, seen: set[type]) -> Callable[[Any], Any] | None:
    """How to convert the builtins of ``t`` (``None``: they hold no dict)."""
    import msgspec.inspect as mi

    if type(t).__name__ in _LEAF_TYPES:
        return None
    if isinstance(t, mi.StructType) and not t.array_like and t.cls not in seen:
        seen = seen | {t.cls}  # a recursive type visits itself through to_dotdict
        fields = tuple((f.encode_name, conv) for f in t.fields
                       if (conv := _plan(f.type, seen)) is not None)
        return _struct(fields) if fields else dotdict
    if isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType)):  # builtins: a list
        item = _plan(t.item_type, seen)
        return None if item is None else _items(item)
    if isinstance(t, mi.UnionType):
        plans = [_plan(k, seen) for k in t.types if not isinstance(k, mi.NoneType)]
        if not any(plans):  # str | int, Literal | None
            return None
        if len(plans) == 1:  # Optional[X]
            return _optional(plans[0])  # type: ignore[arg-type]
    return to_dotdict


def _struct(fields: tuple[tuple[str, Callable[[Any], Any]], ...]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        out = dotdict(value)
        for name, conv in fields:
            if name in out:  # omitted defaults are absent
                out[name] = conv(out[name])
        return out
    return convert


def _items(item: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda values: [item(v) for v in values]


def _optional(inner: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else inner(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
