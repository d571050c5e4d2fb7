"""The metrics reference: every Prometheus metric Herald declares (``shared.observability.metrics``)."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from infra.docs.markdown import code, table
from shared.observability import metrics

# prometheus_client adds these to a counter's exported name.
COUNTER_SUFFIX = "_total"


def declared() -> list[MetricWrapperBase]:
    """Every metric object of the module, in declaration order."""
    return [value for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)]


def render() -> str:
    """The metrics page's table."""
    rows: list[list[str]] = []
    for metric in declared():
        name = metric._name + (COUNTER_SUFFIX if metric._type == "counter" else "")
        labels = ", ".join(code(label) for label in metric._labelnames)
        rows.append([code(name), metric._type or "", labels, metric._documentation or ""])
    return table(["metric", "type", "labels", "what"], rows)
