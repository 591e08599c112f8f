"""The retry driver: delays, Retry-After parsing, attempt counting."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import msgspec
import pytest

from msgflux._transport.retry import (
    RETRYABLE_STATUS,
    CallBudget,
    RetryPolicy,
    RetryState,
    acall_with_retries,
    call_with_retries,
    retry_after_from_headers,
)
from msgflux._transport.types import Timeouts
from msgflux.exceptions import (
    APIConnectionError,
    AuthenticationError,
    BadRequestError,
    IdleTimeoutError,
    RateLimitError,
    ServerError,
)

# ---------------------------------------------------------------- delays


def test_policy_defaults_and_frozen() -> None:
    p = RetryPolicy()
    assert (p.max_retries, p.backoff_base, p.backoff_max, p.retry_after_max) == (2, 0.5, 8.0, 60.0)
    with pytest.raises(AttributeError):
        p.max_retries = 5  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(p), type=RetryPolicy) == p


def test_full_jitter_bounds() -> None:
    p = RetryPolicy(backoff_base=0.5, backoff_max=8.0)
    random.seed(1234)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        samples = [p.delay(attempt) for _ in range(2000)]
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(samples) < 0.1 * ceiling and max(samples) > 0.9 * ceiling
    assert 0 <= p.delay(10_000) <= 8.0  # no overflow on silly attempt numbers


def test_retry_after_wins_and_is_capped() -> None:
    p = RetryPolicy(retry_after_max=30.0)
    assert p.delay(0, 2.5) == 2.5
    assert p.delay(5, 120.0) == 30.0
    assert p.delay(0, -3.0) == 0.0
    assert p.delay(0, 0.0) == 0.0


# ---------------------------------------------------------------- Retry-After headers


def test_retry_after_seconds_ms_and_precedence() -> None:
    assert retry_after_from_headers([("retry-after", "7")]) == 7.0
    assert retry_after_from_headers([("retry-after", " 1.5 ")]) == 1.5
    assert retry_after_from_headers([("retry-after-ms", "250")]) == 0.25
    assert retry_after_from_headers([("retry-after", "9"), ("retry-after-ms", "100")]) == 0.1
    assert retry_after_from_headers({"Retry-After": "3"}) == 3.0  # mapping, any case
    assert retry_after_from_headers([("Retry-After-Ms", "bad"), ("retry-after", "2")]) == 2.0
    # Zero means "now", not "no hint" (which would fall back to backoff).
    assert retry_after_from_headers([("retry-after", "0")]) == 0.0
    assert retry_after_from_headers([("retry-after-ms", "0"), ("retry-after", "9")]) == 0.0


def test_retry_after_http_date() -> None:
    future = datetime.now(timezone.utc) + timedelta(seconds=30)
    got = retry_after_from_headers([("retry-after", format_datetime(future, usegmt=True))])
    assert got is not None and 20 <= got <= 30
    past = datetime.now(timezone.utc) - timedelta(seconds=30)
    assert retry_after_from_headers([("retry-after", format_datetime(past, usegmt=True))]) == 0.0


def test_retry_after_http_date_in_minus_0000_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    # A "-0000" date parses to a naive datetime: read as local time, it would be off by
    # the machine's offset from UTC (here 9 hours), not ~30 s away.
    monkeypatch.setenv("TZ", "XST-9")  # POSIX form: UTC+9, no tz database needed
    time.tzset()
    try:
        future = datetime.now(timezone.utc) + timedelta(seconds=30)
        text = future.strftime("%a, %d %b %Y %H:%M:%S -0000")
        got = retry_after_from_headers([("retry-after", text)])
        assert got is not None and 20 <= got <= 30
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("x", "1")],
        [("retry-after", "soon")],
        [("retry-after", "-5")],
        [("retry-after", "nan")],
        [("retry-after", "inf")],
        [("retry-after-ms", "-1")],
    ],
)
def test_retry_after_absent_or_invalid(headers) -> None:
    assert retry_after_from_headers(headers) is None


def test_retryable_statuses() -> None:
    assert {408, 409, 429, 500, 502, 503, 504, 529} == RETRYABLE_STATUS
    assert 400 not in RETRYABLE_STATUS and 401 not in RETRYABLE_STATUS


# ---------------------------------------------------------------- the driver


class Script:
    """An attempt function failing with the given errors, then returning "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retries_retryable_errors_then_succeeds() -> None:
    slept: list[float] = []
    fn = Script(APIConnectionError("reset"), IdleTimeoutError("idle"))
    assert call_with_retries(fn, RetryPolicy(max_retries=2), sleep=slept.append) == "ok"
    assert fn.calls == 3 and len(slept) == 2
    assert 0 <= slept[0] <= 0.5 and 0 <= slept[1] <= 1.0


def test_gives_up_after_max_retries_with_the_last_error() -> None:
    slept: list[float] = []
    errors = [ServerError("boom", status=500) for _ in range(4)]
    fn = Script(*errors)
    with pytest.raises(ServerError) as info:
        call_with_retries(fn, RetryPolicy(max_retries=2), sleep=slept.append)
    assert info.value is errors[2]
    assert fn.calls == 3 and len(slept) == 2


