"""When to retry, and how long to wait: small pure functions, plus the tenacity wiring.

The decision (:func:`should_retry`) and the wait (:func:`backoff_delay`, :func:`parse_retry_after`)
are pure and tested on their own. :func:`retrying` builds a fresh ``AsyncRetrying`` for every call,
because one instance keeps per-run state and is not safe to share between tasks.
"""

from __future__ import annotations

import contextvars
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

import anyio
from attrs import evolve, field, frozen
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ._exceptions import APIConnectionError, APIStatusError, AudianError, IncompleteDownloadError, RateLimitError
from ._telemetry import NO_CALL, Call

__all__ = [
    "RETRYABLE_STATUS",
    "RetryPolicy",
    "backoff_delay",
    "call_with_retries",
    "current_attempt",
    "log_failure",
    "parse_retry_after",
    "retry_after_from",
    "retry_after_of",
    "retry_listener",
    "retrying",
    "should_retry",
]

logger = logging.getLogger("audian_fax_async")
#: Told of every retry of the calls made in this context that have no ``on_retry`` of their own (a
#: bulk run counts the retries of its listing and markings with it).
retry_listener: contextvars.ContextVar[Callable[[BaseException], None] | None] = contextvars.ContextVar(
    "audian_retry_listener", default=None
)
#: The attempt number of the call running in this context (1 for the first), for its log lines.
current_attempt: contextvars.ContextVar[int] = contextvars.ContextVar("audian_attempt", default=1)
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@frozen
class RetryPolicy:
    """How the client retries.

    ``max_retries`` retries follow the first attempt. Waits grow exponentially from
    ``initial_delay`` to ``max_delay`` with jitter; a ``Retry-After`` from the API is honoured
    when it is longer, unless it exceeds ``max_retry_after``: then the error is raised instead of
    sleeping for hours. ``sleep`` and ``random`` are injectable so tests never wait.
    """

    max_retries: int = field(default=3)
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: float = 0.25
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    @max_retries.validator
    def _check_max_retries(self, _: object, value: int) -> None:
        if value < 0:
            raise ValueError("max_retries must be >= 0")

    def with_max_retries(self, max_retries: int | None) -> RetryPolicy:
        return self if max_retries is None else evolve(self, max_retries=max_retries)


def should_retry(exc: BaseException, *, idempotent: bool, policy: RetryPolicy) -> bool:
    """True when ``exc`` is worth another attempt.

    A non-idempotent request (one that creates something) is retried only when it surely never
    reached the server: a retry after it was sent could create the thing twice.
    """
    if isinstance(exc, APIConnectionError):
        return idempotent or not exc.request_sent
    if isinstance(exc, IncompleteDownloadError):
        return idempotent
    if isinstance(exc, APIStatusError):
        if not idempotent or exc.status_code not in RETRYABLE_STATUS:
            return False
        retry_after = retry_after_of(exc)
        return not (retry_after is not None and retry_after > policy.max_retry_after)
    return False


def retry_after_of(exc: BaseException | None) -> float | None:
    """The wait the API asked for: a 429's ``retry_after``, or a ``Retry-After`` on another status (503)."""
    if isinstance(exc, RateLimitError):
        return exc.retry_after
    if isinstance(exc, APIStatusError) and exc.response is not None:
        return retry_after_from(exc.response.headers)
    return None


def retry_after_from(headers: Mapping[str, str]) -> float | None:
    """The wait an answer asks for: ``retry-after-ms`` (milliseconds) if it has one, else ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value / 1000
    return parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, policy: RetryPolicy, *, retry_after: float | None = None) -> float:
    """The wait before retry number ``attempt`` (1-based)."""
    base: float = min(policy.max_delay, policy.initial_delay * (2 ** (attempt - 1)))
    delay: float = base * (1 - policy.jitter * float(policy.random()))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_delay(state.attempt_number, policy, retry_after=retry_after_of(exc))

    return wait


def _log_retry(operation: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info(
            "retrying %s in %.2fs (attempt %d failed: %s: %s)",
            operation,
            wait,
            state.attempt_number,
            type(exc).__name__,
            exc,
        )

    return before_sleep


def retrying(
    policy: RetryPolicy,
    *,
    idempotent: bool,
    operation: str,
    on_retry: Callable[[BaseException], None] | None = None,
    resumable: Callable[[], bool] | None = None,
    call: Call = NO_CALL,
) -> AsyncRetrying:
    """A fresh ``AsyncRetrying`` for one call (never share one between tasks).

    Retries are logged at INFO and told to ``call`` (the call's span: an event each). ``resumable``,
    when given, must also say yes before a retry (a stream that cannot continue where it broke is
    not retried).
    """
    logger_hook = _log_retry(operation)

    def retry(exc: BaseException) -> bool:
        if resumable is not None and not resumable():
            return False
        return should_retry(exc, idempotent=idempotent, policy=policy)

    def before_sleep(state: RetryCallState) -> None:
        logger_hook(state)
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            if on_retry is not None:
                on_retry(exc)
            call.retried(exc, state.attempt_number, state.next_action.sleep if state.next_action else 0.0)

    return AsyncRetrying(
        stop=stop_after_attempt(policy.max_retries + 1),
        retry=retry_if_exception(retry),
        wait=_wait(policy),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def log_failure(
    operation: str, attempts: int, exc: BaseException, policy: RetryPolicy | None = None, started: float | None = None
) -> None:
    """The final failure of a call: logged at WARNING when it was retried, and its message told how
    many attempts it took, or why it was not retried (a ``Retry-After`` beyond the policy's cap)."""
    note = ""
    retry_after = retry_after_of(exc)
    if policy is not None and retry_after is not None and retry_after > policy.max_retry_after:
        note = (
            f"not retried: the API asked to wait {retry_after:.0f} s, more than "
            f"RetryPolicy.max_retry_after={policy.max_retry_after:g} s"
        )
    elif attempts > 1:
        spent = f" over {anyio.current_time() - started:.1f} s" if started is not None else ""
        note = f"gave up after {attempts} attempts{spent}"
    if note and isinstance(exc, AudianError) and exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} ({note})", *exc.args[1:])
    if attempts > 1:
        logger.warning("%s failed after %d attempts: %s: %s", operation, attempts, type(exc).__name__, exc)


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    operation: str,
    on_retry: Callable[[BaseException], None] | None = None,
    span: Call = NO_CALL,
) -> T:
    """``await call()``, retried as :func:`retrying` decides (each retry told to ``span``); the last
    error is raised as itself."""
    attempts, started = 0, anyio.current_time()
    on_retry = on_retry or retry_listener.get()
    try:
        async for attempt in retrying(policy, idempotent=idempotent, operation=operation, on_retry=on_retry, call=span):
            with attempt:
                attempts += 1
                current_attempt.set(attempts)
                return await call()
    except Exception as exc:
        log_failure(operation, attempts, exc, policy, started)
        raise
    raise AssertionError("unreachable: tenacity stops only by raising once an attempt failed")  # pragma: no cover
