"""``bench.png``: each phase's throughput per second, and its p99 latency where it has one, one panel a phase.

Drawn from the results JSON (the per-second ``timeline`` each phase keeps), so a regression shows at a
glance and the picture always matches the figures printed beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

# No display here, ever: render straight to a file.
matplotlib.use("Agg")
from matplotlib import pyplot

# Results key -> panel title, in the order the phases run.
PANELS = {
    "broker_ceiling": "Broker ceiling",
    "smtp_ceiling": "SMTP client ceiling",
    "celery": "Celery + Redis baseline",
    "pipeline": "Herald pipeline",
    "priority": "Priority lanes",
    "gateway": "Gateway (POST, pipeline running)",
}


def _panels(results: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for key, title in PANELS.items():
        phase = results.get(key)
        if not isinstance(phase, dict):
            continue
        timeline = phase.get("timeline")
        if timeline and any(timeline["rates"].values()):
            found.append((title, phase, timeline))
    return found


def _subtitle(phase: dict[str, Any]) -> str:
    for key, unit in (
        ("per_s", "/s"),
        ("requests_per_s", " req/s"),
        ("low_per_s", " low/s"),
        ("combined_per_s", " msg/s in and out"),
    ):
        if phase.get(key) is not None:
            return f" - {phase[key]:,.0f}{unit}"
    return ""


def write_png(results: dict[str, Any], path: Path) -> Path:
    """Draw every phase that kept a timeline into ``path``; raises ValueError if none did."""
    panels = _panels(results)
    if not panels:
        raise ValueError("no phase kept per-second samples")
    figure, axes = pyplot.subplots(len(panels), 1, figsize=(11, 2.6 * len(panels)), squeeze=False)
    try:
        for row, (title, phase, timeline) in zip(axes, panels, strict=True):
            rates_axis = row[0]
            for name, counts in timeline["rates"].items():
                rates_axis.stairs(counts, range(len(counts) + 1), label=name, linewidth=1.5)
            rates_axis.set_ylabel("per second")
            rates_axis.set_ylim(bottom=0)
            rates_axis.grid(alpha=0.3)
            handles, labels = rates_axis.get_legend_handles_labels()
            latencies = {name: values for name, values in timeline["latency_p99_ms"].items() if any(values)}
            if latencies:
                latency_axis = rates_axis.twinx()
                # Colours after the rates' own, so a latency line never looks like a rate.
                for index, (name, values) in enumerate(latencies.items(), start=len(timeline["rates"])):
                    points = [(second + 0.5, value) for second, value in enumerate(values) if value is not None]
                    latency_axis.plot(
                        *zip(*points, strict=True), color=f"C{index}", linestyle="--", marker=".", label=f"{name} p99"
                    )
                latency_axis.set_ylabel(f"p99 ms ({timeline['latency_basis']})", fontsize=7)
                latency_axis.set_ylim(bottom=0)
                more_handles, more_labels = latency_axis.get_legend_handles_labels()
                handles, labels = handles + more_handles, labels + more_labels
            rates_axis.legend(handles, labels, loc="upper right", fontsize=7)
            rates_axis.set_title(title + _subtitle(phase), fontsize=10, loc="left")
        axes[-1][0].set_xlabel("seconds since the phase's clock started")
        figure.suptitle(f"Herald benchmark, {results['started_at']}, {results['machine']['cores']} cores")
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100)
    finally:
        pyplot.close(figure)
    return path
