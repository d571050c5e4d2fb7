"""Every query of Herald's Grafana dashboards (helm/herald/dashboards), parsed by promtool.

Grafana's variables are replaced by values of their kind (a duration for ``$__rate_interval``, a label value
for ``$job``); each query becomes a recording rule of a temporary rules file, one group per dashboard, and
``promtool check rules`` parses them all. A query promtool cannot parse is named by its dashboard, panel and
query letter. Standard library only, so it runs without Herald's virtualenv:

    python3 infra/observability/check_dashboards.py [DASHBOARD.json ...]

promtool comes with Debian's ``prometheus`` package (``make check-alerts`` installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "helm" / "herald" / "dashboards"
# Grafana's global variables that stand for a duration or a number in a query, and a value of each kind.
GLOBAL_VALUES = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__range": "6h",
    "__rate_interval_ms": "60000",
    "__interval_ms": "30000",
    "__range_s": "21600",
    "__range_ms": "21600000",
}
# What a dashboard's own variables (data source, service, channel...) become: they stand for label values.
LABEL_VALUE = "herald"
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")
# The variable queries with a PromQL expression in them: label_values(EXPR, label) and query_result(EXPR).
_VARIABLE_EXPR = re.compile(r"^\s*(?:label_values\((.*),\s*\w+\s*\)|query_result\((.*)\))\s*$", re.DOTALL)


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard, as written (with Grafana's variables)."""

    dashboard: str
    where: str
    expr: str


def dashboard_files(folder: Path = DASHBOARD_DIR) -> list[Path]:
    """The dashboards of ``folder``, by name."""
    return sorted(folder.glob("*.json"))


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of a dashboard, those inside collapsed rows included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def variable_expr(variable: dict[str, Any]) -> str | None:
    """The PromQL expression of a query variable, or None (a data source, label_names(), a constant...)."""
    if variable.get("type") != "query":
        return None
    query = variable.get("query")
    text = query.get("query", "") if isinstance(query, dict) else str(query or "")
    match = _VARIABLE_EXPR.match(text)
    return next((group for group in match.groups() if group), None) if match else None


def queries(path: Path) -> list[Query]:
    """Every query of the dashboard at ``path``: its panels' targets, then its query variables."""
    dashboard = json.loads(path.read_text())
    found = [
        Query(path.stem, f'panel {panel["id"]} "{panel.get("title", "")}" query {target.get("refId", "?")}', expr)
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if (expr := target.get("expr"))
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if expr := variable_expr(variable):
            found.append(Query(path.stem, f"variable {variable['name']}", expr))
    return found


def promql(expr: str) -> str:
    """``expr`` with Grafana's variables replaced by values promtool can parse."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in GLOBAL_VALUES:
            return GLOBAL_VALUES[name]
        if name.startswith("__"):
            raise ValueError(f"no value for Grafana's ${name} in {expr!r}: add one to GLOBAL_VALUES")
        return LABEL_VALUE

    return _VARIABLE.sub(value, expr)


def rules_document(found: Sequence[Query]) -> dict[str, Any]:
    """A Prometheus rules document recording each query, one group per dashboard."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, query in enumerate(found):
        record = "dashboard_query:" + re.sub(r"\W", "_", query.dashboard) + f":{index}"
        rule = {"record": record, "expr": promql(query.expr), "labels": {"query": query.where}}
        groups.setdefault(query.dashboard, []).append(rule)
    return {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]}


def main(argv: Sequence[str]) -> int:
    """Check the dashboards named in ``argv`` (default: every one of DASHBOARD_DIR); promtool's exit status."""
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not found: apt-get install prometheus (Debian), or run make check-alerts", file=sys.stderr)
        return 2
    files = [Path(arg) for arg in argv] or dashboard_files()
    found = [query for path in files for query in queries(path)]
    with tempfile.TemporaryDirectory() as folder:
        # JSON is YAML: the rules file needs no YAML library.
        rules = Path(folder) / "dashboard-queries.yaml"
        rules.write_text(json.dumps(rules_document(found), indent=1))
        result = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    output = (result.stdout + result.stderr).replace(str(rules), "dashboard queries")
    print(output.rstrip())
    # promtool names a rule by its record name: say which panel's query that is.
    for index in sorted({int(n) for n in re.findall(r'"dashboard_query:\w+:(\d+)"', output)}):
        query = found[index]
        print(f"rule {index} is {query.dashboard}, {query.where}:\n{query.expr}")
    if result.returncode == 0:
        print(f"{len(found)} queries of {len(files)} dashboards parsed by promtool")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
