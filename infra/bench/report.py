"""The printed table: each figure of one run beside its target and its ceiling from the same run."""

from __future__ import annotations

from typing import Any

# The figures the project holds itself to (docs/development/benchmarks.md).
TARGETS: dict[str, float] = {
    "broker_combined_per_s_about": 40_000,
    "gateway_requests_per_s": 2_000,
    "gateway_p99_ms": 50,
    "gateway_errors": 0,
    "email_per_s": 1_500,
    # With a provider stand-in that costs nearly nothing (an HTTP sink): a quarter of the broker ceiling.
    "pipeline_share_of_broker_ceiling": 0.25,
    "latency_p99_ms_at_1000_per_s": 250,
    # High-priority emails sent while 20,000 low-priority ones are queued (issue 12): accepted -> sent.
    "priority_high_p99_ms": 1_000,
    # Issue 14: Herald's pipeline against a Celery + Redis baseline doing the same work in the same run, and
    # sender-email against the SMTP client's own wire ceiling.
    "celery_ratio": 5,
    "email_percent_of_smtp_ceiling": 50,
    # Issue 14: at a constant 500 POSTs a second with the pipeline running, the 202's p99 and accepted -> sent p99.
    "open_loop_p99_ms": 50,
    "open_loop_sent_p99_ms": 250,
    # Issue 14: every service's resident size at load.
    "service_peak_resident_mb": 200,
}

_COLUMNS = (46, 22, 24)
# Busy time outside Herald above this (% of one core) means other work competed with the run.
_OTHER_WARNING_PERCENT = 20.0


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _share(rate: float, combined: float | None) -> str:
    """``rate`` as a share of the broker ceiling, for the ceiling column."""
    return f"{_n(combined)}/s broker: {100 * rate / combined:.1f}%" if combined else ""


def _row(label: str, measured: str, target: str = "", ceiling: str = "") -> str:
    a, b, c = _COLUMNS
    # A column's last character is always a space: a wide figure pushes the next one along, never into it.
    return f"  {label:<{a - 1}} {measured:<{b - 1}} {target:<{c - 1}} {ceiling}".rstrip()


def _end_to_end(phase: dict[str, Any], unit: str, target: str = "", ceiling: str = "") -> str:
    """A timed phase's rate, marked when it timed out before everything arrived."""
    label = "end to end" + ("" if phase["complete"] else " (INCOMPLETE: timed out)")
    return _row(label, f"{_n(phase['per_s'])} {unit}", target, ceiling)


def _seconds_row(label: str, seconds: tuple[float | None, ...]) -> str:
    return _row(label, " / ".join("-" if s is None else f"{s:.1f}" for s in seconds))


def _celery_lines(celery: dict[str, Any], pipeline: dict[str, Any] | None, comparison: dict[str, float]) -> list[str]:
    """The baseline's rate beside Herald's, and their ratio against its target."""
    lines = [
        f"Celery baseline: {_n(celery['count'])} requests enqueued on Redis, {celery['concurrency']} prefork "
        f"processes, same sink and Postgres ({celery['baseline']})",
        _end_to_end(celery, "notif/s"),
    ]
    after = celery.get("after_enqueue_per_s")
    if after is not None:
        lines.append(_row(f"once the producer was done ({celery['produce_seconds']:.1f} s)", f"{_n(after)} notif/s"))
    ratio = comparison.get("ratio")
    if ratio is not None:
        target = TARGETS["celery_ratio"]
        lines.append(
            _row("ratio: Herald's pipeline / Celery", f"{ratio:.2f}x", f">= {target}x {_verdict(ratio >= target)}")
        )
        after_ratio = comparison.get("ratio_to_celery_after_enqueue")
        if after_ratio is not None:
            lines.append(_row("ratio to Celery once its producer was done", f"{after_ratio:.2f}x"))
    if pipeline and pipeline.get("cpu") and celery.get("cpu"):
        herald, baseline = (1000 * _own_cpu_seconds(phase["cpu"]) / phase["count"] for phase in (pipeline, celery))
        lines.append(_row("CPU per notification: Herald / Celery", f"{herald:.2f} / {baseline:.2f} ms"))
    if celery["worker_errors"]:
        lines.append("  worker errors: " + " | ".join(celery["worker_errors"]))
    lines += [
        _row("arrived at the sink / sent in Postgres", f"{_n(celery['delivered'])} / {_n(celery['sent'])}"),
        _seconds_row(
            "seconds: enqueued / sink / Postgres",
            (celery["produce_seconds"], celery["sink_seconds"], celery["stored_seconds"]),
        ),
    ]
    return lines


