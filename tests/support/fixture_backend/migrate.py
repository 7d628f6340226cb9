#!/usr/bin/env python3
"""Stand-in for `npx prisma migrate deploy` inside the test stack's backend container.

Forward-only and idempotent: applies every migration directory under
/app/prisma/migrations that _prisma_migrations does not record as finished, in name order,
each in one transaction with ON_ERROR_STOP, and records it. Talks to the database named by
DATABASE_URL with psql; the password travels in PGPASSWORD, never in argv.
"""

import hashlib
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

MIGRATIONS = Path(os.environ.get("PRISMA_MIGRATIONS_DIR", "/app/prisma/migrations"))

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum" VARCHAR(64) NOT NULL,
    "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL,
    "logs" TEXT,
    "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
"""


def pg_env():
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        print("Error: P1012\nerror: Environment variable not found or invalid: DATABASE_URL.", file=sys.stderr)
        sys.exit(1)
    env = dict(os.environ)
    env.update(PGHOST=unquote(parts.hostname or "localhost"), PGPORT=str(parts.port or 5432),
               PGUSER=unquote(parts.username or ""), PGPASSWORD=unquote(parts.password or ""),
               PGDATABASE=unquote(parts.path.lstrip("/")), PGCONNECT_TIMEOUT="5")
    return env, parts


def lit(value):
    return "'" + value.replace("'", "''") + "'"


def psql(env, sql=None, file=None, single_transaction=False):
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    if single_transaction:
        cmd.append("-1")
    if file:
        cmd += ["-f", str(file)]
    return subprocess.run(cmd, input=sql, capture_output=True, text=True, env=env)


def main():
    env, parts = pg_env()
    print("Prisma schema loaded from prisma/schema.prisma")
    print(f'Datasource "db": PostgreSQL database "{env["PGDATABASE"]}", schema "public" at '
          f'"{env["PGHOST"]}:{env["PGPORT"]}"')
    print()
    dirs = sorted(p for p in MIGRATIONS.iterdir() if (p / "migration.sql").is_file())
    print(f"{len(dirs)} migration{'s' if len(dirs) != 1 else ''} found in prisma/migrations")
    print()

    r = psql(env, CREATE_TABLE)
    if r.returncode != 0:
        print(f"Error: P1001: Can't reach database server at `{env['PGHOST']}:{env['PGPORT']}`\n{r.stderr.strip()}",
              file=sys.stderr)
        return 1
    r = psql(env, 'SELECT migration_name, (finished_at IS NOT NULL), (rolled_back_at IS NOT NULL) '
                  'FROM "_prisma_migrations" ORDER BY started_at')
    if r.returncode != 0:
        print(f"Error: {r.stderr.strip()}", file=sys.stderr)
        return 1
    applied, failed = set(), []
    for line in r.stdout.splitlines():
        name, finished, rolled_back = line.split("|")
        if finished == "t" and rolled_back == "f":
            applied.add(name)
        elif finished == "f" and rolled_back == "f":
            failed.append(name)
    if failed:
        print(f"Error: P3009\n\nmigrate found failed migrations in the target database, new migrations "
              f"will not be applied.\nThe `{failed[0]}` migration started at ... failed", file=sys.stderr)
        return 1

    pending = [d for d in dirs if d.name not in applied]
    if not pending:
        print("No pending migrations to apply.")
        return 0
    done = []
    for d in pending:
        sql_file = d / "migration.sql"
        checksum = hashlib.sha256(sql_file.read_bytes()).hexdigest()
        row_id = str(uuid.uuid4())
        print(f"Applying migration `{d.name}`")
        psql(env, f'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, '
                  f'applied_steps_count) VALUES ({lit(row_id)}, {lit(checksum)}, {lit(d.name)}, now(), 0)')
        r = psql(env, file=sql_file, single_transaction=True)
        if r.returncode != 0:
            psql(env, f'UPDATE "_prisma_migrations" SET logs = {lit(r.stderr)} WHERE id = {lit(row_id)}')
            print(f"Error: P3018\n\nA migration failed to apply. New migrations cannot be applied before the "
                  f"error is recovered from.\n\nMigration name: {d.name}\n\nDatabase error:\n{r.stderr.strip()}",
                  file=sys.stderr)
            return 1
        psql(env, f'UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 '
                  f'WHERE id = {lit(row_id)}')
        done.append(d.name)
    print()
    print("The following migration(s) have been applied:")
    print()
    print("migrations/")
    for name in done:
        print(f"  └─ {name}/")
        print("    └─ migration.sql")
    print("      ")
    print("All migrations have been successfully applied.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
