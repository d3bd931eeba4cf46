"""Bounded exponential backoff, for the Kafka service's retries.

Each wait doubles from `backoff_first_s` up to `backoff_cap_s` (`ServiceOptions`), a
success starts again from the first, and a stopping service ends the wait at once. Its own
module because how long to wait changes apart from what is retried and when
(`engine.kafka_service`, `engine.delivery`).
"""

from __future__ import annotations

import threading


class Backoff:
    """Bounded exponential backoff whose waits end early when the service is stopping."""

    def __init__(self, stop: threading.Event, first_s: float, cap_s: float) -> None:
        self.stop, self.first_s, self.cap_s = stop, first_s, cap_s
        self.failures = 0

    def wait(self) -> float:
        delay = self.next_s
        self.failures += 1
        self.stop.wait(delay)
        return delay

    @property
    def next_s(self) -> float:
        return min(self.cap_s, self.first_s * 2.0 ** min(self.failures, 32))

    def reset(self) -> None:
        self.failures = 0