def _own_cpu_seconds(cpu: dict[str, Any]) -> float:
    """CPU of the processes a phase named (its services, datastores, sink, load generator), not ``other``."""
    return float(sum(seconds for name, seconds in cpu["cpu_seconds"].items() if name != "other"))


def _cpu_line(title: str, cpu: dict[str, Any], per: tuple[int, str] | None = None) -> list[str]:
    shares = ", ".join(f"{name} {percent:.0f}%" for name, percent in cpu["percent_of_core"].items() if percent >= 1)
    lines = [
        f"{title} ({cpu['wall_seconds']:.1f} s; {cpu['cores']} cores = {100 * cpu['cores']}%, "
        f"busy {cpu['machine_busy_percent_of_core']:.0f}%):",
        f"  {shares}",
    ]
    if per is not None:
        count, unit = per
        named = [(name, s) for name, s in cpu["cpu_seconds"].items() if name != "other"]
        own = _own_cpu_seconds(cpu)
        detail = ", ".join(f"{name} {1000 * s / count:.2f}" for name, s in named[:5])
        # "other" is whatever else the machine ran meanwhile (other work, the idle services of another phase): shown
        # beside the run's own processes, never mixed into them.
        lines.append(
            f"  CPU per {unit}: {1000 * own / count:.2f} ms in the run's processes ({detail}); "
            f"{1000 * (own + cpu['cpu_seconds']['other']) / count:.2f} ms with other"
        )
    other = cpu["percent_of_core"]["other"]
    if other > _OTHER_WARNING_PERCENT:
        lines.append(f"  WARNING: {other:.0f}% of a core went to processes outside this run: the figures are low")
    return lines


def _priority_lines(priority: dict[str, Any], combined: float | None) -> list[str]:
    """The priority phase: the high lane's latency against its target, the low lane's rate beside the broker's."""
    target = TARGETS["priority_high_p99_ms"]
    lines = [
        f"Priority lanes: {_n(priority['low_count'])} low-priority emails queued on the low lane, "
        f"{_n(priority['high_count'])} high-priority sent over {priority['high_seconds']:g} s while they drain",
    ]
    high = priority.get("high")
    if high:
        p99 = high["accepted_p99_ms"]
        lines.append(
            _row(
                "high: accepted -> sent p50 / p95 / p99",
                f"{_ms(high['accepted_p50_ms'])} / {_ms(high['accepted_p95_ms'])} / {_ms(p99)} ms",
                f"p99 <= {_n(target)} ms {_verdict(p99 <= target)}",
            )
        )
    stages = priority.get("high_stages") or {}
    if stages:
        lines.append(
            _row(
                "high p99 by stage: ingest / router / sender",
                " / ".join(_ms(stages[s]["p99_ms"]) if s in stages else "-" for s in ("ingest", "router", "sender"))
                + " ms",
            )
        )
    lines.append(_row("high sent / produced", f"{_n(priority['high_sent'])} / {_n(priority['high_count'])}"))
    rates = {"low: sent/s while the high ones ran": "low_per_s_in_window", "low: sent/s, whole backlog": "low_per_s"}
    for label, key in rates.items():
        rate = priority.get(key)
        if rate is not None:
            lines.append(_row(label, f"{_n(rate)} notif/s", "", _share(rate, combined)))
    queued = priority.get("low_queued_at_last_high")
    if queued is not None:
        lines.append(
            _row(
                "low: unsent when the last high was sent",
                f"{_n(queued)} of {_n(priority['low_count'])}",
                "" if queued else "backlog ran out: not a test",
            )
        )
    batches = priority.get("batches") or {}
    low = [
        f"{service} {lanes['low']['mean_size']:.0f} in {_ms(lanes['low']['mean_ms'])} ms"
        for service, lanes in batches.items()
        if lanes["low"]["batches"]
    ]
    if low:
        lines.append(f"  low batches, mean records / handling: {', '.join(low)}")
    if not priority.get("complete"):
        lines.append("  INCOMPLETE: timed out before every notification was sent")
    return lines


