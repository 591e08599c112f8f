"""The batch progress bar: tqdm, on a terminal only.

tqdm rather than rich: one small pure-Python package with no dependencies of
its own (rich brings pygments and markdown-it), it imports in a fraction of
rich's time, it already knows to stay quiet when its stream is not a terminal,
and it draws rate and ETA itself; errors, tokens and running cost go in its
postfix. The bar is refreshed at most a few times a second, so it costs the
batch nothing measurable per item.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from msgflux.batch.items import BatchItem

__all__ = ["Progress"]

_REFRESH = 0.2  # seconds between two redraws


class Progress:
    """Counts a batch's items and shows them (or not).

    ``show``: ``None`` — a bar when stderr is a terminal and tqdm is installed;
    ``True`` — a bar on stderr (tqdm required); ``False`` — none; a text
    stream — a bar on it.
    """

    def __init__(self, total: int | None, show: bool | TextIO | None) -> None:
        self.done = 0
        self.errors = 0
        self.resumed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.priced = False
        self._pending = 0
        self._last = time.monotonic()
        self._bar: Any = None
        stream = show if show not in (None, True, False) else sys.stderr
        if show is None:
            show = _isatty(stream) and _have_tqdm()
        if show:
            try:
                from tqdm import tqdm
            except ImportError:
                from msgflux.exceptions import MissingDependencyError

                raise MissingDependencyError(
                    "The batch progress bar needs tqdm: pip install 'msgflux[progress]' "
                    "(or pass progress=False)"
                ) from None
            self._bar = tqdm(total=total, file=stream, unit="item", dynamic_ncols=True,
                             smoothing=0.1, mininterval=_REFRESH)

    def skip(self) -> None:
        """An item a checkpoint already held."""
        self.resumed += 1
        self._tick()

    def add(self, item: BatchItem) -> None:
        self.done += 1
        if item.error is not None:
            self.errors += 1
        usage = item.usage
        if usage:
            self.prompt_tokens += usage.get("prompt_tokens", 0)
            self.completion_tokens += usage.get("completion_tokens", 0)
        if item.cost is not None:
            self.cost += item.cost
            self.priced = True
        self._tick()

    def _tick(self) -> None:
        if self._bar is None:
            return
        self._pending += 1
        now = time.monotonic()
        if now - self._last >= _REFRESH:
            self._draw(now)

    def _draw(self, now: float) -> None:
        bar = self._bar
        bar.set_postfix_str(self.postfix(), refresh=False)
        bar.update(self._pending)
        self._pending = 0
        self._last = now

    def postfix(self) -> str:
        text = f"errors={self.errors} tokens={self.prompt_tokens + self.completion_tokens:,}"
        if self.priced:
            text += f" cost=${self.cost:.4f}"
        if self.resumed:
            text += f" resumed={self.resumed}"
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._draw(time.monotonic())
            self._bar.close()
            self._bar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _have_tqdm() -> bool:
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None
