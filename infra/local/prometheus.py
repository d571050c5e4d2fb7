"""A local Prometheus for ``make up``: Debian's ``prometheus`` scraping every Herald service's
``/metrics`` with Herald's alerting rules loaded, so a person sees targets, metrics and alerts.

Its configuration and its storage live in a temporary folder, removed when it stops. Each service is
its own job, ``herald-<service>``, as the chart's ServiceMonitors name them for a release called
``herald`` (the rules and their tests group by ``job``). Without a ``prometheus`` program it is not
started, and :meth:`LocalPrometheus.describe` says how to install one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx
import structlog

from infra.local.processes import LineSink, ManagedProcess, StartsAndStops, free_port, port_accepts, print_prefixed

log = structlog.get_logger(__name__)

RULES_FILE = Path(__file__).resolve().parents[2] / "infra" / "alerts" / "herald-rules.yaml"
INSTALL_HINT = "apt-get install -y --no-install-recommends prometheus (Debian's package), then make up again"
# A service that does not answer within this share of the scrape interval counts as down (the timeout
# must be below the interval).
SCRAPE_TIMEOUT_SHARE = 0.6


def prometheus_config(
    targets: Mapping[str, int], interval_s: float, rules_file: Path = RULES_FILE
) -> dict[str, object]:
    """Prometheus' configuration: one job for each service of ``targets`` (its ``/metrics`` port on
    127.0.0.1) scraped every ``interval_s``, and ``rules_file`` with its symbolic links resolved."""
    interval = f"{round(interval_s * 1000)}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{round(interval_s * SCRAPE_TIMEOUT_SHARE * 1000)}ms",
            # Rules evaluated as often: an alert goes pending one scrape after its cause.
            "evaluation_interval": interval,
        },
        "rule_files": [str(rules_file.resolve())],
        "scrape_configs": [
            {"job_name": f"herald-{service}", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for service, port in targets.items()
        ],
    }


class LocalPrometheus(StartsAndStops):
    """Prometheus on 127.0.0.1, on ``port`` unless something answers there (Debian's package starts its
    own on 9090 where a service manager runs), else on a free port."""

    def __init__(
        self,
        targets: Mapping[str, int],
        port: int,
        *,
        interval_s: float = 5.0,
        rules_file: Path = RULES_FILE,
        line_sink: LineSink | None = print_prefixed,
    ) -> None:
        self.targets = dict(targets)
        self.port = port
        self.interval_s = interval_s
        self.rules_file = rules_file
        self._line_sink = line_sink
        found = shutil.which("prometheus")
        self.binary = Path(found) if found else None
        self.folder: Path | None = None
        self.process: ManagedProcess | None = None
        # Where its pages are: Debian's build serves the classic ones under /classic (and no others).
        self.pages = ""

    @property
    def url(self) -> str:
        """Its web page and API: ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Write its configuration and start it (nothing without a ``prometheus`` program); wait until
        it is ready, its rules loaded (a rule it cannot load makes it exit, and this raises
        :class:`~infra.local.processes.ProcessError` with its output)."""
        if self.binary is None:
            log.warning("no prometheus program: not started", install=INSTALL_HINT)
            return
        if port_accepts("127.0.0.1", self.port):
            taken, self.port = self.port, free_port()
            log.info("prometheus port taken, using another", taken=taken, port=self.port)
        self.folder = Path(tempfile.mkdtemp(prefix="herald-prometheus-"))
        config = self.folder / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(
            json.dumps(prometheus_config(self.targets, self.interval_s, self.rules_file), indent=2) + "\n"
        )
        self.process = ManagedProcess(
            "prometheus",
            [
                str(self.binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                # Its start-up chatter would bury the services' lines; warnings and errors still show.
                "--log.level=warn",
            ],
            line_sink=self._line_sink,
        )
        self.process.start()
        self.process.wait_http_ready(f"{self.url}/-/ready", timeout=30)
        if httpx.get(f"{self.url}/classic/targets", timeout=5).status_code == 200:
            self.pages = "/classic"
        log.info("prometheus ready", url=self.url, config=str(config))

    def stop(self) -> None:
        """Stop it and remove its folder (configuration and scraped series)."""
        if self.process is not None:
            self.process.stop(grace=10)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def describe(self) -> list[str]:
        """Banner lines: where to see targets and alerts, or how to get Prometheus."""
        if self.process is None:
            return [f"  Prometheus: not started, no prometheus program: {INSTALL_HINT}"]
        pages = self.url + self.pages
        return [
            f"  Prometheus: {self.url} (each service scraped every {self.interval_s:g} s; targets {pages}/targets, "
            f"Herald's alert rules {pages}/alerts)"
        ]
