"""Supervise child processes for the local stack and tests.

A :class:`ManagedProcess` starts a command with extra environment variables, copies each line it
prints to our stdout prefixed with its name (and keeps the last lines for error messages), waits
for a condition or an HTTP readiness URL with a deadline, and stops with SIGTERM and a grace period
before SIGKILL. The API is synchronous so pytest fixtures and the stack runner use it alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

import httpx
import structlog

from shared.tls import default_client_context

log = structlog.get_logger(__name__)

LineSink = Callable[[str, str], None]

# Notified whenever any managed process exits, so wait_any() needs no polling.
_EXITS = threading.Condition()
_OUTPUT_LOCK = threading.Lock()
_PR_SET_PDEATHSIG = 1


class ProcessError(RuntimeError):
    """A managed process failed to start, exited early or did not become ready in time."""


def print_prefixed(name: str, line: str) -> None:
    """Default line sink: ``name | line`` on stdout, one whole line at a time across threads."""
    # The stream may already be closed (e.g. pytest's capture at teardown); a lost log line is fine.
    with _OUTPUT_LOCK, contextlib.suppress(ValueError, OSError):
        sys.stdout.write(f"{name:<13}| {line}\n")
        sys.stdout.flush()


# Ports free_port has handed out in this process: two services given one port make the second fail.
_HANDED_OUT: set[int] = set()
# Where listening ports are picked when the OS does not say its ephemeral range: below Linux's default.
_LISTENING_PORTS = (10_000, 32_767)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free now, below the OS's ephemeral range and never handed out by this process before.

    Not a port the OS picks (bind to port 0): those come from the ephemeral range, where every outgoing
    connection (to Kafka, Postgres, ...) also takes its local port, and a service about to listen on
    one then finds it taken (seen in CI). The OS may still hand it to someone else: use it promptly.
    """
    return free_ports_in_a_row(1, host)


def free_ports_in_a_row(count: int, host: str = "127.0.0.1") -> int:
    """The first of ``count`` consecutive ports that :func:`free_port` would give, handed out together."""
    low, high = listening_ports()
    for _ in range(1000):
        first = random.randint(low, high - count + 1)
        ports = range(first, first + count)
        if not _HANDED_OUT.intersection(ports) and all(_bindable(host, port) for port in ports):
            _HANDED_OUT.update(ports)
            return first
    raise ProcessError(f"no {count} free ports in a row between {low} and {high}")


# "LOW-HIGH": where free_port picks instead, so concurrent test processes (pytest-xdist workers, and
# the programs they start, which inherit it) never pick each other's ports.
PORT_RANGE_VARIABLE = "HERALD_LOCAL_PORT_RANGE"


def listening_ports() -> tuple[int, int]:
    """Where :func:`free_port` picks: ``HERALD_LOCAL_PORT_RANGE`` if set, else below the OS's ephemeral
    range (Linux's /proc setting), from 10,000 on."""
    configured = os.environ.get(PORT_RANGE_VARIABLE)
    if configured:
        low, _, high = configured.partition("-")
        return int(low), int(high)
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _LISTENING_PORTS
    return (_LISTENING_PORTS[0], ephemeral_low - 1) if ephemeral_low > _LISTENING_PORTS[0] + 1000 else _LISTENING_PORTS


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``condition`` until it is true; raise :class:`TimeoutError` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)


