"""Ctrl-C stops a test session in the middle of a fault test within a minute, and leaves no process
behind: a pytest session of its own (this repository's fixtures: a broker, a private Postgres and Redis,
a service as its own process) gets SIGINT on its process group, as a terminal sends it.

Also when the session was started with SIGINT ignored, as a shell without job control (a script,
``make test &``, a tool running commands) starts a background command: Python then raises no
KeyboardInterrupt unless told to (tests/conftest.py), and the fault test ran on for minutes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.processes import wait_until
from infra.local.stack import REPO_ROOT

pytestmark = [pytest.mark.fault, pytest.mark.timeout(300)]

# The brief's bound, with the teardown of a broker, a private Postgres and Redis and a service in it.
STOPPED_WITHIN_S = 60.0
MARKER = "HERALD_INTERRUPT_TEST"

INNER_CONFTEST = 'pytest_plugins = ["tests.conftest", "tests.fault.conftest"]\n'
INNER_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
markers =
    fault: tests that kill or stop parts of the system
"""
# A fault test's parts: the session's broker, the fault tests' private Postgres and Redis, and ingest
# as its own process on them. It says when it is up, then waits until it is interrupted.
INNER_TEST = """
import asyncio
import os
from pathlib import Path

import pytest

from infra.local.processes import free_port
from infra.local.stack import ServiceSpec, service_process

pytestmark = pytest.mark.fault


async def test_a_fault_test_in_the_middle(settings, private_postgres, private_redis) -> None:
    spec = ServiceSpec("ingest", "services.ingest", free_port())
    environment = {
        "HERALD_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HERALD_KAFKA_IDEMPOTENT_PRODUCER": "false",
        "HERALD_TOPIC_PREFIX": settings.topic_prefix,
        "HERALD_REDIS_URL": private_redis.url,
        "HERALD_DATABASE_URL": private_postgres.url,
        # It consumes nothing here: no producer keys needed.
        "HERALD_REQUIRE_SIGNED_REQUESTS": "false",
    }
    process = service_process(spec, environment, line_sink=None)
    process.start()
    try:
        await asyncio.to_thread(process.wait_http_ready, spec.ready_url, timeout=90)
        Path(os.environ["HERALD_INTERRUPT_READY_FILE"]).write_text("ready")
        await asyncio.Event().wait()  # until the session is interrupted
    finally:
        process.stop(grace=20)
"""


def marked_processes(marker: str) -> list[int]:
    """Every process that inherited ``MARKER=marker`` (the inner session's descendants, detached ones too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue  # it exited meanwhile
        if f"{MARKER}={marker}".encode() in environ and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """The inner session's mark; whatever carries it is killed afterwards, even if the test failed."""
    value = uuid.uuid4().hex
    yield value
    for pid in marked_processes(value):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def postgres_started(marker: str) -> bool:
    """Whether the session's private Postgres server exists (it may not answer yet): ``postgres`` with the
    port pg_ctl gives it, not the ones initdb runs."""
    for pid in marked_processes(marker):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"/postgres") and b"-p" in argv:
                return True
    return False


def described(pids: list[int]) -> list[str]:
    """Their command lines, of those still there."""
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sigint", "moment"),
    [("default", "mid-test"), ("ignored", "mid-test"), ("default", "while Postgres starts")],
)
def test_sigint_stops_a_session_in_a_fault_test_within_a_minute_leaving_nothing(
    sigint: str, moment: str, marker: str, tmp_path: Path
) -> None:
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "pytest.ini").write_text(INNER_INI)
    (tmp_path / "interrupted_test.py").write_text(INNER_TEST)
    ready = tmp_path / "ready"
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HERALD_INTERRUPT_READY_FILE": str(ready),
        MARKER: marker,
    }
    disposition = signal.SIG_IGN if sigint == "ignored" else signal.SIG_DFL
    output = (tmp_path / "output").open("w")
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
        cwd=tmp_path,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
        # Its own process group, as a terminal's foreground job; SIGINT as the starting shell left it.
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )
    try:
        if moment == "mid-test":
            wait_until(lambda: ready.exists() or session.poll() is not None, timeout=180, what="the inner test")
            assert len(marked_processes(marker)) >= 4, "expected a broker, Postgres, Redis and ingest"
        else:
            # pg_ctl runs the server detached: interrupted before it answers, the fixture has nothing to stop yet.
            wait_until(lambda: postgres_started(marker) or session.poll() is not None, timeout=120, what="Postgres")
        assert session.poll() is None, (tmp_path / "output").read_text()[-3000:]

        interrupted = time.monotonic()
        os.killpg(session.pid, signal.SIGINT)
        try:
            session.wait(STOPPED_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the session still ran {STOPPED_WITHIN_S:g} s after SIGINT")
        took = time.monotonic() - interrupted
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.pid, signal.SIGKILL)
        session.wait()
        output.close()
    log = (tmp_path / "output").read_text()
    print(f"SIGINT {sigint}, {moment}: the session exited {took:.1f} s after SIGINT")
    assert session.returncode == pytest.ExitCode.INTERRUPTED, log[-3000:]
    assert "KeyboardInterrupt" in log
    # A child gets SIGTERM when the session exits (ManagedProcess); give it the moment it takes to go.
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: not marked_processes(marker), timeout=10, what="the session's processes gone")
    assert described(marked_processes(marker)) == [], "processes of the session outlived it"
