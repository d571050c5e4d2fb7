"""Running the PostgreSQL client programs against a Herald database URL."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit


class BackupError(Exception):
    """A backup or restore that did not succeed; the process exits with ``exit_code``."""

    exit_code = 1


class Refused(BackupError):
    """An operation refused before it changed anything (a restore over a non-empty database)."""

    exit_code = 2


@dataclass(frozen=True)
class Connection:
    """A database URL split for libpq: the URL without its password, and the password."""

    url: str
    password: str | None

    @classmethod
    def of(cls, url: str) -> Connection:
        """Split ``url``; the password goes to the programs by PGPASSWORD, so ``ps`` never shows it."""
        parts = urlsplit(url)
        userinfo, at, hosts = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        netloc = f"{user}{at}{hosts}" if user else hosts
        return cls(urlunsplit(parts._replace(netloc=netloc)), unquote(password) if password else None)

    @property
    def database(self) -> str:
        """The database name, for logs and the manifest (never the credentials)."""
        return unquote(urlsplit(self.url).path.lstrip("/"))


def program(name: str, bin_dir: Path | None) -> str:
    """The path of client program ``name``: in ``bin_dir`` if given, else on PATH."""
    found = shutil.which(name, path=str(bin_dir) if bin_dir is not None else None)
    if found is None:
        raise BackupError(
            f"{name} not found{f' in {bin_dir}' if bin_dir else ' on PATH'}: install the PostgreSQL client "
            "programs of the server's major version or newer (Debian: postgresql-client)"
        )
    return found


async def run(name: str, arguments: list[str], *, bin_dir: Path | None, password: str | None = None) -> str:
    """Run client program ``name`` to completion; its standard output, or BackupError with its errors."""
    environment = dict(os.environ)
    if password is not None:
        environment["PGPASSWORD"] = password
    process = await asyncio.create_subprocess_exec(
        program(name, bin_dir),
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise BackupError(f"{name} failed (exit status {process.returncode}): {stderr.decode().strip()}")
    return stdout.decode()
