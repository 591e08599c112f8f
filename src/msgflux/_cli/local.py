"""Local GGUF models for the ``msgflux`` command: loading with a progress line, and
``msgflux models --local``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from msgflux.models.providers.llamacpp import Engine, EngineOptions, get_engine, resolve_gguf

__all__ = ["LARGE", "start_engine"]

#: Files from this size on get a "loading" line even in `msgflux chat`: loading takes
#: seconds (SmolLM2's 98 MB loads in ~0.5 s, with no line).
LARGE = 500 * 1024 * 1024


def start_engine(model_id: str, options: EngineOptions, *, always: bool = True) -> Engine:
    """Find (or download) the model and start its engine, saying so on stderr.

    llama.cpp reports no load progress, so this prints a line before and the time
    taken after; a Hub download shows huggingface_hub's own progress bar first.
    With ``always=False`` only files of :data:`LARGE` bytes or more are announced.
    """
    path = resolve_gguf(model_id)
    engine = get_engine(path, options)
    size = path.stat().st_size
    if engine.running or (not always and size < LARGE):
        return engine.start()
    sys.stderr.write(f"msgflux: loading {path.name} ({_size(size)})...")
    sys.stderr.flush()
    started = time.monotonic()
    try:
        engine.start()
    finally:
        sys.stderr.write(f" {time.monotonic() - started:.1f} s\n")
        sys.stderr.flush()
    return engine


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _path_for_display(path: Path) -> str:
    home = Path.home()
    return f"~/{path.relative_to(home)}" if path.is_relative_to(home) else str(path)
