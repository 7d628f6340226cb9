"""A Fovea-shaped PostgreSQL schema, written as Prisma-style migrations.

The table and column names follow the real install (Prisma models mapped to snake_case
tables, quoted camelCase columns); the SQL itself is ours. Callers pipe the SQL into psql.
"""

from __future__ import annotations

import hashlib
import uuid

# Prisma creates this table itself before it applies the first migration.
PRISMA_MIGRATIONS_TABLE_SQL = """\
CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                  VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"            VARCHAR(64) NOT NULL,
    "finished_at"         TIMESTAMPTZ,
    "migration_name"      VARCHAR(255) NOT NULL,
    "logs"                TEXT,
    "rolled_back_at"      TIMESTAMPTZ,
    "started_at"          TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count" INTEGER NOT NULL DEFAULT 0
);
"""

_INIT = """\
-- CreateExtension
CREATE EXTENSION IF NOT EXISTS "vector";

-- CreateTable
CREATE TABLE "users" (
    "id" TEXT NOT NULL,
    "username" TEXT NOT NULL,
    "email" TEXT,
    "passwordHash" TEXT NOT NULL,
    "displayName" TEXT NOT NULL,
    "isAdmin" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "sessions" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "token" TEXT NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "sessions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" TEXT NOT NULL,
    "userId" TEXT,
    "provider" TEXT NOT NULL,
    "keyName" TEXT NOT NULL,
    "encryptedKey" TEXT NOT NULL,
    "keyMask" TEXT NOT NULL,
    "isActive" BOOLEAN NOT NULL DEFAULT true,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "api_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "personas" (
    "id" TEXT NOT NULL,
    "userId" TEXT,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "informationNeed" TEXT NOT NULL,
    "details" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "personas_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ontologies" (
    "id" TEXT NOT NULL,
    "personaId" TEXT NOT NULL,
    "entityTypes" JSONB NOT NULL DEFAULT '[]',
    "eventTypes" JSONB NOT NULL DEFAULT '[]',
    "roleTypes" JSONB NOT NULL DEFAULT '[]',
    "relationTypes" JSONB NOT NULL DEFAULT '[]',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "ontologies_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "world_state" (
    "id" TEXT NOT NULL,
    "userId" TEXT,
    "entities" JSONB NOT NULL DEFAULT '[]',
    "events" JSONB NOT NULL DEFAULT '[]',
    "times" JSONB NOT NULL DEFAULT '[]',
    "entityCollections" JSONB NOT NULL DEFAULT '[]',
    "relations" JSONB NOT NULL DEFAULT '[]',
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "world_state_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "videos" (
    "id" TEXT NOT NULL,
    "filename" TEXT NOT NULL,
    "path" TEXT NOT NULL,
    "title" TEXT,
    "description" TEXT,
    "duration" DOUBLE PRECISION,
    "frameRate" DOUBLE PRECISION,
    "width" INTEGER,
    "height" INTEGER,
    "fileSize" BIGINT,
    "mimeType" TEXT,
    "metadata" JSONB,
    "uploadedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "videos_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "video_summaries" (
    "id" TEXT NOT NULL,
    "videoId" TEXT NOT NULL,
    "personaId" TEXT NOT NULL,
    "summary" TEXT NOT NULL,
    "visualAnalysis" TEXT,
    "keyFrames" JSONB,
    "confidence" DOUBLE PRECISION,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "video_summaries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "annotations" (
    "id" TEXT NOT NULL,
    "videoId" TEXT NOT NULL,
    "personaId" TEXT,
    "type" TEXT NOT NULL,
    "label" TEXT NOT NULL,
    "frameStart" INTEGER NOT NULL,
    "frameEnd" INTEGER NOT NULL,
    "boundingBox" JSONB,
    "data" JSONB NOT NULL,
    "confidence" DOUBLE PRECISION,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "annotations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "users_username_key" ON "users"("username");
CREATE UNIQUE INDEX "sessions_token_key" ON "sessions"("token");
CREATE UNIQUE INDEX "ontologies_personaId_key" ON "ontologies"("personaId");
CREATE UNIQUE INDEX "videos_filename_key" ON "videos"("filename");
CREATE UNIQUE INDEX "video_summaries_videoId_personaId_key" ON "video_summaries"("videoId", "personaId");

-- AddForeignKey
ALTER TABLE "sessions" ADD CONSTRAINT "sessions_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "personas" ADD CONSTRAINT "personas_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "ontologies" ADD CONSTRAINT "ontologies_personaId_fkey" FOREIGN KEY ("personaId") REFERENCES "personas"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "world_state" ADD CONSTRAINT "world_state_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
ALTER TABLE "video_summaries" ADD CONSTRAINT "video_summaries_videoId_fkey" FOREIGN KEY ("videoId") REFERENCES "videos"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "video_summaries" ADD CONSTRAINT "video_summaries_personaId_fkey" FOREIGN KEY ("personaId") REFERENCES "personas"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "annotations" ADD CONSTRAINT "annotations_videoId_fkey" FOREIGN KEY ("videoId") REFERENCES "videos"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "annotations" ADD CONSTRAINT "annotations_personaId_fkey" FOREIGN KEY ("personaId") REFERENCES "personas"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"""

_IMPORT_HISTORY = """\
-- CreateTable
CREATE TABLE "import_history" (
    "id" TEXT NOT NULL,
    "userId" TEXT,
    "fileName" TEXT NOT NULL,
    "importType" TEXT NOT NULL,
    "itemsImported" INTEGER NOT NULL DEFAULT 0,
    "itemsSkipped" INTEGER NOT NULL DEFAULT 0,
    "result" JSONB,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "import_history_pkey" PRIMARY KEY ("id")
);

-- AddForeignKey
ALTER TABLE "import_history" ADD CONSTRAINT "import_history_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;
"""

