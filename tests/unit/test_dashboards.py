"""The Grafana dashboards: well-formed, every panel queried, every metric one Herald exports; and the compose
observability profile scrapes every service and provisions every dashboard."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.docs.metrics import declared
from infra.observability import check_dashboards
from infra.observability.metric_names import known_names, metric_names, unknown_metrics

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "infra" / "alerts" / "herald-rules.yaml"
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_COMPOSE = ROOT / "infra" / "observability" / "prometheus-compose.yml"
GRAFANA_PROVISIONING = ROOT / "infra" / "observability" / "grafana" / "provisioning"
DASHBOARDS = check_dashboards.dashboard_files()
EXPECTED = {"herald-overview", "herald-pipeline", "herald-providers", "herald-retries-dead-letters"}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def unknown_in(path: Path) -> dict[str, list[str]]:
    """The queries of the dashboard at ``path`` that read a metric Herald does not export, with those names."""
    known = known_names(yaml.safe_load(RULES_FILE.read_text()))
    return {
        query.where: unknown
        for query in check_dashboards.queries(path)
        if (unknown := unknown_metrics(query.expr, known))
    }


def test_the_four_dashboards_have_unique_uids_and_titles() -> None:
    boards = [load(path) for path in DASHBOARDS]
    assert {path.stem for path in DASHBOARDS} == EXPECTED
    assert sorted(board["uid"] for board in boards) == sorted(EXPECTED)
    assert len({board["title"] for board in boards}) == len(boards)
    for board in boards:
        assert board["schemaVersion"] >= 39, board["uid"]
        assert board.get("id") is None, board["uid"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_every_panel_queries_the_chosen_prometheus(path: Path) -> None:
    board = load(path)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = [panel for panel in check_dashboards.panels(board) if panel["type"] != "row"]
    assert panels
    ids = [panel["id"] for panel in check_dashboards.panels(board)]
    assert len(set(ids)) == len(ids)
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["expr"].strip(), title
            assert target["datasource"] == panel["datasource"], title
    for name, variable in variables.items():
        if variable["type"] == "query":
            assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda path: path.stem)
def test_dashboards_read_only_metrics_herald_exports(path: Path) -> None:
    assert unknown_in(path) == {}


def test_a_dashboard_reading_a_made_up_metric_fails(tmp_path: Path) -> None:
    board = load(ROOT / "helm" / "herald" / "dashboards" / "herald-providers.json")
    panel = next(panel for panel in check_dashboards.panels(board) if panel["type"] == "timeseries")
    panel["targets"][0]["expr"] = 'sum(rate(herald_made_up_total{job=~"$job"}[$__rate_interval]))'
    path = tmp_path / "made-up.json"
    path.write_text(json.dumps(board))

    assert unknown_in(path) == {f'panel {panel["id"]} "{panel["title"]}" query A': ["herald_made_up_total"]}


def test_every_metric_herald_declares_is_on_a_dashboard() -> None:
    read = {
        name for path in DASHBOARDS for query in check_dashboards.queries(path) for name in metric_names(query.expr)
    }
    # A histogram is read by its _bucket or _count series, a counter by its _total.
    assert [metric._name for metric in declared() if not any(name.startswith(metric._name) for name in read)] == []


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (job) (rate(herald_messages_consumed_total{job=~"$job"}[$__rate_interval]))',
            {"herald_messages_consumed_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (channel, le) (rate(herald_x_seconds_bucket[5m])))",
            {"herald_x_seconds_bucket"},
        ),
        ("a / on (job, instance) group_left (version) b offset 5m > bool 1e3", {"a", "b"}),
        ("count(up == 0) or vector(0)", {"up"}),
        ('2 * max without (state) (herald:recorded:rate5m{state="open"}) + Inf', {"herald:recorded:rate5m"}),
        ('c{reason="herald_in_a_string_total", topic=~".+[.]delay[.]v[0-9]+"}  # herald_in_a_comment', {"c"}),
        ('{__name__="herald_by_name_matcher"}', {"herald_by_name_matcher"}),
        ("rate(d[1h:5m] @ start())", {"d"}),
    ],
)
def test_metric_names_finds_what_an_expression_reads(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_unknown_metrics_names_what_is_not_exported() -> None:
    known = known_names({"groups": [{"name": "g", "rules": [{"record": "herald:recorded", "expr": "up"}]}]})
    assert {
        "herald_send_attempts_total",
        "herald_accepted_to_sent_seconds_bucket",
        "process_cpu_seconds_total",
    } <= known
    expr = "herald_send_attempts_total / herald_notifications_sent_total + herald:recorded + herald:not_recorded + up"
    assert unknown_metrics(expr, known) == ["herald:not_recorded", "herald_notifications_sent_total"]


def test_grafana_variables_become_values_promtool_parses() -> None:
    expr = 'sum(rate(x{job=~"$job", channel=~"${channel:regex}"}[$__rate_interval])) * $__range_s'
    assert check_dashboards.promql(expr) == 'sum(rate(x{job=~"herald", channel=~"herald"}[1m])) * 21600'
    with pytest.raises(ValueError, match="__unheard_of"):
        check_dashboards.promql("rate(x[$__unheard_of])")


def test_the_promtool_rules_file_records_every_panel_and_variable_query() -> None:
    found = [query for path in DASHBOARDS for query in check_dashboards.queries(path)]
    document = check_dashboards.rules_document(found)
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert {group["name"] for group in document["groups"]} == EXPECTED
    assert len(rules) == len(found)
    assert not any("$" in rule["expr"] for rule in rules)
    assert "variable job" in {rule["labels"]["query"] for rule in rules}


def test_compose_prometheus_scrapes_every_herald_service_with_the_rules_loaded() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = {name: service for name, service in compose["services"].items() if "build" in service}
    # Every long-running service, not the one-shot jobs (migrate, create-topics).
    running = {name for name, service in services.items() if service["restart"] != "no"}
    metrics_port = {
        name: int(services[name]["environment"]["HERALD_GATEWAY_PORT" if name == "gateway" else "HERALD_OPS_PORT"])
        for name in running
    }
    config = yaml.safe_load(PROMETHEUS_COMPOSE.read_text())
    scraped = {
        job["job_name"]: [(name, sd["port"]) for sd in job["dns_sd_configs"] for name in sd["names"]]
        for job in config["scrape_configs"]
    }
    assert scraped == {f"herald-{name}": [(name, metrics_port[name])] for name in running}

    prometheus = compose["services"]["prometheus"]
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in prometheus["volumes"] if volume.startswith("./"))
    config_path = Path(mounts["./infra/observability/prometheus-compose.yml"])
    (rules,) = config["rule_files"]
    assert f"--config.file={config_path}" in prometheus["command"]
    assert os.path.normpath(config_path.parent / rules) == mounts["./infra/alerts/herald-rules.yaml"]
    assert (PROMETHEUS_COMPOSE.parent / rules).resolve() == RULES_FILE.resolve()


def test_compose_grafana_provisions_the_dashboards_and_prometheus() -> None:
    grafana = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]
    mounts = dict(volume.removesuffix(":ro").split(":") for volume in grafana["volumes"])
    provider = yaml.safe_load((GRAFANA_PROVISIONING / "dashboards" / "herald.yaml").read_text())["providers"][0]
    assert mounts["./helm/herald/dashboards"] == provider["options"]["path"]
    assert mounts["./infra/observability/grafana/provisioning"] == "/etc/grafana/provisioning"
    provisioned = yaml.safe_load((GRAFANA_PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (datasource,) = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
