"""docs/prometheus-alerts.yaml: a well-formed rule file whose goodwill_* series exist."""

from __future__ import annotations

import re
from pathlib import Path

from ruamel.yaml import YAML

from engine.metrics import Metrics

RULES = Path(__file__).resolve().parent.parent / "docs" / "prometheus-alerts.yaml"


def exported() -> set[str]:
    """Every series name the service's registry exposes (with _total, _bucket, ...)."""
    metrics = Metrics()
    # Labelled series appear once a label set is used; touch one of each.
    metrics.decisions.labels("authorized").inc()
    metrics.by_policy.labels("p").inc()
    metrics.deadlettered.labels("invalid_json").inc()
    metrics.lag.labels("t", "0").set(0)
    metrics.budget_remaining.labels("b", "o", "2026-11").set(0)
    metrics.retries.labels("connect").inc()
    metrics.policy_set.labels("h").set(1)
    metrics.policy_reloads.labels("refused").inc()
    metrics.offset_gaps.labels("t", "passed").inc()
    metrics.latency.observe(0.01)
    return {s.name for family in metrics.registry.collect() for s in family.samples}


def test_every_rule_is_complete_and_names_only_series_the_service_exports() -> None:
    doc = YAML(typ="safe").load(RULES.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert len(rules) >= 8
    names = exported()
    for rule in rules:
        assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        used = set(re.findall(r"\bgoodwill_[a-z_]+", rule["expr"]))
        assert used <= names, (rule["alert"], used - names)
    assert len({rule["alert"] for rule in rules}) == len(rules)
    # The alerts operators need most are there.
    alerts = {rule["alert"] for rule in rules}
    assert {"GoodwillFailedToDecide", "GoodwillBudgetsMayNotHold", "GoodwillLagGrowing"} <= alerts