def _open_loop_lines(opened: dict[str, Any]) -> list[str]:
    """The open-loop POST run: latency at a constant arrival rate, the service level of what it accepted."""
    p99, errors, dropped = opened["p99_ms"], opened["errors"], opened["dropped"]
    lines = [
        f"Gateway open loop: {opened['route']} at {_n(opened['target_per_s'])}/s (k6 constant-arrival-rate), "
        f"{opened['seconds']:g} s, whole pipeline running",
        _row("requests", f"{_n(opened['requests_per_s'])} req/s, {_n(dropped)} not started by k6"),
        _row(
            "202 p50 / p99",
            f"{_ms(opened['p50_ms'])} / {_ms(p99)} ms",
            f"p99 <= {_n(TARGETS['open_loop_p99_ms'])} ms {_verdict(p99 <= TARGETS['open_loop_p99_ms'])}",
        ),
        _row("errors (non-202)", f"{_n(errors)} of {_n(opened['requests'])}", f"0 {_verdict(errors == 0)}"),
    ]
    latency = opened.get("latency")
    if latency:
        sent_p99 = latency["created_p99_ms"]
        target = TARGETS["open_loop_sent_p99_ms"]
        lines.append(
            _row(
                "202 -> sent p50 / p99",
                f"{_ms(latency['created_p50_ms'])} / {_ms(sent_p99)} ms",
                f"p99 <= {_n(target)} ms {_verdict(sent_p99 <= target)}",
            )
        )
    return lines