_CLAIMS = """\
-- CreateTable
CREATE TABLE "claims" (
    "id" TEXT NOT NULL,
    "summaryId" TEXT NOT NULL,
    "parentClaimId" TEXT,
    "text" TEXT NOT NULL,
    "claimType" TEXT NOT NULL,
    "confidence" DOUBLE PRECISION,
    "textSpans" JSONB,
    "embedding" vector(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "claims_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "claim_relations" (
    "id" TEXT NOT NULL,
    "sourceClaimId" TEXT NOT NULL,
    "targetClaimId" TEXT NOT NULL,
    "relationType" TEXT NOT NULL,
    "confidence" DOUBLE PRECISION,
    "notes" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "claim_relations_pkey" PRIMARY KEY ("id")
);

-- AddForeignKey
ALTER TABLE "claims" ADD CONSTRAINT "claims_summaryId_fkey" FOREIGN KEY ("summaryId") REFERENCES "video_summaries"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "claims" ADD CONSTRAINT "claims_parentClaimId_fkey" FOREIGN KEY ("parentClaimId") REFERENCES "claims"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "claim_relations" ADD CONSTRAINT "claim_relations_sourceClaimId_fkey" FOREIGN KEY ("sourceClaimId") REFERENCES "claims"("id") ON DELETE CASCADE ON UPDATE CASCADE;
ALTER TABLE "claim_relations" ADD CONSTRAINT "claim_relations_targetClaimId_fkey" FOREIGN KEY ("targetClaimId") REFERENCES "claims"("id") ON DELETE CASCADE ON UPDATE CASCADE;
"""

_INDEXES = """\
-- CreateIndex
CREATE INDEX "annotations_videoId_idx" ON "annotations"("videoId");
CREATE INDEX "annotations_personaId_idx" ON "annotations"("personaId");
CREATE INDEX "claims_summaryId_idx" ON "claims"("summaryId");
CREATE INDEX "sessions_userId_idx" ON "sessions"("userId");
"""

# In order; together they build the whole schema (after PRISMA_MIGRATIONS_TABLE_SQL).
SCHEMA_MIGRATIONS: list[tuple[str, str]] = [
    ("20250101000000_init", _INIT),
    ("20250115000000_import_history", _IMPORT_HISTORY),
    ("20250201000000_claims", _CLAIMS),
    ("20250301000000_query_indexes", _INDEXES),
]

# A newer migration that a freshly built backend image would bundle but the database has
# not seen yet: `migrate deploy` after a restore applies it.
NEXT_MIGRATION: tuple[str, str] = (
    "20250401000000_video_checksums",
    """\
-- AlterTable
ALTER TABLE "videos" ADD COLUMN "checksum" TEXT;

-- CreateTable
CREATE TABLE "video_tags" (
    "id" TEXT NOT NULL,
    "videoId" TEXT NOT NULL,
    "tag" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "video_tags_pkey" PRIMARY KEY ("id")
);

-- AddForeignKey
ALTER TABLE "video_tags" ADD CONSTRAINT "video_tags_videoId_fkey" FOREIGN KEY ("videoId") REFERENCES "videos"("id") ON DELETE CASCADE ON UPDATE CASCADE;
""",
)

# Tables of the schema SCHEMA_MIGRATIONS builds, in dependency order.
TABLES: list[str] = [
    "users", "sessions", "api_keys", "personas", "ontologies", "world_state", "videos",
    "video_summaries", "annotations", "import_history", "claims", "claim_relations",
    "_prisma_migrations",
]


def migration_checksum(sql: str) -> str:
    """Prisma's checksum: sha256 (hex) of the migration.sql file's bytes."""
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


def schema_sql() -> str:
    """The whole schema as one script: the migrations table, then every migration."""
    return PRISMA_MIGRATIONS_TABLE_SQL + "\n".join(sql for _, sql in SCHEMA_MIGRATIONS)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def record_migrations_sql(names: list[str] | tuple[str, ...] | None = None) -> str:
    """INSERTs recording `names` (default: all SCHEMA_MIGRATIONS) as applied, finished.

    Deterministic: ids and timestamps derive from the migration name.
    """
    known = dict(SCHEMA_MIGRATIONS + [NEXT_MIGRATION])
    if names is None:
        names = [name for name, _ in SCHEMA_MIGRATIONS]
    rows = []
    for name in names:
        checksum = migration_checksum(known.get(name, name))
        row_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"fovea-migration:{name}"))
        stamp = f"{name[0:4]}-{name[4:6]}-{name[6:8]} {name[8:10]}:{name[10:12]}:{name[12:14]}+00"
        if not name[:14].isdigit():
            stamp = "2025-01-01 00:00:00+00"
        rows.append(
            f"({_lit(row_id)}, {_lit(checksum)}, {_lit(stamp)}::timestamptz + interval '1 second', "
            f"{_lit(name)}, NULL, NULL, {_lit(stamp)}::timestamptz, 1)"
        )
    if not rows:
        return ""
    return (
        'INSERT INTO "_prisma_migrations" ("id", "checksum", "finished_at", "migration_name", '
        '"logs", "rolled_back_at", "started_at", "applied_steps_count") VALUES\n    '
        + ",\n    ".join(rows)
        + ";\n"
    )
