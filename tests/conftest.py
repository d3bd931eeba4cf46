"""Shared fixtures. The Kafka broker fixture lives in tests/kafka_broker.py.

Hypothesis runs without its time limits (the per-example deadline and the too-slow
health check): tests here never depend on how fast the machine is. Everything else is
as Hypothesis chose it (under CI=true, its CI profile: derandomized, no database).
"""

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.kafka_broker"]

settings.register_profile(
    "goodwill", parent=settings.default, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("goodwill")