def render(results: dict[str, Any]) -> str:
    """The table, from the results JSON (so a partial run prints what it measured)."""
    lines = [
        f"Herald benchmark: one run on {results['machine']['cores']} cores, {results['started_at']} "
        f"(JSON: {results['output']})",
        "",
        _row("", "measured", "target", "ceiling (same run)"),
    ]
    broker = results.get("broker_ceiling")
    combined = None
    if broker:
        combined = broker["combined_per_s"]
        lines += [
            f"Broker ceiling: one aiokafka client, {_n(broker['records'])} x {broker['record_bytes']} B, acks=all, "
            f"{broker['partitions']} partitions",
            _row("produce", f"{_n(broker['produce_per_s'])} msg/s"),
            _row("consume (one group member, manual commits)", f"{_n(broker['consume_per_s'])} msg/s"),
            _row("produce + consume", f"{_n(combined)} msg/s", f"about {_n(TARGETS['broker_combined_per_s_about'])}"),
        ]
    smtp = results.get("smtp_ceiling")
    comparison = results.get("comparison") or {}
    if smtp:
        lines += [
            f"SMTP client ceiling: {smtp['client']}, {_n(smtp['messages'])} prebuilt {smtp['message_bytes']} B "
            f"messages over {smtp['connections']} persistent connections to {smtp['sink']}",
            _row("messages", f"{_n(smtp['per_s'])} msg/s"),
        ]
    pipeline = results.get("pipeline")
    if pipeline:
        per_s = pipeline["per_s"]
        lines += [
            f"Pipeline: {_n(pipeline['count'])} requests produced to Kafka -> SMTP to {pipeline['sink']}, "
            "'sent' in Postgres",
            _end_to_end(
                pipeline,
                "notif/s",
                f">= {_n(TARGETS['email_per_s'])} {_verdict(per_s >= TARGETS['email_per_s'])}",
                _share(per_s, combined),
            ),
            _row(
                "arrived at the sink / sent in Postgres",
                f"{_n(pipeline['delivered'])} / {_n(pipeline['sent'])}",
            ),
            _seconds_row(
                "seconds: producer done / sink / Postgres",
                (pipeline["produce_seconds"], pipeline["sink_seconds"], pipeline["stored_seconds"]),
            ),
        ]
        latency = pipeline.get("latency")
        if latency:
            lines.append(
                _row(
                    "accepted -> sent p50 / p99 (one burst)",
                    f"{_ms(latency['accepted_p50_ms'])} / {_ms(latency['accepted_p99_ms'])} ms",
                )
            )
        if combined:
            lines.append(
                f"  (design: {TARGETS['pipeline_share_of_broker_ceiling']:.0%} of the broker ceiling with a "
                f"near-free HTTP stand-in, i.e. {_n(TARGETS['pipeline_share_of_broker_ceiling'] * combined)}/s here)"
            )
    celery = results.get("celery")
    if celery:
        lines += _celery_lines(celery, pipeline, comparison)
    priority = results.get("priority")
    if priority:
        lines += _priority_lines(priority, combined)
    health = results.get("gateway_ceiling")
    if health:
        lines += [
            f"Gateway ceiling: {health['route']}, {health['concurrency']} connections, {health['seconds']:g} s, "
            f"{health['load_generator']}",
            _row("requests", f"{_n(health['requests_per_s'])} req/s"),
            _row("p50 / p99", f"{_ms(health['p50_ms'])} / {_ms(health['p99_ms'])} ms"),
        ]
    gateway = results.get("gateway")
    if gateway:
        rate, p99, errors = gateway["requests_per_s"], gateway["p99_ms"], gateway["errors"]
        lines += [
            f"Gateway: {gateway['route']}, {gateway['concurrency']} connections, {gateway['seconds']:g} s, "
            f"{gateway['load_generator']}, whole pipeline running",
            _row(
                "requests",
                f"{_n(rate)} req/s",
                f">= {_n(TARGETS['gateway_requests_per_s'])} {_verdict(rate >= TARGETS['gateway_requests_per_s'])}",
                f"{_n(health['requests_per_s'])} req/s (GET /health)" if health else "",
            ),
            _row(
                "p50 / p99",
                f"{_ms(gateway['p50_ms'])} / {_ms(p99)} ms",
                f"p99 < {_n(TARGETS['gateway_p99_ms'])} ms {_verdict(p99 < TARGETS['gateway_p99_ms'])}",
                f"{_ms(health['p50_ms'])} / {_ms(health['p99_ms'])} ms" if health else "",
            ),
            _row(
                "errors (non-202)",
                f"{_n(errors)} of {_n(gateway['requests'])}",
                f"0 {_verdict(errors == 0)}",
            ),
        ]
        drained = gateway.get("drain")
        if drained:
            lines.append(
                _row(
                    "202s sent by the pipeline / waited after k6",
                    f"{_n(drained['sent'])} / {drained['waited_seconds']:.1f} s",
                )
            )
        latency = gateway.get("latency")
        if latency:
            lines.append(
                _row(
                    "202 -> sent p50 / p99",
                    f"{_ms(latency['created_p50_ms'])} / {_ms(latency['created_p99_ms'])} ms",
                    f"p99 < {_n(TARGETS['latency_p99_ms_at_1000_per_s'])} ms at 1,000/s",
                )
            )
    email = results.get("email")
    if email:
        lines += [
            f"sender-email alone: {_n(email['count'])} rendered deliveries produced to its topic -> SMTP to "
            f"{email['sink']}, 'sent' in Postgres",
            _end_to_end(email, "mails/s"),
        ]
        share = comparison.get("email_percent_of_smtp_ceiling")
        if smtp and share is not None:
            target = TARGETS["email_percent_of_smtp_ceiling"]
            lines.append(
                _row(
                    "share of the SMTP client's wire ceiling",
                    f"{share:.1f}%",
                    f">= {target}% {_verdict(share >= target)}",
                    f"{_n(smtp['per_s'])} msg/s (SMTP ceiling)",
                )
            )
    opened = results.get("gateway_open")
    if opened:
        lines += _open_loop_lines(opened)
    lines.append("")
    if pipeline and pipeline.get("cpu"):
        lines += _cpu_line("CPU during the pipeline phase", pipeline["cpu"], (pipeline["count"], "notification"))
    if celery and celery.get("cpu"):
        lines += _cpu_line("CPU during the Celery phase", celery["cpu"], (celery["count"], "notification"))
    if email and email.get("cpu"):
        lines += _cpu_line("CPU during the email phase", email["cpu"], (email["count"], "mail"))
    if priority and priority.get("cpu"):
        count = priority["low_count"] + priority["high_count"]
        lines += _cpu_line("CPU during the priority phase", priority["cpu"], (count, "notification"))
    if gateway and gateway.get("cpu"):
        lines += _cpu_line("CPU during the gateway phase", gateway["cpu"], (gateway["requests"], "request"))
    peaks = results.get("peak_resident_mb")
    if peaks:
        limit = TARGETS["service_peak_resident_mb"]
        lines.append(
            f"Peak resident size (target: every service <= {_n(limit)} MB, "
            f"{_verdict(max(peaks.values()) <= limit)}): "
            + ", ".join(f"{name} {size:,.0f} MB" for name, size in peaks.items())
        )
    logged = results.get("service_log_lines")
    if logged:
        lines.append("Services printed (at log level WARNING): " + ", ".join(f"{k} {v}" for k, v in logged.items()))
    if results.get("notes"):
        lines += [f"Note: {note}" for note in results["notes"]]
    if results.get("error"):
        lines.append(f"STOPPED EARLY: {results['error']}")
    return "\n".join(lines)
