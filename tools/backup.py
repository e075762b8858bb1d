"""`make backup` / `make restore`: the database (pg_dump's custom format) and the uploads folder, in one directory.

    python -m tools.backup backup [DIR]           # default BACKUP_DIR, else ./backups/<UTC timestamp>/
    python -m tools.backup restore DIR [--force]  # FORCE=1 from make

The database is the one the settings use (`DATABASE_URL`, or the embedded one locally), the uploads folder is
`MEDIA_ROOT`. A backup directory holds `database.dump` (`pg_dump --format=custom`), `media.tar` (the folder's
contents) and `manifest.json` (when, from which server, what). A restore goes into an empty database and an empty
uploads folder; a non-empty one is refused, naming what it holds, unless forced, which first drops every schema of
the database and every file of the folder, so that the result is the backup and nothing else. The database is
restored in one transaction (`pg_restore --single-transaction --exit-on-error`): a restore that fails leaves the
database as it was. Ownership and grants are not restored (`--no-owner --no-acl`): the restoring role owns
everything, so a backup of one deployment restores under another's database user.

pg_dump and pg_restore must be of the server's major version (a newer pg_dump writes archives an older pg_restore
cannot read): `PG_BIN_DIR` if set, else the first of the embedded server's binaries, the Debian layout's
`/usr/lib/postgresql/<major>/bin` and `PATH` whose pg_dump has that major.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DATABASE_FILE = "database.dump"
MEDIA_FILE = "media.tar"
MANIFEST_FILE = "manifest.json"
# The schemas of the server itself; any other schema (public, ours) is data a restore would mix with.
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")


class BackupError(RuntimeError):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Database:
    """The connection parameters of one database, as libpq takes them."""

    host: str
    port: str
    user: str
    password: str
    name: str

    @classmethod
    def from_url(cls, url: str) -> Database:
        info = psycopg.conninfo.conninfo_to_dict(url)
        return cls(
            host=info.get("host") or "127.0.0.1",
            port=str(info.get("port") or 5432),
            user=info.get("user") or "postgres",
            password=info.get("password") or "",
            name=info["dbname"],
        )

    @classmethod
    def from_settings(cls, settings_dict: dict) -> Database:
        return cls(
            host=settings_dict.get("HOST") or "127.0.0.1",
            port=str(settings_dict.get("PORT") or 5432),
            user=settings_dict.get("USER") or "postgres",
            password=settings_dict.get("PASSWORD") or "",
            name=settings_dict["NAME"],
        )

    def connect(self, *, dbname: str | None = None) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=dbname or self.name,
            connect_timeout=10,
            autocommit=True,
        )

    def libpq_env(self) -> dict[str, str]:
        """The environment pg_dump and pg_restore read: the password stays off their command lines."""
        env = {**os.environ, "PGHOST": self.host, "PGPORT": self.port, "PGUSER": self.user, "PGDATABASE": self.name}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


# --- The binaries ------------------------------------------------------------------------------------------------


def server_major(database: Database) -> int:
    with database.connect() as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def _binary_major(program: Path) -> int | None:
    try:
        output = subprocess.run([str(program), "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"\) (\d+)", output)  # "pg_dump (PostgreSQL) 15.20 (Debian ...)"
    return int(match.group(1)) if match else None


def _candidate_bin_dirs(major: int) -> list[Path]:
    dirs = []
    with contextlib.suppress(ImportError):
        from config.embedded import _postgres_bin_path

        dirs.append(_postgres_bin_path())
    dirs.append(Path(f"/usr/lib/postgresql/{major}/bin"))
    if found := shutil.which("pg_dump"):
        dirs.append(Path(found).resolve().parent)
    return dirs


def postgres_bin_dir(major: int) -> Path:
    """The folder of a pg_dump, pg_restore and psql of PostgreSQL `major` (see the module docstring)."""
    if configured := os.environ.get("PG_BIN_DIR"):
        return Path(configured)
    tried = []
    for folder in _candidate_bin_dirs(major):
        found = _binary_major(folder / "pg_dump")
        if found == major and (folder / "pg_restore").exists() and (folder / "psql").exists():
            return folder
        tried.append(f"{folder} ({'PostgreSQL ' + str(found) if found else 'none'})")
    raise BackupError(
        f"No pg_dump of PostgreSQL {major} (the server's version) found; tried {', '.join(tried)}. "
        f"Install the PostgreSQL {major} client or set PG_BIN_DIR to its bin folder."
    )


# --- Backup ------------------------------------------------------------------------------------------------------


def default_directory() -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return ROOT / "backups" / stamp


def backup(database: Database, media_root: Path, directory: Path) -> dict:
    """Write `database`'s dump and `media_root`'s files into `directory` (which must not hold a backup yet);
    return the manifest written beside them."""
    if (directory / MANIFEST_FILE).exists() or (directory / DATABASE_FILE).exists():
        raise BackupError(f"{directory} already holds a backup; give another BACKUP_DIR")
    directory.mkdir(parents=True, exist_ok=True)
    major = server_major(database)
    bin_dir = postgres_bin_dir(major)
    subprocess.run(
        [str(bin_dir / "pg_dump"), "--format=custom", "--file", str(directory / DATABASE_FILE)],
        env=database.libpq_env(),
        check=True,
    )
    media_files = _tar_media(media_root, directory / MEDIA_FILE)
    manifest = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": database.name,
        "server_major": major,
        "pg_dump": str(bin_dir / "pg_dump"),
        "database_bytes": (directory / DATABASE_FILE).stat().st_size,
        "media_files": media_files,
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _tar_media(media_root: Path, target: Path) -> int:
    count = 0
    with tarfile.open(target, "w") as archive:
        if media_root.is_dir():
            for path in sorted(media_root.rglob("*")):
                archive.add(path, arcname=str(path.relative_to(media_root)), recursive=False)
                count += path.is_file()
    return count


# --- Restore -----------------------------------------------------------------------------------------------------


def _user_schemas(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> ALL(%s) AND nspname NOT LIKE 'pg\\_%%' ORDER BY 1",
        [list(SYSTEM_SCHEMAS)],
    ).fetchall()
    return [name for (name,) in rows]


def _relation_count(conn: psycopg.Connection) -> int:
    return conn.execute(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname <> ALL(%s) AND n.nspname NOT LIKE 'pg\\_%%'
        """,
        [list(SYSTEM_SCHEMAS)],
    ).fetchone()[0]


