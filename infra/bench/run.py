"""Runs the phases in order, prints the table and writes ``var/bench/results.json``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import httpx
import structlog
import uvloop

from infra.bench import plot, report
from infra.bench.broker_ceiling import measure_broker_ceiling
from infra.bench.celery_baseline.phase import run_celery
from infra.bench.cpu import CpuProbe, CpuUsage, machine_busy_percent, peak_resident_mb, usage_between
from infra.bench.gateway_load import HttpLoad, k6_binary, run_k6
from infra.bench.pipeline import (
    PipelineRun,
    drain,
    email_deliveries,
    email_requests,
    latency_since,
    run_pipeline,
)
from infra.bench.priority import HIGH_TENANT, LOW_TENANT, STAGE_STREAMS, run_priority
from infra.bench.smtp_ceiling import CONNECTIONS as SMTP_CONNECTIONS
from infra.bench.smtp_ceiling import measure_smtp_ceiling
from infra.bench.stack import API_KEY, GATEWAY_TENANT, BenchStack
from infra.bench.timeline import herald_timeline
from infra.local.broker import Broker
from infra.local.stack import REPO_ROOT
from shared.kafka.connection import KafkaConnectionSettings
from shared.kafka.records import Produce

T = TypeVar("T")
WORK_DIR = REPO_ROOT / "var" / "bench"
PIPELINE_TENANT = "bench"
# sender-email alone (the email phase): deliveries as the router would hand them over.
EMAIL_TENANT = "bench-email"
WARM_UP_REQUESTS = 100
PICTURE = "bench.png"
# Above this (% of one core) outside the benchmark, its figures understate the machine.
BUSY_WARNING_PERCENT = 20.0
# In the order they run; all but the first share one stack, whose services start after the Celery baseline:
# Herald's pipeline and the baseline each have the machine to themselves, in one run, one right after the other.
PHASES = ("broker", "smtp", "celery", "pipeline", "email", "priority", "gateway")
_HERALD_PHASES = {"pipeline", "email", "priority", "gateway"}


@dataclass(frozen=True)
class Plan:
    """Sizes and durations of one run."""

    broker_count: int
    pipeline_count: int
    pipeline_timeout: float
    smtp_count: int
    celery_count: int
    celery_concurrency: int
    priority_low_count: int
    priority_high_count: int
    priority_high_seconds: float
    gateway_seconds: float
    gateway_concurrency: int
    gateway_open_rate: float
    gateway_ceiling_seconds: float
    drain_seconds: float
    phases: tuple[str, ...]
    output: Path


def parse_plan(argv: Sequence[str] | None) -> Plan:
    """The command line; ``--quick`` shrinks every phase, explicit flags still win."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.bench", description="Herald's throughput figures from one run on this machine."
    )
    parser.add_argument("--quick", action="store_true", help="small counts and a 5 s gateway run (a smoke test)")
    parser.add_argument("--broker-count", type=int, help="records for the broker ceiling (default 200,000)")
    parser.add_argument("--pipeline-count", type=int, help="requests produced for the pipeline (default 20,000)")
    parser.add_argument(
        "--pipeline-timeout", type=float, default=300, help="give up on the pipeline (and the priority phase) after (s)"
    )
    parser.add_argument("--smtp-count", type=int, help="messages for the SMTP client's ceiling (default 20,000)")
    parser.add_argument("--celery-count", type=int, help="requests for the Celery baseline (default: the pipeline's)")
    parser.add_argument(
        "--celery-concurrency",
        type=int,
        # Twice the cores: each task waits on Redis, SMTP and Postgres, and one process per core left the
        # machine 162 % busy (445/s) where two per core reached 181 % (519/s); more gave no more.
        default=2 * (os.cpu_count() or 1),
        help="Celery prefork processes (default: twice the cores)",
    )
    parser.add_argument(
        "--priority-low-count", type=int, help="low-priority requests queued for the priority phase (default 20,000)"
    )
    parser.add_argument(
        "--priority-high-count", type=int, help="high-priority requests sent while they drain (default 200)"
    )
    parser.add_argument("--priority-high-seconds", type=float, help="spread the high requests over (s, default 4)")
    parser.add_argument("--gateway-seconds", type=float, help="duration of the gateway load (default 30)")
    parser.add_argument("--gateway-concurrency", type=int, default=64, help="concurrent connections (default 64)")
    parser.add_argument(
        "--gateway-open-rate",
        type=float,
        default=500,
        help="requests a second of the open-loop POST run after the closed-loop one (default 500; 0: skip)",
    )
    parser.add_argument("--gateway-ceiling-seconds", type=float, help="GET /health run for the HTTP ceiling (0: skip)")
    parser.add_argument("--drain-seconds", type=float, help="wait this long for the gateway's notifications to be sent")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)}); they run in that order",
    )
    parser.add_argument("--output", type=Path, default=WORK_DIR / "results.json", help="results JSON path")
    args = parser.parse_args(argv)
    chosen = set(args.phases.split(","))
    if not chosen <= set(PHASES):
        parser.error(f"--phases: choose among {', '.join(PHASES)}")
    phases = tuple(phase for phase in PHASES if phase in chosen)

    def pick(value: T | None, full: T, quick: T) -> T:
        return value if value is not None else quick if args.quick else full

    pipeline_count = pick(args.pipeline_count, 20_000, 2_000)
    plan = Plan(
        broker_count=pick(args.broker_count, 200_000, 20_000),
        pipeline_count=pipeline_count,
        pipeline_timeout=args.pipeline_timeout,
        smtp_count=pick(args.smtp_count, 20_000, 4_000),
        celery_count=args.celery_count if args.celery_count is not None else pipeline_count,
        celery_concurrency=args.celery_concurrency,
        # Quick: a backlog that outlasts the high requests (2,000 drain in about 2 s here).
        priority_low_count=pick(args.priority_low_count, 20_000, 4_000),
        priority_high_count=pick(args.priority_high_count, 200, 40),
        priority_high_seconds=pick(args.priority_high_seconds, 4.0, 0.5),
        gateway_seconds=pick(args.gateway_seconds, 30.0, 5.0),
        gateway_concurrency=args.gateway_concurrency,
        gateway_open_rate=args.gateway_open_rate,
        gateway_ceiling_seconds=pick(args.gateway_ceiling_seconds, 10.0, 3.0),
        drain_seconds=pick(args.drain_seconds, 120.0, 20.0),
        phases=phases,
        output=args.output,
    )
    counts = (plan.broker_count, plan.pipeline_count, plan.smtp_count, plan.celery_count, plan.priority_low_count)
    if (
        min(*counts, plan.priority_high_count, plan.gateway_concurrency, plan.celery_concurrency) < 1
        or min(plan.gateway_seconds, plan.priority_high_seconds) <= 0
    ):
        parser.error("counts, concurrency, --gateway-seconds and --priority-high-seconds must be positive")
    return plan


