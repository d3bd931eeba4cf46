"""The service's HTTP endpoints without a broker: /metrics, /healthz, /readyz."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from engine.metrics import Metrics


@pytest.fixture
def served() -> Iterator[tuple[Metrics, str]]:
    metrics = Metrics()
    server = metrics.serve(0)  # any free port on 127.0.0.1
    try:
        yield metrics, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as page:
            return page.status, page.headers["Content-Type"], page.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_ready_only_once_the_service_says_so_and_alive_while_the_loop_moves(
    served: tuple[Metrics, str],
) -> None:
    metrics, base = served
    assert get(f"{base}/healthz")[::2] == (200, "ok\n")
    assert get(f"{base}/readyz")[::2] == (503, "starting\n")

    metrics.health.ready(None)
    assert get(f"{base}/readyz")[::2] == (200, "ok\n")
    metrics.health.ready("Kafka unavailable: connection refused")
    assert get(f"{base}/readyz")[::2] == (503, "Kafka unavailable: connection refused\n")

    metrics.health.ready(None)
    metrics.health.stall_s = 0.0  # the loop has not moved for longer than allowed
    status, _, body = get(f"{base}/healthz")
    assert status == 503 and body.startswith("the processing loop has not moved for")
    assert get(f"{base}/readyz")[0] == 503  # not alive, so not ready either

    metrics.health.rebuilding(True)  # a rebuild takes as long as it takes: alive, not ready
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/readyz")[::2] == (503, "rebuilding the state from the topics\n")


def test_metrics_in_prometheus_text_format_and_unknown_paths_404(
    served: tuple[Metrics, str],
) -> None:
    metrics, base = served
    metrics.consumed.inc(3)
    status, content_type, body = get(f"{base}/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "goodwill_events_consumed_total 3.0" in body
    asks = urllib.request.Request(
        f"{base}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(asks, timeout=5) as page:  # what the scraper asks for
        assert page.headers["Content-Type"].startswith("application/openmetrics-text")
        assert page.read().decode().rstrip().endswith("# EOF")
    status, _, body = get(f"{base}/nope")
    assert status == 404 and "/healthz" in body
