"""Deterministic Fovea-shaped sandbox data: seed SQL for the database, blob files for the volume.

`seed_sql(scale, videos, seed)` returns plain SQL (INSERT ... SELECT FROM generate_series) to
pipe into psql after the schema. The same arguments give the same rows, byte for byte.
scale=1 is small (tens to hundreds of rows per table); annotations carry a few hundred bytes
of JSON each, so a large scale (thousands) reaches hundreds of MB of dump.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

ADMIN_USERNAME = "admin"
# Users other than the admin get the password USER_PASSWORD_TEMPLATE.format(i=N), N >= 1.
USER_PASSWORD_TEMPLATE = "fovea-user-{i}"

_SALT_PREFIX = "fovea-sandbox"


def password_hash(password: str, salt: str) -> str:
    """The sandbox's stored password form: sha256$<salt>$<hex sha256(salt + password)>."""
    digest = hashlib.sha256((salt + password).encode("utf-8")).hexdigest()
    return f"sha256${salt}${digest}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt, _digest = stored.split("$", 2)
    except ValueError:
        return False
    return scheme == "sha256" and password_hash(password, salt) == stored


def _lit(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def counts(scale: int, n_videos: int) -> dict[str, int]:
    """How many rows seed_sql(scale, videos) inserts per table."""
    scale = max(1, int(scale))
    n_users = 4 + scale
    n_personas = 2 * n_users
    n_videos = n_videos or 10 * scale
    n_summaries = 2 * n_videos
    return {
        "users": n_users,
        "sessions": 2 * n_users,
        "api_keys": n_users,
        "personas": n_personas,
        "ontologies": n_personas,
        "world_state": n_users,
        "videos": n_videos,
        "video_summaries": n_summaries,
        "annotations": 200 * scale,
        "import_history": 3 + scale,
        "claims": 100 * scale,
        "claim_relations": 50 * scale,
    }


def seed_sql(
    scale: int,
    videos: list[tuple[str, str, int]] | None = None,
    seed: int = 0,
    *,
    admin_password: str = "admin",
) -> str:
    """Deterministic INSERTs for every Fovea table but _prisma_migrations.

    `videos` is a list of (filename, path, size) for the `videos` rows (e.g. from
    make_video_files, with path as the backend sees it); empty or None synthesises
    10*scale rows with no files behind them.
    """
    scale = max(1, int(scale))
    seed = int(seed)
    videos = list(videos or [])
    if not videos:
        videos = [(f"sample-{seed}-{i:05d}.mp4", f"/videos/sample-{seed}-{i:05d}.mp4", 1_000_000 + i)
                  for i in range(10 * scale)]
    n = counts(scale, len(videos))
    nu, np_, nv, ns = n["users"], n["personas"], n["videos"], n["video_summaries"]
    nc = n["claims"]
    s = seed

    def uid(kind: str, expr: str) -> str:
        return f"md5('{s}:{kind}:' || ({expr}))::uuid::text"

    def ts(expr: str, minutes: int = 37) -> str:
        return f"(timestamp '2025-01-01 00:00:00' + ({expr}) * interval '{minutes} minutes')"

    def pick(words: list[str], expr: str) -> str:
        arr = "ARRAY[" + ", ".join(_lit(w) for w in words) + "]"
        return f"({arr})[1 + ((({expr}) + {s}) % {len(words)})]"

    admin_salt = hashlib.sha256(f"{_SALT_PREFIX}:{s}:admin".encode()).hexdigest()[:16]
    admin_hash = password_hash(admin_password, admin_salt)

    out: list[str] = []
    out.append(f"-- fovea-tui sandbox seed: scale={scale:d} seed={s:d}\n")

    # users: #0 is the admin; the rest hash their password in SQL with the same scheme.
    out.append(f"""\
INSERT INTO "users" ("id", "username", "email", "passwordHash", "displayName", "isAdmin", "createdAt", "updatedAt")
SELECT {uid('user', 'i')},
       CASE WHEN i = 0 THEN {_lit(ADMIN_USERNAME)} ELSE 'user' || i END,
       CASE WHEN i = 0 THEN 'admin@fovea.test' ELSE 'user' || i || '@fovea.test' END,
       CASE WHEN i = 0 THEN {_lit(admin_hash)}
            ELSE 'sha256$' || substr(md5('{s}:salt:' || i), 1, 16) || '$' ||
                 encode(sha256(convert_to(substr(md5('{s}:salt:' || i), 1, 16) || 'fovea-user-' || i, 'UTF8')), 'hex')
       END,
       CASE WHEN i = 0 THEN 'Administrator' ELSE {pick(['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken'], 'i')} || ' ' || i END,
       i = 0, {ts('i', 91)}, {ts('i', 91)} + interval '1 day'
FROM generate_series(0, {nu - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "sessions" ("id", "userId", "token", "expiresAt", "createdAt")
SELECT {uid('session', 'i')}, {uid('user', f'i % {nu}')},
       md5('{s}:token:' || i) || md5('{s}:token2:' || i),
       {ts('i', 53)} + interval '30 days', {ts('i', 53)}
FROM generate_series(0, {n['sessions'] - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "api_keys" ("id", "userId", "provider", "keyName", "encryptedKey", "keyMask", "isActive", "createdAt", "updatedAt")
SELECT {uid('apikey', 'i')}, {uid('user', 'i')},
       {pick(['anthropic', 'openai', 'google'], 'i')}, 'key ' || i,
       'v1:' || encode(decode(md5('{s}:iv:' || i) || md5('{s}:ct:' || i) || md5('{s}:tag:' || i), 'hex'), 'base64'),
       'sk-...' || substr(md5('{s}:mask:' || i), 1, 4), i % 5 <> 4,
       {ts('i', 71)}, {ts('i', 71)}
FROM generate_series(0, {n['api_keys'] - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "personas" ("id", "userId", "name", "role", "informationNeed", "details", "createdAt", "updatedAt")
SELECT {uid('persona', 'i')}, {uid('user', 'i / 2')},
       {pick(['Maritime Analyst', 'Wildlife Biologist', 'Sports Scout', 'Traffic Engineer', 'Film Archivist', 'Safety Inspector', 'Journalist'], 'i')} || ' ' || i,
       {pick(['analyst', 'researcher', 'reviewer', 'annotator'], 'i')},
       'Track ' || {pick(['vessels', 'animals', 'players', 'vehicles', 'scenes', 'hazards'], 'i')} || ' and their interactions over time (persona ' || i || ')',
       CASE WHEN i % 3 = 0 THEN NULL ELSE 'Notes: ' || md5('{s}:persona-notes:' || i) END,
       {ts('i', 43)}, {ts('i', 43)}
FROM generate_series(0, {np_ - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "ontologies" ("id", "personaId", "entityTypes", "eventTypes", "roleTypes", "relationTypes", "createdAt", "updatedAt")
SELECT {uid('ontology', 'i')}, {uid('persona', 'i')},
       jsonb_build_array(
         jsonb_build_object('id', {uid('etype-a', 'i')}, 'name', {pick(['Person', 'Vessel', 'Animal', 'Vehicle'], 'i')}, 'gloss', jsonb_build_array(jsonb_build_object('type', 'text', 'content', 'A thing of interest ' || i))),
         jsonb_build_object('id', {uid('etype-b', 'i')}, 'name', {pick(['Location', 'Organization', 'Object'], 'i')}, 'gloss', jsonb_build_array(jsonb_build_object('type', 'text', 'content', 'Where or what ' || i)))),
       jsonb_build_array(jsonb_build_object('id', {uid('evtype', 'i')}, 'name', {pick(['Arrival', 'Departure', 'Collision', 'Handoff'], 'i')}, 'roles', jsonb_build_array('agent', 'patient'))),
       jsonb_build_array(jsonb_build_object('id', {uid('roletype', 'i')}, 'name', 'agent')),
       jsonb_build_array(jsonb_build_object('id', {uid('reltype', 'i')}, 'name', {pick(['near', 'follows', 'part-of'], 'i')}, 'symmetric', i % 2 = 0)),
       {ts('i', 43)}, {ts('i', 43)}
FROM generate_series(0, {np_ - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "world_state" ("id", "userId", "entities", "events", "times", "entityCollections", "relations", "createdAt", "updatedAt")
SELECT {uid('world', 'i')}, {uid('user', 'i')},
       (SELECT jsonb_agg(jsonb_build_object('id', {uid('entity', "i || ':' || k")}, 'name', 'Entity ' || i || '.' || k, 'typeAssignments', jsonb_build_array())) FROM generate_series(1, 3) AS k),
       (SELECT jsonb_agg(jsonb_build_object('id', {uid('event', "i || ':' || k")}, 'name', 'Event ' || i || '.' || k)) FROM generate_series(1, 2) AS k),
       jsonb_build_array(jsonb_build_object('id', {uid('time', 'i')}, 'type', 'instant', 'label', 'T' || i)),
       '[]'::jsonb, '[]'::jsonb,
       {ts('i', 97)}, {ts('i', 97)}
FROM generate_series(0, {n['world_state'] - 1}) AS i;
""")

    values = ",\n       ".join(
        f"({k}, {_lit(fn)}, {_lit(path)}, {int(size)})" for k, (fn, path, size) in enumerate(videos)
    )
    out.append(f"""\
INSERT INTO "videos" ("id", "filename", "path", "title", "description", "duration", "frameRate", "width", "height", "fileSize", "mimeType", "metadata", "uploadedAt", "createdAt", "updatedAt")
SELECT {uid('video', 'v.n')}, v.filename, v.path,
       'Video ' || v.n || ' ' || {pick(['harbour', 'savanna', 'stadium', 'crossroads', 'archive', 'warehouse'], 'v.n')},
       CASE WHEN v.n % 4 = 0 THEN NULL ELSE 'Uploaded for review, batch ' || (v.n / 5) END,
       30 + (v.n * 17) % 600 + 0.5, {pick(['25', '29.97', '30', '60'], 'v.n')}::float8,
       (ARRAY[1280, 1920, 3840])[1 + v.n % 3], (ARRAY[720, 1080, 2160])[1 + v.n % 3],
       v.size, CASE WHEN v.filename LIKE '%.webm' THEN 'video/webm' ELSE 'video/mp4' END,
       jsonb_build_object('codec', {pick(['h264', 'vp9', 'av1'], 'v.n')}, 'source', 'upload', 'n', v.n),
       {ts('v.n', 61)}, {ts('v.n', 61)}, {ts('v.n', 61)}
FROM (VALUES {values}) AS v(n, filename, path, size);
""")

    out.append(f"""\
INSERT INTO "video_summaries" ("id", "videoId", "personaId", "summary", "visualAnalysis", "keyFrames", "confidence", "createdAt", "updatedAt")
SELECT {uid('summary', 'i')}, {uid('video', 'i / 2')}, {uid('persona', f'(i / 2 + i % 2) % {np_}')},
       'Summary ' || i || ': ' || {pick(['two vessels approach the quay', 'a herd crosses the river', 'the home side presses high', 'traffic backs up at the junction', 'a crowd gathers at the gate'], 'i')} || '. ' || repeat(md5('{s}:summary:' || i), 3),
       'Frames show ' || {pick(['low light', 'rain', 'clear sky', 'motion blur'], 'i')},
       jsonb_build_array(i % 50, 50 + i % 50, 100 + i % 50),
       round(((i * 37) % 100)::numeric / 100, 2)::float8,
       {ts('i', 29)}, {ts('i', 29)}
FROM generate_series(0, {ns - 1}) AS i;
""")

    # annotations: the bulk of the data; ~400-500 bytes of JSON each.
    out.append(f"""\
INSERT INTO "annotations" ("id", "videoId", "personaId", "type", "label", "frameStart", "frameEnd", "boundingBox", "data", "confidence", "createdAt", "updatedAt")
SELECT {uid('annotation', 'i')}, {uid('video', f'i % {nv}')},
       CASE WHEN i % 10 = 9 THEN NULL ELSE {uid('persona', f'i % {np_}')} END,
       {pick(['entity', 'event', 'type', 'time'], 'i')},
       {pick(['person', 'vessel', 'vehicle', 'animal', 'ball', 'gate', 'crane', 'truck'], 'i')} || ' #' || (i % 97),
       (i * 13) % 5000, (i * 13) % 5000 + 1 + i % 240,
       jsonb_build_object('x', (i * 7) % 1200, 'y', (i * 11) % 700, 'width', 20 + i % 200, 'height', 20 + i % 150),
       jsonb_build_object(
         'description', 'Observed ' || repeat(md5('{s}:desc:' || i), 4),
         'attributes', jsonb_build_object('color', {pick(['red', 'blue', 'white', 'black', 'green'], 'i')}, 'occluded', i % 3 = 0, 'truncated', i % 5 = 0),
         'keyframes', jsonb_build_array(
           jsonb_build_object('frame', (i * 13) % 5000, 'x', (i * 7) % 1200, 'y', (i * 11) % 700),
           jsonb_build_object('frame', (i * 13) % 5000 + 12, 'x', (i * 7) % 1200 + 4, 'y', (i * 11) % 700 + 3)),
         'interpolation', 'linear',
         'source', {pick(['manual', 'model', 'import'], 'i')},
         'revision', 1 + i % 4),
       round(((i * 53) % 1000)::numeric / 1000, 3)::float8,
       {ts('i', 3)}, {ts('i', 3)}
FROM generate_series(0, {n['annotations'] - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "import_history" ("id", "userId", "fileName", "importType", "itemsImported", "itemsSkipped", "result", "createdAt")
SELECT {uid('import', 'i')}, {uid('user', f'i % {nu}')},
       'export-' || i || '.jsonl', {pick(['annotations', 'ontology', 'personas'], 'i')},
       10 + (i * 7) % 90, i % 4,
       jsonb_build_object('ok', i % 6 <> 5, 'warnings', jsonb_build_array()),
       {ts('i', 211)}
FROM generate_series(0, {n['import_history'] - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "claims" ("id", "summaryId", "parentClaimId", "text", "claimType", "confidence", "textSpans", "embedding", "createdAt", "updatedAt")
SELECT {uid('claim', 'i')}, {uid('summary', f'i % {ns}')},
       CASE WHEN i % 4 = 3 THEN {uid('claim', 'i - 1')} ELSE NULL END,
       'Claim ' || i || ': ' || {pick(['the vessel docks at 14:02', 'three animals cross', 'the striker is offside', 'the light turns red', 'the gate is opened'], 'i')},
       {pick(['observation', 'inference', 'hypothesis'], 'i')},
       round(((i * 29) % 100)::numeric / 100, 2)::float8,
       jsonb_build_array(jsonb_build_object('start', i % 40, 'end', i % 40 + 12)),
       ('[' || round(sin(i + {s})::numeric, 4) || ',' || round(cos(i + {s})::numeric, 4) || ',' || round(((i % 10) / 10.0)::numeric, 4) || ']')::vector,
       {ts('i', 11)}, {ts('i', 11)}
FROM generate_series(0, {nc - 1}) AS i;
""")

    out.append(f"""\
INSERT INTO "claim_relations" ("id", "sourceClaimId", "targetClaimId", "relationType", "confidence", "notes", "createdAt")
SELECT {uid('claimrel', 'i')}, {uid('claim', f'i % {nc}')}, {uid('claim', f'(i * 7 + 1) % {nc}')},
       {pick(['supports', 'contradicts', 'elaborates'], 'i')},
       round(((i * 31) % 100)::numeric / 100, 2)::float8,
       CASE WHEN i % 2 = 0 THEN NULL ELSE 'linked by reviewer' END,
       {ts('i', 17)}
FROM generate_series(0, {n['claim_relations'] - 1}) AS i;
""")
    return "\n".join(out)


def make_video_files(
    dir: str | os.PathLike,
    count: int,
    min_size: int = 1024,
    max_size: int = 64 * 1024,
    seed: int = 0,
) -> list[tuple[str, str, int]]:
    """Write `count` random blob files (deterministic for a seed) into `dir`.

    Also writes a `thumbnails/` subdirectory with a few small files and an `*.info.json`
    sidecar beside every third video. Returns (filename, relpath, size) for the videos only;
    relpath is relative to `dir` (the volume is flat, so it equals the filename).
    """
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    out: list[tuple[str, str, int]] = []
    chunk = 1 << 20
    for i in range(count):
        stem = hashlib.sha256(f"fovea-video:{seed}:{i}".encode()).hexdigest()[:24]
        ext = ".webm" if i % 7 == 6 else ".mp4"
        filename = f"{stem}{ext}"
        size = rng.randint(min_size, max(min_size, max_size))
        file_rng = random.Random(f"{seed}:{i}")
        with open(root / filename, "wb") as fh:
            left = size
            while left > 0:
                n = min(chunk, left)
                fh.write(file_rng.randbytes(n))
                left -= n
        out.append((filename, filename, size))
        if i % 3 == 0:
            sidecar = {"filename": filename, "size": size, "duration": 30 + (i * 17) % 600,
                       "uploader": f"user{i % 5}", "source": "sandbox"}
            (root / f"{stem}.info.json").write_text(json.dumps(sidecar, indent=2) + "\n")
    thumbs = root / "thumbnails"
    thumbs.mkdir(exist_ok=True)
    for filename, _, _ in out[: min(len(out), 5)]:
        stem = filename.rsplit(".", 1)[0]
        (thumbs / f"{stem}.jpg").write_bytes(random.Random(f"thumb:{seed}:{stem}").randbytes(512))
    return out
