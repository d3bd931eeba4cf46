"""The crash hook: test-only fault injection at the steps of the Kafka service's delivery.

`GOODWILL_CRASH_AT=point:n` (tests only) kills the process with `os._exit(137)` the n-th
time it reaches `point`: `after_poll`, `after_commit` (state stored, nothing published),
`after_publish` (outputs acknowledged, not marked sent) or `after_relay` (marked sent,
offsets not committed to Kafka).

Its own module because the points are named by the tests that kill the service at each
step, and are reached from both the loop (`engine.kafka_service`) and the publishing of
its outputs (`engine.delivery`).
"""

from __future__ import annotations

import logging
import os
from typing import Final

log = logging.getLogger("goodwill.kafka")

CRASH_ENV: Final = "GOODWILL_CRASH_AT"
CRASH_POINTS: Final = ("after_poll", "after_commit", "after_publish", "after_relay")


class CrashHook:
    """Test-only fault injection; inert unless GOODWILL_CRASH_AT is set."""

    def __init__(self, spec: str | None) -> None:
        self.point, self.at = "", 0
        self.counts: dict[str, int] = {}
        if spec:
            point, _, count = spec.partition(":")
            if point not in CRASH_POINTS or not count.isdigit():
                raise ValueError(
                    f"{CRASH_ENV}={spec!r}: expected POINT:N with POINT one of "
                    f"{', '.join(CRASH_POINTS)}"
                )
            self.point, self.at = point, int(count)

    def __call__(self, point: str) -> None:
        if point != self.point:
            return
        self.counts[point] = self.counts.get(point, 0) + 1
        if self.counts[point] == self.at:
            log.warning("crash hook: exiting at %s #%d", point, self.at)
            logging.shutdown()
            os._exit(137)
