"""One rate limiter per API destination, shared by all its syncs, and the retry rules every client
calls through: Retry-After honoured, backoff on 5xx and dropped connections.

The limiter keeps a sliding window of the calls' ANSWER times, so no span of `per_seconds` ever
holds more than `requests` calls as the server counts them. A server stamps a call somewhere
between our send and its answer (after reading the body, checking the token, ...), and that
delay varies from call to call; counting each call from its answer puts every server stamp before
ours, so the next window's calls can never reach the server early, whatever the jitter. Counted
from the send with a 2% margin instead, 4 runs in 120 met a 429 with the limiter at exactly the
server's rate; counted from the answer, none in 120, at 99.8% of the rate instead of 98%
(bench/api_limiter.py). The price is one call's latency per window: a few milliseconds against
the local servers, more against a distant API with per-second windows, where a fixed margin is
no safer: it loses to any stamp later than itself.

A 429 means the server's window is full of calls, some maybe not ours (another client's, an
earlier process's); its Retry-After says when the oldest leaves. The limiter then counts its own
window full from that answer and waits Retry-After too, so the next calls find the server's
window turned over: a first 429 stays the only one (bench/api_destinations.py met a second one
before, when a sync started within HubSpot's ten seconds of the previous sync's last calls).
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

from activation.destinations.api.client import CallStats

T = TypeVar("T")
Log = Callable[[str], None]


class RateLimiter:
    """At most `requests` calls per `per_seconds`, and at most `max_concurrent` at once. A call
    holds its place in the window from its send until `per_seconds` after its answer."""

    def __init__(self, requests: int, per_seconds: float = 1.0, max_concurrent: int = 1):
        if requests < 1 or per_seconds <= 0 or max_concurrent < 1:
            raise ValueError("a rate limit needs requests >= 1, per_seconds > 0 and max_concurrent >= 1")
        self.requests, self.per_seconds = requests, per_seconds
        self._answered: deque[float] = deque()  # when each call of the last window was answered
        self._in_flight = 0
        self._changed = threading.Condition(threading.Lock())
        self._concurrent = threading.BoundedSemaphore(max_concurrent)
        self._paused_until = 0.0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one call's place: waits for a free connection and for room in the window; the
        place is stamped when the call ends (answered, failed or dropped)."""
        with self._concurrent:
            self._wait_for_window()
            try:
                yield
            finally:
                with self._changed:
                    self._in_flight -= 1
                    self._answered.append(time.monotonic())
                    self._changed.notify_all()

    def _wait_for_window(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                while self._answered and now - self._answered[0] >= self.per_seconds:
                    self._answered.popleft()
                wait = self._paused_until - now
                if wait <= 0 and len(self._answered) + self._in_flight < self.requests:
                    self._in_flight += 1
                    return
                if wait <= 0 and self._answered:
                    wait = self.per_seconds - (now - self._answered[0])
                # else every place is held by a call in flight: its end notifies
                self._changed.wait(max(wait, 0.001) if wait > 0 else None)

    def pause(self, seconds: float) -> None:
        """Every caller waits `seconds` (a 429's Retry-After applies to the whole destination)."""
        with self._changed:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def refused(self, retry_after: float | None) -> float:
        """The server answered 429: its window is full now, maybe with calls this limiter never saw
        (another client's, an earlier process's), and Retry-After tells only when the OLDEST of
        them leaves it. So the window counts as full from this answer, and Retry-After is waited
        out too: no call goes before the server's window has turned over once, and a first 429
        stays the only one. Returns the seconds until the next call may go."""
        with self._changed:
            now = time.monotonic()
            self._answered = deque([now] * self.requests)
            if retry_after is not None:
                self._paused_until = max(self._paused_until, now + retry_after)
            return max(self._paused_until, now + self.per_seconds) - now


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header: seconds, or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


class RetriesExhausted(RuntimeError):
    """The API kept answering 429 / 5xx (or dropping the connection); the last answer is named."""


class Transport:
    """Sends one request through the limiter, retrying what an API asks to retry.

    `request` makes the call and returns the response; `status` and `header` read it. Answers other
    than 429 and 5xx are returned to the caller, whose client knows the vendor's error shapes."""

    RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

    def __init__(
        self,
        limiter: RateLimiter,
        stats: CallStats,
        *,
        attempts: int = 6,
        first_pause: float = 0.5,
        max_pause: float = 30.0,
        transient: tuple[type[BaseException], ...] = (OSError,),
        log: Log = lambda _: None,
    ):
        self.limiter, self.stats, self.attempts = limiter, stats, attempts
        self.first_pause, self.max_pause, self.transient, self.log = first_pause, max_pause, transient, log

    def call(self, request: Callable[[], T], status: Callable[[T], int], header: Callable[[T, str], str | None]) -> T:
        last = ""
        for attempt in range(1, self.attempts + 1):
            with self.limiter.slot():
                self.stats.calls += 1
                try:
                    response = request()
                except self.transient as exc:
                    self.stats.server_errors += 1
                    last = f"connection failed: {exc!r}"
                    response = None
            if response is not None:
                code = status(response)
                if code not in self.RETRY_STATUSES:
                    return response
                last = f"HTTP {code}"
                if code == 429:
                    self.stats.rate_limited += 1
                    wait = retry_after_seconds(header(response, "Retry-After"))
                    waiting = self.limiter.refused(None if wait is None else min(wait, self.max_pause))
                    if wait is not None:
                        if attempt < self.attempts:
                            self.stats.retries += 1
                            self.log(
                                f"rate limited; waiting {waiting:.1f}s: Retry-After {wait:g}s, and the API's "
                                "window turning over once"
                            )
                        continue
                else:
                    self.stats.server_errors += 1
            if attempt == self.attempts:
                break
            pause = min(self.first_pause * 2 ** (attempt - 1), self.max_pause) * (0.5 + random.random() / 2)
            self.stats.retries += 1
            self.log(f"{last}; retrying in {pause:.1f}s ({attempt}/{self.attempts - 1})")
            time.sleep(pause)
        raise RetriesExhausted(f"gave up after {self.attempts} attempts: {last}")