def test_honours_retry_after_capped() -> None:
    slept: list[float] = []
    fn = Script(
        RateLimitError("slow", status=429, retry_after=3.0),
        RateLimitError("slower", status=429, retry_after=500.0),
    )
    policy = RetryPolicy(max_retries=3, retry_after_max=10.0)
    assert call_with_retries(fn, policy, sleep=slept.append) == "ok"
    assert slept == [3.0, 10.0]


@pytest.mark.parametrize(
    "error",
    [BadRequestError("bad", status=400), AuthenticationError("key", status=401), KeyError("x")],
)
def test_non_retryable_errors_propagate_at_once(error: BaseException) -> None:
    slept: list[float] = []
    fn = Script(error)
    with pytest.raises(type(error)):
        call_with_retries(fn, RetryPolicy(max_retries=5), sleep=slept.append)
    assert fn.calls == 1 and slept == []


def test_instance_level_retryable_flag_is_respected() -> None:
    err = APIConnectionError("certificate verification failed")
    err.retryable = False
    fn = Script(err)
    with pytest.raises(APIConnectionError):
        call_with_retries(fn, RetryPolicy(), sleep=lambda s: None)
    assert fn.calls == 1


def test_zero_retries_and_on_retry_hook() -> None:
    fn = Script(APIConnectionError("x"))
    with pytest.raises(APIConnectionError):
        call_with_retries(fn, RetryPolicy(max_retries=0), sleep=lambda s: None)
    assert fn.calls == 1
    seen: list[tuple[int, str, float]] = []
    fn = Script(APIConnectionError("a"), APIConnectionError("b"))
    call_with_retries(
        fn,
        RetryPolicy(max_retries=2, backoff_base=0.0),
        sleep=lambda s: None,
        on_retry=lambda n, e, d: seen.append((n, str(e), d)),
    )
    assert seen == [(1, "a", 0.0), (2, "b", 0.0)]


@pytest.mark.asyncio
async def test_async_driver() -> None:
    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    calls = 0

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RateLimitError("slow", status=429, retry_after=0.01)
        return "ok"

    assert await acall_with_retries(attempt, RetryPolicy(), sleep=fake_sleep) == "ok"
    assert calls == 3 and slept == [0.01, 0.01]

    async def bad() -> str:
        raise BadRequestError("no", status=400)

    with pytest.raises(BadRequestError):
        await acall_with_retries(bad, RetryPolicy(), sleep=fake_sleep)


@pytest.mark.asyncio
async def test_async_driver_really_sleeps_by_default() -> None:
    fn = Script(RateLimitError("slow", status=429, retry_after=0.05))

    async def attempt() -> str:
        return fn()

    t0 = asyncio.get_running_loop().time()
    assert await acall_with_retries(attempt, RetryPolicy()) == "ok"
    assert asyncio.get_running_loop().time() - t0 >= 0.04


def test_a_first_attempt_made_by_the_caller_counts_as_one() -> None:
    """failed=: the caller ran the first attempt itself; the driver decides on its error
    first, and the retries it then makes are the ones the policy leaves."""
    slept: list[float] = []
    state = RetryState(RetryPolicy(max_retries=2))
    first = RateLimitError("slow", status=429, retry_after=1.5)
    fn = Script(APIConnectionError("reset"))
    assert call_with_retries(fn, state, sleep=slept.append, failed=first) == "ok"
    assert fn.calls == 2 and state.retries == 2 and slept[0] == 1.5

    boom = ServerError("boom", status=500)
    fn = Script(boom)
    ended = ServerError("first", status=500)
    with pytest.raises(ServerError) as info:  # one retry left after the caller's attempt
        call_with_retries(fn, RetryPolicy(max_retries=1), sleep=slept.append, failed=ended)
    assert fn.calls == 1 and info.value is boom  # the last error propagates

    fn = Script()
    refused = BadRequestError("no", status=400)
    with pytest.raises(BadRequestError) as info:  # not retryable: raised, nothing called
        call_with_retries(fn, RetryPolicy(max_retries=2), sleep=slept.append, failed=refused)
    assert info.value is refused and fn.calls == 0

    async def attempt() -> str:
        return "ok"

    slept.clear()

    async def asleep(wait: float) -> None:
        slept.append(wait)

    state = RetryState(RetryPolicy(max_retries=2))
    assert asyncio.run(acall_with_retries(attempt, state, sleep=asleep, failed=first)) == "ok"
    assert state.retries == 1 and slept == [1.5]
    with pytest.raises(BadRequestError):
        asyncio.run(acall_with_retries(attempt, RetryPolicy(), sleep=asleep, failed=refused))


def test_a_budget_begun_earlier_counts_from_its_start() -> None:
    """CallBudget(started=...): made after a first attempt, it gives a retry what is left
    of the call's time since that start, never the call's whole limits again."""
    limits = Timeouts(total=10.0)
    began = time.monotonic() - 4.0  # the first attempt took 4 s
    budget = CallBudget(limits, False, began)
    assert budget.deadline == pytest.approx(began + 10.0)
    left = budget.timeouts().total
    assert left is not None and 5.0 < left <= 6.0
    fresh = CallBudget(limits, False)
    assert fresh.timeouts() is limits  # without a start: the first attempt's own limits
