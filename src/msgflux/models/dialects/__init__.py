"""Dialects: one wire protocol each, written sans-I/O.

Each module here satisfies :class:`~msgflux.models.dialects.base.Dialect` with
module-level names: ``build_request``, ``parse_response``, ``stream_decoder``,
``parse_error`` and ``REQUIRES_MAX_TOKENS``. No sockets, clocks or globals: a
dialect is tested with recorded bytes alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from msgflux.models.dialects.base import Dialect

__all__ = ["DIALECTS", "get_dialect"]

DIALECTS = ("openai", "openai_responses", "anthropic", "google")


def get_dialect(name: str) -> Dialect:
    """The dialect called ``name``, imported on first use."""
    if name not in DIALECTS:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}")
    return cast("Dialect", importlib.import_module(f"msgflux.models.dialects.{name}"))