def _die_with_parent() -> None:
    # Runs in the child before exec: if the supervisor dies without cleaning up (SIGKILL, a
    # pytest-timeout abort), the kernel sends the child SIGTERM instead of leaving an orphan.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class StartsAndStops:
    """``with X() as x:`` for anything that starts and stops: started on entry, stopped on exit."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ManagedProcess(StartsAndStops):
    """One supervised child process.

    The child runs in its own session so a Ctrl-C in the terminal reaches only the supervisor,
    which then stops children in order. With ``die_with_parent`` (Linux) the child also gets
    SIGTERM when the *thread* that started it exits, so start it from a long-lived thread.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        inherit_env: bool = True,
        cwd: Path | None = None,
        line_sink: LineSink | None = print_prefixed,
        tail_lines: int = 200,
        die_with_parent: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(os.environ) if inherit_env else {}
        self.env.update(env or {})
        self.cwd = cwd
        self._line_sink = line_sink
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._die_with_parent = die_with_parent and sys.platform == "linux"
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the child; its output is read by a background thread until it exits."""
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self._tail.clear()
        try:
            self._popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if self._die_with_parent else None,
            )
        except OSError as error:
            raise ProcessError(f"cannot start {self.name} ({self.argv[0]}): {error}") from error
        log.debug("process started", process=self.name, pid=self._popen.pid, argv=self.argv)
        assert self._popen.stdout is not None
        self._reader = threading.Thread(
            target=self._pump, args=(self._popen, self._popen.stdout), name=f"output-{self.name}", daemon=True
        )
        self._reader.start()

    def _pump(self, popen: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(line)
            if self._line_sink is not None:
                self._line_sink(self.name, line)
        stream.close()
        popen.wait()
        with _EXITS:
            _EXITS.notify_all()

    @property
    def pid(self) -> int | None:
        """The child's process id, once started."""
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited (negative: killed by that signal), else None."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def running(self) -> bool:
        """Whether the child was started and has not exited."""
        return self._popen is not None and self._popen.poll() is None

    def output_tail(self, lines: int = 30) -> list[str]:
        """The last ``lines`` lines the child printed."""
        return list(self._tail)[-lines:]

    def describe_failure(self, headline: str, lines: int = 30) -> str:
        """``headline`` followed by the child's exit status and its last output lines."""
        if self.returncode is not None and self._reader is not None:
            # The child is gone but its reader may not have read its last lines yet: let it finish.
            self._reader.join(timeout=5)
        status = "still running" if self.returncode is None else f"exit status {self.returncode}"
        tail = "\n".join(f"    {line}" for line in self.output_tail(lines)) or "    (no output)"
        return f"{headline} [{self.name}: {status}]; last output:\n{tail}"

    def wait_until(self, condition: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Wait for ``condition``; fail at once, with the child's last output, if the child exits."""

        def satisfied() -> bool:
            if condition():
                return True
            if not self.running:
                raise ProcessError(self.describe_failure(f"{self.name} exited before {what}"))
            return False

        try:
            wait_until(satisfied, timeout=timeout, what=what)
        except TimeoutError as error:
            raise ProcessError(self.describe_failure(f"{self.name}: {error}")) from error

    def wait_http_ready(self, url: str, *, timeout: float = 60.0) -> None:
        """Wait until ``GET url`` answers 200 (the child must keep running meanwhile)."""
        last_answer = "no answer yet"
        with httpx.Client(timeout=2.0, verify=default_client_context()) as client:

            def answers_200() -> bool:
                nonlocal last_answer
                try:
                    response = client.get(url)
                except httpx.HTTPError as error:
                    last_answer = f"{type(error).__name__}: {error}"
                    return False
                last_answer = f"HTTP {response.status_code}: {response.text[:200]}"
                return response.status_code == 200

            try:
                self.wait_until(answers_200, timeout=timeout, what=f"{url} answered 200")
            except ProcessError as error:
                raise ProcessError(f"{error}\n  last answer from {url}: {last_answer}") from error

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit and return its status; raise :class:`ProcessError` on timeout."""
        if self._popen is None:
            raise ProcessError(f"{self.name} was never started")
        try:
            code = self._popen.wait(timeout)
        except subprocess.TimeoutExpired as error:
            raise ProcessError(self.describe_failure(f"{self.name} did not exit within {timeout:g} s")) from error
        if self._reader is not None:
            # Let the reader copy the last lines before anyone reads output_tail().
            self._reader.join(timeout=5)
        return code

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the child if it is still running."""
        if self._popen is not None and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signum)

    def stop(self, grace: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """Ask the child to exit with ``signum``; SIGKILL it after ``grace`` seconds. Returns its status."""
        if self._popen is None:
            return None
        self.send_signal(signum)
        try:
            return self.wait(grace)
        except ProcessError:
            log.warning("process ignored its stop signal, killing it", process=self.name, grace_s=grace)
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the child (for fault tests, or after a grace period) and reap it."""
        if self._popen is None:
            return None
        self.send_signal(signal.SIGKILL)
        return self.wait(10)


def python_module(
    name: str,
    module: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    line_sink: LineSink | None = print_prefixed,
) -> ManagedProcess:
    """A :class:`ManagedProcess` for ``python -m module args`` with this interpreter, unbuffered."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", module, *args],
        env={"PYTHONUNBUFFERED": "1", **(env or {})},
        cwd=cwd,
        line_sink=line_sink,
    )


def wait_any(
    processes: Iterable[ManagedProcess], timeout: float | None = None, *, unless: Callable[[], bool] | None = None
) -> ManagedProcess | None:
    """Block until one of ``processes`` exits and return it (None on timeout).

    ``unless`` ends the wait early (returning None) once it is true; call :func:`wake_waiters` after
    making it true, so the wait sees it at once.
    """
    watched = list(processes)

    def exited() -> ManagedProcess | None:
        return next((process for process in watched if process.returncode is not None), None)

    with _EXITS:
        _EXITS.wait_for(lambda: exited() is not None or (unless is not None and unless()), timeout)
    return exited()


def wake_waiters() -> None:
    """Make every :func:`wait_any` look at its processes and its ``unless`` again."""
    with _EXITS:
        _EXITS.notify_all()


def stop_all(processes: Iterable[ManagedProcess], grace: float = 10.0) -> None:
    """Stop several processes together: SIGTERM to all, then wait for each within one shared grace period."""
    running = [process for process in processes if process.running]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        process.stop(grace=max(0.0, deadline - time.monotonic()))
