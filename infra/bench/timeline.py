"""Per-second samples of a phase, kept in the results JSON and drawn by :mod:`infra.bench.plot`.

Taken after the phase from timestamps the work itself left behind (status events in Postgres, the
baseline's rows, the SMTP client's own clock), so sampling costs nothing while the clock runs.
Second 0 is the second the phase's clock started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

# Each sent notification of tenant $1 created since $2: when it was created, accepted and first sent.
SENT_TIMES = """
WITH times AS (
    SELECT n.created_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'accepted') AS accepted_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'sent') AS sent_at
    FROM notifications n
    JOIN notification_events e ON e.notification_id = n.id
    WHERE n.tenant_id = $1 AND n.created_at >= $2 AND n.status = 'sent'
    GROUP BY n.id, n.created_at
)
"""

# Per second after $3: the tenant's notifications first sent in it, and their p99 from {start} to sent.
_SENT_PER_SECOND = (
    SENT_TIMES
    + """
SELECT floor(extract(epoch FROM sent_at - $3::timestamptz))::int AS second,
       count(*) AS sent,
       1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - {start})) AS p99
FROM times
WHERE sent_at IS NOT NULL AND {start} IS NOT NULL
GROUP BY 1
ORDER BY 1
"""
)
_CREATED_PER_SECOND = """
SELECT floor(extract(epoch FROM created_at - $3::timestamptz))::int AS second, count(*) AS created
FROM notifications
WHERE tenant_id = $1 AND created_at >= $2
GROUP BY 1
ORDER BY 1
"""
LatencyStart = Literal["accepted_at", "created_at"]


@dataclass(frozen=True)
class Timeline:
    """Events per second (one list per series) and the p99 latency of what finished in each second."""

    latency_basis: str | None = None
    rates: dict[str, list[int]] = field(default_factory=dict)
    latency_p99_ms: dict[str, list[float | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "latency_p99_ms": {
                name: [None if value is None else round(value, 1) for value in values]
                for name, values in self.latency_p99_ms.items()
            }
        }


def dense_counts(rows: Iterable[tuple[int, int]]) -> list[int]:
    """``(second, count)`` rows as one count per second from second 0 (a clock a hair early lands in 0)."""
    counts: dict[int, int] = {}
    for second, count in rows:
        counts[max(0, second)] = counts.get(max(0, second), 0) + count
    return [counts.get(second, 0) for second in range(max(counts, default=-1) + 1)]


def dense_values(rows: Iterable[tuple[int, float | None]]) -> list[float | None]:
    """``(second, value)`` rows as one value per second from second 0, None where there was none."""
    values = {max(0, second): value for second, value in rows}
    return [values.get(second) for second in range(max(values, default=-1) + 1)]


def bucket(samples: Iterable[tuple[float, float]]) -> tuple[list[int], list[float | None]]:
    """``(when, latency)`` pairs in seconds (when: after the clock started) as a count per second and the p99
    latency in ms of each second."""
    per_second: dict[int, list[float]] = {}
    for moment, latency in samples:
        per_second.setdefault(max(0, int(moment)), []).append(latency)
    counts = dense_counts((second, len(values)) for second, values in per_second.items())
    p99 = dense_values((second, 1000 * _p99(values)) for second, values in per_second.items())
    return counts, p99


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def herald_timeline(
    database_url: str,
    tenants: Mapping[str, str],
    since: datetime,
    origin: datetime,
    start: LatencyStart,
    created_series: str | None = None,
) -> Timeline:
    """Sent per second and the p99 from ``start`` to sent of each tenant's notifications (series named by
    ``tenants``' keys); with ``created_series``, also the first tenant's notifications created per second."""
    database = await asyncpg.connect(database_url)
    try:
        rates: dict[str, list[int]] = {}
        latency: dict[str, list[float | None]] = {}
        for label, tenant in tenants.items():
            if created_series is not None and not rates:
                rows = await database.fetch(_CREATED_PER_SECOND, tenant, since, origin)
                rates[created_series] = dense_counts((row["second"], row["created"]) for row in rows)
            rows = await database.fetch(_SENT_PER_SECOND.format(start=start), tenant, since, origin)
            rates[f"{label} sent/s"] = dense_counts((row["second"], row["sent"]) for row in rows)
            latency[label] = dense_values((row["second"], row["p99"]) for row in rows)
    finally:
        await database.close()
    basis = "accepted (ingest) -> sent" if start == "accepted_at" else "created (gateway's 202) -> sent"
    return Timeline(latency_basis=basis, rates=rates, latency_p99_ms=latency)
