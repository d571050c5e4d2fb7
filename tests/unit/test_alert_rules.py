"""The alert rules use only metrics Herald declares, and each alert has its runbook and promtool test."""

from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.observability.metric_names import known_names, unknown_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "infra" / "alerts" / "herald-rules.yaml"
RULE_TESTS_FILE = ROOT / "infra" / "alerts" / "tests.yaml"
pytestmark = pytest.mark.unit


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def test_rules_use_only_declared_metrics() -> None:
    # The checker the dashboards' test uses (tests/unit/test_dashboards.py tries it on made-up names).
    document = yaml.safe_load(RULES_FILE.read_text())
    known = known_names(document)
    unknown = {
        rule.get("alert") or rule["record"]: unknown
        for group in document["groups"]
        for rule in group["rules"]
        if (unknown := unknown_metrics(rule["expr"], known))
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
        assert rule["annotations"]["runbook_url"] == f"https://herald.example.com/runbooks/{name}/", name
        assert (ROOT / "docs" / "runbooks" / f"{name}.md").is_file(), name
        assert name in tested, name