def ensure_database_exists(database: Database) -> None:
    with database.connect(dbname="postgres") as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database.name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))


def restore(directory: Path, database: Database, media_root: Path, *, force: bool = False) -> None:
    """Restore the backup in `directory` into `database` and `media_root`; refused (nothing changed) when either
    holds anything, unless `force`, which empties both first."""
    dump = directory / DATABASE_FILE
    if not dump.exists():
        raise BackupError(f"{directory} holds no {DATABASE_FILE}: not a backup made by `make backup`")
    ensure_database_exists(database)
    with database.connect() as conn:
        relations = _relation_count(conn)
    media_entries = sorted(media_root.iterdir()) if media_root.is_dir() else []
    if not force and (relations or media_entries):
        held = []
        if relations:
            held.append(f"database {database.name} has {relations} tables, views or sequences")
        if media_entries:
            held.append(f"{media_root} has {len(media_entries)} entries")
        raise BackupError(
            f"Refusing to restore over existing data: {'; '.join(held)}. Restore into an empty database and folder, "
            "or replace them with FORCE=1 make restore (python -m tools.backup restore --force)."
        )
    bin_dir = postgres_bin_dir(server_major(database))
    # pg_restore writes the SQL, psql runs it in one transaction with the emptying first: a restore that fails
    # leaves the database as it was, forced or not.
    emptying = []
    if force and relations:
        with database.connect() as conn:
            emptying = [f"DROP SCHEMA {sql.Identifier(name).as_string(conn)} CASCADE;" for name in _user_schemas(conn)]
        emptying.append("CREATE SCHEMA public;")
    script = subprocess.Popen(
        [str(bin_dir / "pg_restore"), "--no-owner", "--no-acl", "--file=-", str(dump)], stdout=subprocess.PIPE
    )
    psql = [str(bin_dir / "psql"), "--no-psqlrc", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1"]
    for statement in emptying:
        psql += ["--command", statement]
    applied = subprocess.run(
        [*psql, "--file=-"], stdin=script.stdout, env=database.libpq_env(), stdout=subprocess.DEVNULL
    )
    script.stdout.close()
    if script.wait() or applied.returncode:
        raise BackupError(
            f"The restore failed (pg_restore exit {script.returncode}, psql exit {applied.returncode}; their "
            f"messages are above): database {database.name} and {media_root} are unchanged"
        )
    if force:
        for entry in media_entries:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    media_root.mkdir(parents=True, exist_ok=True)
    if (directory / MEDIA_FILE).exists():
        with tarfile.open(directory / MEDIA_FILE) as archive:
            archive.extractall(media_root, filter="data")  # no absolute paths, no "..", no device files


# --- Command line ------------------------------------------------------------------------------------------------


def _configured() -> tuple[Database, Path]:
    """The database and uploads folder of the settings (the embedded servers locally, when nothing is set)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    import django
    from django.conf import settings

    django.setup()
    return Database.from_settings(settings.DATABASES["default"]), Path(settings.MEDIA_ROOT)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.backup", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("backup", help="dump the database and the uploads into a new directory")
    make.add_argument("directory", nargs="?", type=Path, help="default: BACKUP_DIR, else ./backups/<timestamp>/")
    back = commands.add_parser("restore", help="restore a backup directory into an empty database and folder")
    back.add_argument("directory", type=Path)
    back.add_argument("--force", action="store_true", help="replace a database and folder that hold data")
    args = parser.parse_args(argv)
    database, media_root = _configured()
    try:
        if args.command == "backup":
            directory = args.directory or Path(os.environ.get("BACKUP_DIR") or default_directory())
            manifest = backup(database, media_root, directory)
            print(
                f"Backed up database {database.name} ({manifest['database_bytes']:,} bytes) and "
                f"{manifest['media_files']} files of {media_root} into {directory}"
            )
        else:
            restore(args.directory, database, media_root, force=args.force)
            print(f"Restored {args.directory} into database {database.name} and {media_root}")
    except (BackupError, psycopg.OperationalError) as error:
        print(error, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as error:
        print(f"{Path(error.cmd[0]).name} failed (exit {error.returncode}); see its messages above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
