"""Client-side rate limits for a batch, shared by all its workers — sans-I/O.

:class:`RateLimiter` decides when the next call may start; the runner only
sleeps. It combines:

* **pacing** — requests and tokens per minute, each a GCRA (a leaky bucket
  kept as one "theoretical arrival time"), allowing a burst of one second's
  worth;
* **an adaptive window** on calls in flight — halved on a 429 (at most once a
  second), grown back by one after a window's worth of successes (AIMD, as TCP
  does), so a provider that pushes back gets fewer parallel calls;
* **pauses** — every worker waits out a 429's ``retry-after`` and, when a
  response's ``x-ratelimit-remaining-*`` (or Anthropic's
  ``anthropic-ratelimit-*-remaining``) says the budget is spent, its reset time.

Times are seconds on a monotonic clock the caller passes in.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

__all__ = ["RateLimiter", "parse_reset"]

MAX_PAUSE = 60.0  # never trust a header to stop a batch for longer than this at once
DEFAULT_PAUSE = 1.0  # a 429 that gives no hint
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?"
                       r"(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")
# (remaining, reset) header pairs: OpenAI and most compatible servers, then Anthropic.
_PAIRS = (
    ("requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
    ("tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ("requests", "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset"),
    ("tokens", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset"),
    ("tokens", "anthropic-ratelimit-input-tokens-remaining",
     "anthropic-ratelimit-input-tokens-reset"),
    ("tokens", "anthropic-ratelimit-output-tokens-remaining",
     "anthropic-ratelimit-output-tokens-reset"),
    ("requests", "x-ratelimit-remaining", "x-ratelimit-reset"),
)


def parse_reset(value: str, wall_now: float | None = None) -> float | None:
    """Seconds until a rate-limit window resets, from a header value.

    Accepts durations (``"1s"``, ``"6m0s"``, ``"59.5ms"``, ``"1h2m"``), plain
    seconds (``"20"``), a Unix time in seconds, and RFC 3339 times
    (``"2025-01-01T00:00:30Z"``). ``None`` when unreadable.
    """
    text = value.strip()
    if not text:
        return None
    wall = time.time() if wall_now is None else wall_now
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number != number or number < 0:
            return None
        return max(0.0, number - wall) if number > 1e9 else number
    match = _DURATION.match(text)
    if match and any(match.groups()):
        h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000
    from datetime import datetime, timezone

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - wall)


class _Pace:
    """One GCRA: ``per_minute`` units, bursts of one second's worth (at least one unit).
    ``scale`` (0-1] slows the configured rate down."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, per_minute: float) -> None:
        self.interval = 60.0 / per_minute
        self.tolerance = max(self.interval, 1.0)
        self.tat = 0.0  # when the bucket would be empty again

    def wait(self, now: float) -> float:
        """Seconds before the next unit may go (0: now)."""
        return max(0.0, max(self.tat, now) - self.tolerance - now)

    def take(self, now: float, units: float, scale: float) -> None:
        self.tat = max(self.tat, now) + units * self.interval / scale

    def correct(self, now: float, units: float, scale: float) -> None:
        """Charge ``units`` more (or refund, when negative; never below empty)."""
        tat = self.tat + units * self.interval / scale
        self.tat = max(tat, now) if units < 0 else tat


class RateLimiter:
    """When may the next call start? Shared by every worker of one batch (one thread)."""

    def __init__(self, concurrency: int, rpm: float | None = None,
                 tpm: float | None = None) -> None:
        self.ceiling = concurrency
        self.window = concurrency
        self.in_flight = 0
        self.requests = _Pace(rpm) if rpm else None
        self.tokens = _Pace(tpm) if tpm else None
        self.scale = 1.0  # multiplies the configured rates; cut on 429, grown back on success
        self.pause_until = 0.0
        self.throttles = 0  # 429s seen (for the summary)
        self._last_cut = -1e9
        self._successes = 0
        self._typical_tokens = 0.0

    # -------------------------------------------------------------- admission

    def admit(self, now: float, tokens: int) -> float | None:
        """Start a call of about ``tokens`` now (returns 0.0, and counts it), or say how
        long to wait (seconds), or ``None``: wait until a call in flight ends."""
        if self.in_flight >= self.window:
            return None
        wait = self.pause_until - now
        if self.requests is not None:
            wait = max(wait, self.requests.wait(now))
        if self.tokens is not None and tokens:
            wait = max(wait, self.tokens.wait(now))
        if wait > 0:
            return wait
        if self.requests is not None:
            self.requests.take(now, 1, self.scale)
        if self.tokens is not None and tokens:
            self.tokens.take(now, tokens, self.scale)
        self.in_flight += 1
        self._typical_tokens += (tokens - self._typical_tokens) * 0.1
        return 0.0

    def release(self, now: float, reserved: int, used: int | None, ok: bool) -> None:
        """A call admitted with ``reserved`` tokens ended, having used ``used`` (if known)."""
        self.in_flight -= 1
        if self.tokens is not None and used is not None and used != reserved:
            self.tokens.correct(now, used - reserved, self.scale)
        if ok:
            self._successes += 1
            if self._successes >= self.window:  # additive increase, once per window
                self._successes = 0
                self.window = min(self.ceiling, self.window + 1)
                self.scale = min(1.0, self.scale * 1.1)

    # -------------------------------------------------------------- feedback

    def throttled(self, now: float, retry_after: float | None) -> None:
        """A 429: every worker waits; fewer calls in flight and slower pacing from now on."""
        self.throttles += 1
        self.pause(now, retry_after if retry_after is not None else DEFAULT_PAUSE)
        if now - self._last_cut >= 1.0:  # one cut for a burst of 429s
            self._last_cut = now
            self.window = max(1, self.window // 2)
            self.scale = max(1 / 64, self.scale * 0.5)
            self._successes = 0

    def pause(self, now: float, seconds: float) -> None:
        self.pause_until = max(self.pause_until, now + min(max(seconds, 0.0), MAX_PAUSE))

    def observe(self, now: float, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Read one HTTP answer's status and rate-limit headers."""
        if status == 429:
            from msgflux._transport.retry import retry_after_from_headers

            headers = list(headers)
            self.throttled(now, retry_after_from_headers(headers))
        found = {}
        for name, value in headers:
            if "ratelimit" in name:
                found[name.lower()] = value
        if not found:
            return
        for kind, remaining_name, reset_name in _PAIRS:
            remaining, reset = found.get(remaining_name), found.get(reset_name)
            if remaining is None or reset is None:
                continue
            try:
                left = float(remaining)
            except ValueError:
                continue
            need = 1.0 if kind == "requests" else max(1.0, self._typical_tokens)
            if left < need:
                seconds = parse_reset(reset)
                if seconds is not None:
                    self.pause(now, seconds)
