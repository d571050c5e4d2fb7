"""The metric names a PromQL expression reads, and the names Herald can be scraped for.

A dashboard panel or an alert that reads a metric no service exports shows nothing and never fires, without
an error anywhere: tests/unit/test_dashboards.py and tests/unit/test_alert_rules.py compare the names
their expressions read with :func:`known_names`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.registry import Collector

import shared.observability.metrics  # noqa: F401  (registers every Herald metric in REGISTRY)

# The sample names prometheus_client writes for each metric type. A labelled metric has no samples until a
# label set is used, so the names come from the type. `_created` samples are left out: nothing should read them.
SAMPLE_SUFFIXES: Mapping[str, tuple[str, ...]] = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}
# Series Prometheus makes itself: each target's scrape health, and the alerts its rules raise.
PROMETHEUS_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

# What is not a metric name: string literals, comments, label matchers, ranges and subqueries, and the label
# lists of grouping and vector matching. Removed in this order: a string can hold any of the others.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A name matched by `{__name__="..."}` instead of written out.
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([^"]*)"')
# An identifier that is not part of a number, a duration or a Grafana variable (`1e3`, `5m`, `$job`).
_IDENTIFIER = re.compile(r"(?<![\w.:$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {
        # Binary operators, modifiers and grouping.
        *("and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"),
        # Aggregation operators, which `by (...)` may separate from their parenthesis.
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk"),
        *("quantile", "limitk", "limit_ratio"),
        # Numbers.
        *("inf", "nan"),
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` reads (recording-rule names included), Grafana variables and all."""
    named = set(_NAME_MATCHER.findall(expr))
    text = _STRING.sub('""', expr)
    text = _COMMENT.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(r"\1", text)
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and word.lower() not in _KEYWORDS:
            named.add(word)
    return named


def exported_names(collectors: Iterable[Collector] = (REGISTRY,)) -> set[str]:
    """Every sample name Herald's services can be scraped for: Herald's metrics and the standard
    ``process_*`` and ``python_*`` collectors prometheus_client registers."""
    return {
        metric.name + suffix
        for collector in collectors
        for metric in collector.collect()
        for suffix in SAMPLE_SUFFIXES[metric.type]
    }


def recorded_names(rules: Mapping[str, Any]) -> set[str]:
    """The series a Prometheus rules document records."""
    return {rule["record"] for group in rules["groups"] for rule in group["rules"] if "record" in rule}


def known_names(rules: Mapping[str, Any]) -> set[str]:
    """What an expression may read where Herald is scraped and ``rules`` are loaded."""
    return exported_names() | recorded_names(rules) | PROMETHEUS_SERIES


def unknown_metrics(expr: str, known: Collection[str]) -> list[str]:
    """The names ``expr`` reads that are not in ``known``, sorted."""
    return sorted(metric_names(expr) - set(known))