class _Stop(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C, so every ``finally`` stops what was started."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _step(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def broker_phase(plan: Plan, results: dict[str, Any]) -> None:
    """The ceiling, on a broker nothing else uses."""
    _step(f"broker ceiling: {plan.broker_count:,} records through a fresh broker")
    broker = Broker(name="ceiling-broker", line_sink=None)
    try:
        broker.start()
        # Generous: a few thousand records a second would still finish.
        ceiling = uvloop.run(
            measure_broker_ceiling(
                KafkaConnectionSettings(kafka_bootstrap_servers=broker.bootstrap_servers),
                plan.broker_count,
                120 + plan.broker_count / 1000,
            )
        )
    finally:
        broker.stop()
    results["broker_ceiling"] = ceiling.to_json()


def _probe(stack: BenchStack) -> CpuProbe:
    pids: dict[str, int | None] = {name: process.pid for name, process in stack.processes_by_name()}
    pids |= {"broker": stack.broker.pid, "smtp sink": stack.sink.pid, "benchmark itself": os.getpid()}
    return CpuProbe(pids, by_comm={"postgres": "postgres", "redis": "redis-server"})


def pipeline_phase(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """Bulk requests on the requests topic until all are at the sink and ``sent`` in Postgres."""
    _step(f"pipeline: {plan.pipeline_count:,} requests produced to {stack.topics.requests}")
    since = datetime.now(UTC)
    records = email_requests(
        PIPELINE_TENANT, plan.pipeline_count, stack.topics.requests, stack.request_signer(PIPELINE_TENANT)
    )
    run, cpu = _until_sent(plan, stack, PIPELINE_TENANT, since, records)
    timeline = uvloop.run(
        herald_timeline(stack.database_url, {"Herald": PIPELINE_TENANT}, since, run.started_at, start="accepted_at")
    )
    results["pipeline"] = run.to_json() | {"cpu": cpu.to_json(), "timeline": timeline.to_json()}


def _until_sent(
    plan: Plan, stack: BenchStack, tenant_id: str, since: datetime, records: list[Produce]
) -> tuple[PipelineRun, CpuUsage]:
    """Produce ``records`` and wait until all are at the sink and ``sent``; with the CPU every process used."""
    probe = _probe(stack)
    before, started = probe.snapshot(), time.perf_counter()
    run = uvloop.run(
        run_pipeline(
            connection=KafkaConnectionSettings(kafka_bootstrap_servers=stack.broker.bootstrap_servers),
            database_url=stack.database_url,
            tenant_id=tenant_id,
            since=since,
            records=records,
            sink_name=stack.sink.name,
            sink_delivered=stack.sink.delivered,
            timeout_s=plan.pipeline_timeout,
        )
    )
    # The latency query ran after the clock stopped: CPU is sampled up to there.
    return run, usage_between(before, probe.snapshot(), time.perf_counter() - started)


def smtp_phase(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """The SMTP client's wire ceiling against the sink the pipeline sends to."""
    _step(f"SMTP client ceiling: {plan.smtp_count:,} prebuilt messages over {SMTP_CONNECTIONS} connections")
    ceiling = uvloop.run(measure_smtp_ceiling(stack.sink.host, stack.sink.port, plan.smtp_count, SMTP_CONNECTIONS))
    results["smtp_ceiling"] = ceiling.to_json() | {"sink": stack.sink.name}


def celery_phase(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """The Celery + Redis baseline doing the pipeline's work against the same sink and Postgres."""
    _step(
        f"Celery baseline: {plan.celery_count:,} requests enqueued on Redis, "
        f"{plan.celery_concurrency} prefork worker processes"
    )
    run = run_celery(
        redis_url=stack.redis_url,
        database_url=stack.database_url,
        sink=stack.sink,
        count=plan.celery_count,
        concurrency=plan.celery_concurrency,
        timeout_s=plan.pipeline_timeout,
        pids={"smtp sink": stack.sink.pid, "benchmark itself": os.getpid()},
    )
    results["celery"] = run.to_json()


def email_phase(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """sender-email alone: rendered deliveries straight onto its topic until all are at the sink and ``sent``."""
    topic = stack.topics.send("email")
    _step(f"email: {plan.pipeline_count:,} deliveries produced to {topic} (sender-email alone)")
    since = datetime.now(UTC)
    records = email_deliveries(EMAIL_TENANT, plan.pipeline_count, topic)
    run, cpu = _until_sent(plan, stack, EMAIL_TENANT, since, records)
    results["email"] = run.to_json() | {"cpu": cpu.to_json()}


def compare(results: dict[str, Any]) -> None:
    """Herald's pipeline against the Celery baseline and the SMTP client's ceiling, where both ran."""
    pipeline, celery, smtp = results.get("pipeline"), results.get("celery"), results.get("smtp_ceiling")
    comparison: dict[str, float] = {}
    if pipeline and celery and celery["per_s"]:
        comparison["ratio"] = round(pipeline["per_s"] / celery["per_s"], 2)
        if celery.get("after_enqueue_per_s"):
            comparison["ratio_to_celery_after_enqueue"] = round(pipeline["per_s"] / celery["after_enqueue_per_s"], 2)
    email = results.get("email")
    if email and smtp and smtp["per_s"]:
        comparison["email_percent_of_smtp_ceiling"] = round(100 * email["per_s"] / smtp["per_s"], 1)
    if comparison:
        results["comparison"] = comparison


def priority_phase(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """A low-priority backlog on the low lane, high-priority requests sent while it drains."""
    _step(
        f"priority lanes: {plan.priority_low_count:,} low-priority requests queued, then "
        f"{plan.priority_high_count:,} high-priority over {plan.priority_high_seconds:g} s"
    )
    probe = _probe(stack)
    origin = datetime.now(UTC)
    before, started = probe.snapshot(), time.perf_counter()
    run = uvloop.run(
        run_priority(
            connection=KafkaConnectionSettings(kafka_bootstrap_servers=stack.broker.bootstrap_servers),
            topics=stack.topics,
            database_url=stack.database_url,
            signer=stack.request_signer,
            metrics_urls={service: stack.metrics_url(service) for service in STAGE_STREAMS},
            low_count=plan.priority_low_count,
            high_count=plan.priority_high_count,
            high_seconds=plan.priority_high_seconds,
            timeout_s=plan.pipeline_timeout,
        )
    )
    cpu = usage_between(before, probe.snapshot(), time.perf_counter() - started)
    timeline = uvloop.run(
        herald_timeline(
            stack.database_url, {"low": LOW_TENANT, "high": HIGH_TENANT}, origin, origin, start="accepted_at"
        )
    )
    results["priority"] = run.to_json() | {"cpu": cpu.to_json(), "timeline": timeline.to_json()}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _warm_up(stack: BenchStack) -> None:
    """A few requests first, so k6 does not time first-call costs; any answer but 202 stops the run."""
    with httpx.Client(base_url=stack.gateway_url, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for index in range(WARM_UP_REQUESTS):
            response = client.post(
                "/api/v1/notifications",
                json={
                    "channels": ["email"],
                    "recipient": {"email": f"warm-up{index}@example.com"},
                    "content": {"subject": "Hello", "text": "Hi!"},
                },
            )
            if response.status_code != 202:
                raise RuntimeError(f"the gateway answered {response.status_code}: {response.text[:300]}")


def gateway_phases(plan: Plan, stack: BenchStack, results: dict[str, Any]) -> None:
    """The HTTP ceiling (GET /health), then single POSTs with the whole pipeline running."""
    k6_lines: list[str] = []

    def keep(name: str, line: str) -> None:
        k6_lines.append(f"{name}: {line}")

    def k6(name: str, method: str, path: str, expect: int, seconds: float, rate: float | None = None) -> HttpLoad:
        return run_k6(
            work_dir=WORK_DIR,
            name=name,
            method=method,
            url=stack.gateway_url + path,
            expect_status=expect,
            api_key=API_KEY,
            concurrency=plan.gateway_concurrency,
            seconds=seconds,
            line_sink=keep,
            rate_per_s=rate,
        )

    _warm_up(stack)
    if plan.gateway_ceiling_seconds > 0:
        _step(f"gateway ceiling: GET /health for {plan.gateway_ceiling_seconds:g} s")
        health = k6("health", "GET", "/health", 200, plan.gateway_ceiling_seconds)
        results["gateway_ceiling"] = health.to_json()

    _step(f"gateway: POST /api/v1/notifications for {plan.gateway_seconds:g} s, {plan.gateway_concurrency} users")
    probe = _probe(stack)
    since = datetime.now(UTC)
    before, started = probe.snapshot(), time.perf_counter()
    children_before = _children_cpu_seconds()
    load = k6("notifications", "POST", "/api/v1/notifications", 202, plan.gateway_seconds)
    # k6 has exited and been reaped by now: its CPU is in our children's rusage, not in /proc.
    k6_seconds = _children_cpu_seconds() - children_before
    cpu = usage_between(before, probe.snapshot(), time.perf_counter() - started).with_group("k6", k6_seconds)
    results["gateway"] = load.to_json() | {"cpu": cpu.to_json()}
    errors = [line for line in k6_lines if "level=error" in line or "level=warning" in line]
    if errors:
        results.setdefault("notes", []).append("k6 reported: " + " | ".join(errors[:6]))

    accepted = load.requests - load.errors
    _step(f"waiting up to {plan.drain_seconds:g} s for the gateway's {accepted:,} notifications to be sent")
    sent, waited = uvloop.run(drain(stack.database_url, GATEWAY_TENANT, since, accepted, plan.drain_seconds))
    latency = uvloop.run(latency_since(stack.database_url, GATEWAY_TENANT, since))
    results["gateway"]["drain"] = {"accepted": accepted, "sent": sent, "waited_seconds": round(waited, 2)}
    results["gateway"]["latency"] = asdict(latency) if latency else None
    timeline = uvloop.run(
        herald_timeline(
            stack.database_url, {"202": GATEWAY_TENANT}, since, since, start="created_at", created_series="202/s"
        )
    )
    results["gateway"]["timeline"] = timeline.to_json()
    if plan.gateway_open_rate > 0:
        results["gateway_open"] = _open_loop(plan, stack, k6)


def _open_loop(plan: Plan, stack: BenchStack, k6: Callable[..., HttpLoad]) -> dict[str, Any]:
    """POSTs at a constant arrival rate with the pipeline running (what callers do), until all are sent."""
    rate, seconds = plan.gateway_open_rate, plan.gateway_seconds
    _step(f"gateway open loop: POST /api/v1/notifications at {rate:g}/s for {seconds:g} s")
    since = datetime.now(UTC)
    load = k6("notifications-open", "POST", "/api/v1/notifications", 202, seconds, rate)
    accepted = load.requests - load.errors
    sent, waited = uvloop.run(drain(stack.database_url, GATEWAY_TENANT, since, accepted, plan.drain_seconds))
    latency = uvloop.run(latency_since(stack.database_url, GATEWAY_TENANT, since))
    result: dict[str, Any] = load.to_json()
    result["drain"] = {"accepted": accepted, "sent": sent, "waited_seconds": round(waited, 2)}
    result["latency"] = asdict(latency) if latency else None
    return result


def stack_phases(plan: Plan, results: dict[str, Any]) -> None:
    """Start the stack, run the phases chosen on it (Herald's services from the pipeline phase on), stop it all."""
    _step("starting a fresh broker, database and SMTP sink")
    mails = plan.pipeline_count + plan.celery_count + plan.smtp_count + plan.priority_low_count
    mails += plan.priority_high_count + 100_000
    with BenchStack(WORK_DIR, max_mails=mails) as stack:
        if stack.sink_note:
            results.setdefault("notes", []).append(f"Python sink used: {stack.sink_note}")
        try:
            # Herald's pipeline first, on an idle stack; each phase waits for its notifications to be sent, so the
            # next starts with no backlog; the gateway's load, last, leaves none behind it either.
            if "smtp" in plan.phases:
                smtp_phase(plan, stack, results)
            if "celery" in plan.phases:
                celery_phase(plan, stack, results)
            if _HERALD_PHASES & set(plan.phases):
                _step("starting every Herald service")
                stack.start_services()
            if "pipeline" in plan.phases:
                pipeline_phase(plan, stack, results)
            if "email" in plan.phases:
                email_phase(plan, stack, results)
            if "priority" in plan.phases:
                priority_phase(plan, stack, results)
            if "gateway" in plan.phases:
                gateway_phases(plan, stack, results)
        finally:
            results["service_log_lines"] = dict(stack.service_lines.counts)
            if _HERALD_PHASES & set(plan.phases):
                # Peaks since each service started: what the phases' load made them hold.
                results["peak_resident_mb"] = peak_resident_mb(
                    {name: process.pid for name, process in stack.processes_by_name()}
                )
            _step("stopping the stack")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; non-zero if a phase failed or it was interrupted (partial results are still written)."""
    plan = parse_plan(argv)
    # Our own progress is printed; the infrastructure's info logs would only drown it.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    signal.signal(signal.SIGTERM, _raise_stop)
    # Set explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "output": str(plan.output),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "plan": asdict(plan) | {"output": str(plan.output)},
    }
    busy = machine_busy_percent()
    results["machine"]["busy_before_start_percent_of_core"] = round(busy, 1)
    if busy > BUSY_WARNING_PERCENT:
        results.setdefault("notes", []).append(
            f"the machine was {busy:.0f}% busy (of one core) before the run started: other work competes"
        )
    status = 0
    try:
        if "gateway" in plan.phases:
            # Fail before minutes of work, not at the gateway phase.
            k6_binary()
        if "broker" in plan.phases:
            broker_phase(plan, results)
        if set(plan.phases) - {"broker"}:
            stack_phases(plan, results)
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        status = 130
    except Exception as error:  # any failure: still print and save what was measured
        results["error"] = f"{type(error).__name__}: {error}"
        status = 1
    compare(results)
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    picture = plan.output.with_name(PICTURE)
    try:
        results["picture"] = str(plot.write_png(results, picture))
    except Exception as error:  # the figures matter more than their picture: say so and carry on
        results.setdefault("notes", []).append(f"no picture: {type(error).__name__}: {error}")
    plan.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n" + report.render(results), flush=True)
    return status
