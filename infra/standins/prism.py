"""Prism (npm ``@stoplight/prism-cli`` 5.x) serving a provider's official API description, for tests.

Prism answers every operation of the description and validates each request against it (body,
parameters, security): a request that breaks the contract gets the operation's own 400/422
response, with the violations in an ``sl-violations`` header, or a generated 422 problem when the
operation defines neither. ``--errors`` makes a violation always produce an error answer, never just
a logged warning. A response the description defines can be asked for with ``Prefer: code=NNN``.

Prism is installed on first use into ``var/tools/prism`` (node and npm must be on PATH).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import tempfile
from pathlib import Path

import httpx

from infra.local.processes import LineSink, ManagedProcess, ProcessError, StartsAndStops, free_port, print_prefixed
from shared.tls import default_client_context

REPO_ROOT = Path(__file__).resolve().parents[2]
PRISM_DIR = REPO_ROOT / "var" / "tools" / "prism"
PRISM_BIN = PRISM_DIR / "node_modules" / ".bin" / "prism"
PRISM_PACKAGE = "@stoplight/prism-cli@5"
INSTALL_TIMEOUT_S = 600.0
HOST = "127.0.0.1"


def ensure_prism() -> Path:
    """The Prism executable, installing it into ``var/tools/prism`` if it is missing."""
    PRISM_DIR.mkdir(parents=True, exist_ok=True)
    # Test processes may start at once: one installs while the others wait, then find it there.
    with (PRISM_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not PRISM_BIN.exists():
            try:
                subprocess.run(
                    ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(PRISM_DIR), PRISM_PACKAGE],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT_S,
                )
            except subprocess.CalledProcessError as error:
                raise ProcessError(f"npm install {PRISM_PACKAGE} failed:\n{error.stderr[-2000:]}") from error
            except (OSError, subprocess.TimeoutExpired) as error:
                raise ProcessError(f"cannot install {PRISM_PACKAGE}: {error}") from error
    return PRISM_BIN


def _servable(spec: Path, workdir: Path) -> Path:
    """``spec`` as Prism should load it: a Swagger 2 ``basePath`` folded into the paths.

    Prism ignores ``basePath`` by design, so SendGrid's ``/mail/send`` would be served without the
    ``/v3`` every client puts in front of it. (OpenAPI 3 ``servers`` are left alone: Twilio's
    carry no path.)
    """
    document = json.loads(spec.read_text())
    base_path = document.get("basePath", "").rstrip("/")
    if document.get("swagger") != "2.0" or not base_path:
        return spec
    del document["basePath"]
    document["paths"] = {base_path + path: item for path, item in document["paths"].items()}
    folded = workdir / spec.name
    folded.write_text(json.dumps(document))
    return folded


class PrismMock(StartsAndStops):
    """A Prism mock server for one JSON API description (OpenAPI 3 or Swagger 2), on localhost."""

    def __init__(
        self,
        spec: Path,
        *,
        port: int | None = None,
        dynamic: bool = False,
        name: str | None = None,
        line_sink: LineSink | None = print_prefixed,
    ) -> None:
        self.spec = spec.resolve()
        self.port = port
        self.dynamic = dynamic
        # The prefix of Prism's output lines, which go to ``line_sink``.
        self.name = name or f"prism-{self.spec.stem}"
        self._line_sink = line_sink
        self._process: ManagedProcess | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def process(self) -> ManagedProcess | None:
        """The Prism process while started, for supervision alongside other processes."""
        return self._process

    @property
    def url(self) -> str:
        """The base URL to point a client at (known after ``start()`` when no port was given)."""
        if self.port is None:
            raise RuntimeError("PrismMock has no port until it is started")
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 90.0) -> None:
        """Install Prism if needed, start it and wait until it answers HTTP requests."""
        prism = ensure_prism()
        if self.port is None:
            self.port = free_port(HOST)
        self._workdir = tempfile.TemporaryDirectory(prefix="herald-prism-")
        argv = [str(prism), "mock", "-h", HOST, "-p", str(self.port), "--errors"]
        if self.dynamic:
            argv.append("--dynamic")
        argv.append(str(_servable(self.spec, Path(self._workdir.name))))
        self._process = ManagedProcess(self.name, argv, cwd=REPO_ROOT, line_sink=self._line_sink)
        self._process.start()
        try:
            with httpx.Client(timeout=2.0, verify=default_client_context()) as client:
                # Any answer will do (an unknown path gets a 404): Prism listens only once the spec is loaded.
                self._process.wait_until(
                    lambda: _answers(client, self.url), timeout=timeout, what=f"Prism answered on {self.url}"
                )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop Prism and remove the description copy it served, if any."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        client.get(url)
    except httpx.HTTPError:
        return False
    return True
