"""The alert rules use only metrics Herald declares, and each alert has its runbook and promtool test."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import shared.observability.metrics  # noqa: F401  (registers every Herald metric)

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "infra" / "alerts" / "herald-rules.yaml"
RULE_TESTS_FILE = ROOT / "infra" / "alerts" / "tests.yaml"
pytestmark = pytest.mark.unit

METRIC_NAME = re.compile(r"\bherald_[a-z_]+")


# The sample names prometheus_client exposes per metric type (a labelled metric has no samples until used).
SAMPLE_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def declared_sample_names() -> set[str]:
    """Every sample name Herald's metrics can expose."""
    return {
        metric.name + suffix
        for metric in REGISTRY.collect()
        if metric.name.startswith("herald_")
        for suffix in SAMPLE_SUFFIXES[metric.type]
    }


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_rules_use_only_declared_metrics() -> None:
    declared = declared_sample_names()
    unknown = {
        rule["alert"]: sorted(set(METRIC_NAME.findall(rule["expr"])) - declared)
        for rule in alert_rules()
        if set(METRIC_NAME.findall(rule["expr"])) - declared
    }
    assert unknown == {}


def test_every_alert_has_severity_runbook_and_promtool_test() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS_FILE.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    for rule in alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks/{name}.md", name
        assert (ROOT / "docs" / "runbooks" / f"{name}.md").is_file(), name
        assert name in tested, name
