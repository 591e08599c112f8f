"""``dotdict``: a ``dict`` whose keys are also attributes.

Used for response metadata and structured results, so ``result.name`` and
``result["name"]`` both work. It stays a real ``dict`` (JSON-encodable,
``==`` to the plain dict, cheap to copy). Nested dicts and lists of dicts are
converted once, on construction.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dotdict", "to_dotdict"]


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


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
