"""The provider stand-in: Postfix's ``smtp-sink``, which accepts mail and throws it away at almost no CPU cost.

Its ``-c`` flag prints running counters (``sess=N quit=N mesg=N`` ending in ``\\r``, not newline) to stdout,
so stdout goes to a file whose tail we read. Where ``smtp-sink`` cannot be had, Herald's own Python
sink (:class:`infra.local.mail_sink.MailSink`) stands in, in this process, and the report says so.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import IO, Protocol

import structlog

from infra.local.mail_sink import MailSink
from infra.local.processes import ProcessError, free_port, port_accepts, wait_until

log = structlog.get_logger(__name__)

SMTP_SINK = Path("/usr/sbin/smtp-sink")
# The last counter line is well under this; reading only the tail keeps polling cheap.
_TAIL_BYTES = 256
_MESSAGES = re.compile(rb"mesg=(\d+)")
_INSTALL_TIMEOUT_S = 600


class Sink(Protocol):
    """What the benchmark needs from a mail sink."""

    name: str
    host: str
    port: int

    @property
    def pid(self) -> int | None:
        """The sink's own process (None when it runs inside the benchmark's process)."""

    def delivered(self) -> int:
        """Messages accepted so far."""

    def stop(self) -> None:
        """Stop the sink."""


class PostfixSmtpSink:
    """``smtp-sink -c [-u nobody] 127.0.0.1:PORT 256``, its counters read from ``counter_file``."""

    name = "smtp-sink (Postfix)"

    def __init__(self, binary: Path, counter_file: Path, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port(host)
        self._counter_file = counter_file
        argv = [str(binary), "-c"]
        if os.geteuid() == 0:
            # smtp-sink refuses to run as root; it drops to this user after binding.
            argv += ["-u", "nobody"]
        argv += [f"{host}:{self.port}", "256"]
        self._argv = argv
        self._popen: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """smtp-sink's process id once started."""
        return self._popen.pid if self._popen is not None else None

    def start(self, timeout: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        self._counter_file.parent.mkdir(parents=True, exist_ok=True)
        self._output = self._counter_file.open("wb")
        self._popen = subprocess.Popen(
            self._argv, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT, start_new_session=True
        )

        def listening() -> bool:
            if self._popen is not None and self._popen.poll() is not None:
                raise ProcessError(f"smtp-sink exited at start ({self._popen.returncode}): {self._read_tail()!r}")
            return port_accepts(self.host, self.port)

        wait_until(listening, timeout=timeout, what=f"smtp-sink listening on {self.host}:{self.port}")

    def _read_tail(self) -> bytes:
        with self._counter_file.open("rb") as counters:
            size = counters.seek(0, os.SEEK_END)
            counters.seek(max(0, size - _TAIL_BYTES))
            return counters.read()

    def delivered(self) -> int:
        """The ``mesg=`` counter: messages whose final ``.`` it answered."""
        found = _MESSAGES.findall(self._read_tail())
        return int(found[-1]) if found else 0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(5)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(5)
        if self._output is not None:
            self._output.close()


class PythonSink:
    """Herald's aiosmtpd sink in this process: parses and keeps every mail, so it costs far more CPU."""

    name = "infra.local.mail_sink.MailSink (Python, in the benchmark's process)"

    def __init__(self, max_messages: int) -> None:
        self._sink = MailSink(max_messages=max_messages)
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def pid(self) -> int | None:
        """None: its CPU is counted with the benchmark's own."""
        return None

    def start(self) -> None:
        """Start serving on a background thread."""
        self._sink.start()
        self.host, self.port = self._sink.host, self._sink.port

    def delivered(self) -> int:
        """Messages stored (the store keeps up to ``max_messages``)."""
        return len(self._sink.messages)

    def stop(self) -> None:
        """Stop serving."""
        self._sink.stop()


def _stop_postfix_daemon() -> None:
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    if not Path(postfix).exists():
        return
    if subprocess.run([postfix, "status"], capture_output=True, check=False, timeout=30).returncode == 0:
        subprocess.run([postfix, "stop"], capture_output=True, check=False, timeout=60)
        log.info("stopped the postfix daemon the install started")


def ensure_smtp_sink() -> tuple[Path | None, str]:
    """The ``smtp-sink`` binary, installing Debian's ``postfix`` if needed; else None and why not.

    The Postfix mail daemon that comes with the package is not wanted: if the install started it,
    it is stopped again.
    """
    if SMTP_SINK.exists():
        return SMTP_SINK, "present"
    apt_get = shutil.which("apt-get")
    if apt_get is None or os.geteuid() != 0:
        return None, "smtp-sink is missing and apt-get cannot install postfix here (needs Debian and root)"
    print("Installing Debian's postfix for smtp-sink (apt-get, a minute at most)...", flush=True)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt_get, "update", "-qq"], [apt_get, "install", "-y", "-qq", "--no-install-recommends", "postfix"]):
        try:
            done = subprocess.run(
                argv, env=environment, capture_output=True, text=True, check=False, timeout=_INSTALL_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return None, f"`{' '.join(argv)}` did not finish within {_INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            return None, f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[-500:]}"
    _stop_postfix_daemon()
    return (SMTP_SINK, "installed postfix") if SMTP_SINK.exists() else (None, "postfix installed without smtp-sink")


def start_sink(counter_file: Path, max_messages: int) -> tuple[Sink, str | None]:
    """A started sink, smtp-sink if possible; the second value says why the Python sink was used instead."""
    binary, why = ensure_smtp_sink()
    if binary is not None:
        postfix_sink = PostfixSmtpSink(binary, counter_file)
        try:
            postfix_sink.start()
        except (ProcessError, TimeoutError, OSError) as error:
            postfix_sink.stop()
            why = f"smtp-sink did not start: {error}"
        else:
            return postfix_sink, None
    python_sink = PythonSink(max_messages)
    python_sink.start()
    return python_sink, why
