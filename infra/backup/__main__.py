"""``python -m infra.backup dump|verify|restore``: see docs/operations/backups.md."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import asyncpg
import structlog

from infra.backup.archive import dump, restore, verify
from infra.backup.libpq import BackupError
from shared.config import HeraldSettings, load_settings
from shared.observability.logging import configure_logging

logger = structlog.get_logger("infra.backup")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.backup", description=__doc__)
    parser.add_argument(
        "--database-url",
        help="the database to dump or restore into (default: HERALD_DATABASE_URL, as the services read it)",
    )
    parser.add_argument("--bin-dir", type=Path, help="where pg_dump and pg_restore are (default: PATH)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dump", help="dump the database into FILE and write FILE.manifest.json").add_argument(
        "file", type=Path
    )
    commands.add_parser("verify", help="check FILE against its manifest (no database needed)").add_argument(
        "file", type=Path
    )
    restoring = commands.add_parser("restore", help="restore FILE into an empty database, then compare row counts")
    restoring.add_argument("file", type=Path)
    restoring.add_argument(
        "--force", action="store_true", help="restore over a database that is not empty (drops what the dump holds)"
    )
    restoring.add_argument(
        "--no-owner", action="store_true", help="leave out ownership and grants (roles differ on the target server)"
    )
    restoring.add_argument("--jobs", type=int, default=1, help="parallel restore jobs (more than 1: not atomic)")
    return parser


async def _run(arguments: argparse.Namespace) -> None:
    if arguments.command == "verify":
        await verify(arguments.file, bin_dir=arguments.bin_dir)
        return
    url = arguments.database_url or load_settings(HeraldSettings).database_url
    if arguments.command == "dump":
        await dump(url, arguments.file, bin_dir=arguments.bin_dir)
    else:
        await restore(
            arguments.file,
            url,
            force=arguments.force,
            no_owner=arguments.no_owner,
            jobs=arguments.jobs,
            bin_dir=arguments.bin_dir,
        )


def main() -> int:
    """Run one command; exit status 0 when done, 1 when it failed, 2 when it refused."""
    arguments = _parser().parse_args()
    configure_logging("backup")
    try:
        asyncio.run(_run(arguments))
    except BackupError as error:
        logger.error("backup_failed", command=arguments.command, reason=str(error))
        return error.exit_code
    except (OSError, asyncpg.PostgresError) as error:
        logger.error("backup_failed", command=arguments.command, reason=f"{type(error).__name__}: {error}")
        return 1
    return 0


raise SystemExit(main())
