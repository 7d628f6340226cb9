"""Step 10: is the restored install what the dump held, and does it answer?

Checks (each `{"name", "ok", "severity", "detail", ...}`; only "error" ones fail the step):
- rows: rows per table equalled the manifest's right after the restore step (step 7 checks
  that, before any migration runs); what the migrations changed since is named, never failed;
- migrations: `_prisma_migrations` holds no failed or rolled-back rows;
- health: the backend's health URL answers healthy (short timeout, retries);
- videos: every `videos` row's file exists in `volume.path` ("warning": a volume not yet
  pulled back is a separate step, not a reason to undo the database).

`check_login` is the optional login check: the faces call it with credentials the operator
types, which are never stored.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from fovea_tui.errors import FoveaError
from fovea_tui.formatting import plural

CHECKLIST = [
    "A user can log in (in a browser; the TUI's Restore screen can also check a login)",
    "A previously annotated video loads and plays",
    "Its annotations render on the timeline",
    "A re-run of summarization on a video produces output",
    "The env file on this host is the one that belongs to this dump (SESSION_SECRET, API_KEY_ENCRYPTION_KEY)",
    "The video volume is in place (`fovea-tui sync --pull` if it is not)",
]


# Tables whose rows go when the backend deletes a `videos` row (ON DELETE CASCADE, FOVEA.md).


def _check(name: str, ok: bool, detail: str, severity: str = "error", **extra) -> dict:
    return {"name": name, "ok": ok, "severity": severity, "detail": detail, **extra}


def expected_rows(ctx) -> dict[str, int]:
    """Rows per table the dump holds: its manifest's, else (no manifest, or one the
    operator accepted as not matching the dump) what verifying the dump counted."""
    manifest = ctx.facts.get("manifest") or {}
    counted = (ctx.facts.get("dump_verify") or {})
    if counted.get("status") == "mismatch":
        return counted.get("tables") or {}
    return manifest.get("tables") or counted.get("tables") or {}


def row_differences(expected: dict[str, int], actual: dict[str, int]) -> list[tuple[str, int | None, int | None]]:
    """(table, rows expected, rows found) for every table whose count differs, by name; a
    table missing on one side has None there. The restore's and the drill's row checks."""
    return [(table, expected.get(table), actual.get(table)) for table in sorted(set(expected) | set(actual))
            if expected.get(table) != actual.get(table)]


def row_lines(expected: dict[str, int], actual: dict[str, int], source: str = "the dump") -> list[str]:
    """`row_differences` in words: "table: N rows, the dump has M"."""
    return [f"{table}: {plural(got, 'row') if got is not None else 'missing'}, "
            f"{source} has {want if want is not None else 'none'}"
            for table, want, got in row_differences(expected, actual)]


def check_rows(ctx) -> dict:
    """The rows compared right after the restore step (step 7, before migrate: a mismatch
    there failed that step), and what the migrations changed since, as information only:
    what a migration's SQL does is never a reason to roll a good restore back."""
    expected = expected_rows(ctx)
    if not expected:
        return _check("rows", True, "no row counts recorded for this dump: not compared", "warning")
    restored = ctx.facts.get("restored_rows")
    if restored is None:  # a job restored before this check moved to step 7
        return _check("rows", True, "not compared after the restore step", "warning")
    changed = row_lines(restored, ctx.db.table_rows(), "the restore step left")
    detail = f"{plural(len(expected), 'table')}, {plural(sum(expected.values()), 'row')} as in the dump after the restore step"
    if changed:
        detail += "; changed since by the migrations or the accepted video deletions: " + "; ".join(changed)
    return _check("rows", True, detail, "info" if changed else "error", changed_by_migrations=changed)


def check_migration_rows(ctx) -> dict:
    """Failed or rolled-back rows of `_prisma_migrations`, in one round trip (\\gexec: the
    server writes the query only when the table exists; no table gives an empty line)."""
    out = ctx.db.psql(
        "SELECT CASE WHEN to_regclass('public._prisma_migrations') IS NULL THEN 'SELECT NULL' ELSE "
        "'SELECT json_build_object(''bad'', coalesce(json_agg(migration_name ORDER BY migration_name) FILTER "
        "(WHERE finished_at IS NULL OR rolled_back_at IS NOT NULL), ''[]''), ''applied'', count(*) FILTER "
        "(WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL)) FROM public._prisma_migrations' END \\gexec\n")
    if not out:
        return _check("migrations", True, "no _prisma_migrations table", "warning")
    found = json.loads(out)
    if found["bad"]:
        return _check("migrations", False, "failed or rolled-back migrations: " + ", ".join(found["bad"]))
    return _check("migrations", True, f"{plural(found['applied'], 'migration')} applied, none failed")


def probe_health(url: str, *, attempts: int = 20, delay: float = 1.5, timeout: float = 3.0,
                 cancel=None) -> tuple[bool, str]:
    import urllib.error
    import urllib.request  # here, not at import: with ssl, about 15 ms of every CLI start

    last = ""
    for attempt in range(attempts):
        if cancel is not None:
            cancel.check()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - operator's own URL
                body = resp.read(4096)
                try:
                    status = str(json.loads(body).get("status", ""))
                except (ValueError, AttributeError):
                    status = ""
                if resp.status == 200 and status.lower() in ("healthy", "ok", "up", ""):
                    return True, f"{url} answered {resp.status} {status or '(no status field)'}"
                last = f"{resp.status} {status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if attempt + 1 < attempts:
            time.sleep(delay)
    return False, f"{url} did not answer healthy after {attempts} tries (last: {last})"


def check_health(ctx) -> dict:
    url = ctx.settings.stack.health_url
    backend = ctx.settings.stack.backend_service
    if ctx.stack is None:
        return _check("health", True, "no compose stack managed: backend health not checked", "warning")
    if backend not in (ctx.facts.get("was_running") or []):
        return _check("health", True, f"{backend} was not running before the restore: not checked", "info")
    ok, detail = probe_health(url, attempts=int(ctx.params.get("health_attempts", 20)), cancel=ctx.cancel)
    return _check("health", ok, detail)


def check_videos(ctx) -> dict:
    from fovea_tui.engine.volume.storage import VolumeFiles, video_rows

    volume = Path(ctx.settings.volume.path)
    storage = (ctx.env.get("STORAGE_PATH") if ctx.env else "") or "/videos"
    rows = video_rows(ctx.db, storage)
    if rows is None:
        return _check("videos", True, "no videos table", "info")
    files = VolumeFiles(volume)
    missing = sorted(r.filename for r in rows if not files.holds_any(r.key, r.filename))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return _check("videos", False, f"{len(missing)} of {plural(len(rows), 'video file')} missing from {volume}: {shown} "
                      "(pull the volume back with `fovea-tui sync --pull`)", "warning", missing=len(missing))
    return _check("videos", True, f"all {plural(len(rows), 'video file')} present in {volume}")


CHECKS = (check_rows, check_migration_rows, check_health, check_videos)


def run_verification(ctx) -> dict:
    """The checks run side by side (each waits on the server, the backend or the disk, and the
    install is back only when all have answered); their lines come in this order."""
    ctx.cancel.check()
    ctx.db  # noqa: B018 - opened here, once, not by two threads
    with ThreadPoolExecutor(max_workers=len(CHECKS), thread_name_prefix="verify") as pool:
        futures = [pool.submit(_one_check, fn, ctx) for fn in CHECKS]
        checks = []
        for future in futures:
            check = future.result()
            checks.append(check)
            ctx.output(f"{'ok  ' if check['ok'] else 'FAIL' if check['severity'] == 'error' else 'warn'} "
                       f"{check['name']}: {check['detail']}")
    ok = all(c["ok"] or c["severity"] != "error" for c in checks)
    return {"ok": ok, "checks": checks, "checklist": list(CHECKLIST)}


def _one_check(fn, ctx) -> dict:
    try:
        return fn(ctx)
    except FoveaError as exc:
        return _check(fn.__name__.removeprefix("check_"), False, str(exc))


def login_url(health_url: str) -> str:
    parts = urlsplit(health_url)
    return urlunsplit((parts.scheme, parts.netloc, "/api/auth/login", "", ""))


def check_login(health_url: str, username: str, password: str, timeout: float = 5.0) -> dict:
    """POST /api/auth/login with typed credentials (never stored); a verification check dict."""
    import urllib.error
    import urllib.request

    url = login_url(health_url)
    body = json.dumps({"username": username, "password": password}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return _check("login", resp.status == 200, f"{username} logged in at {url}")
    except urllib.error.HTTPError as exc:
        return _check("login", False, f"{url} refused the login for {username} (HTTP {exc.code})")
    except (urllib.error.URLError, OSError) as exc:
        return _check("login", False, f"{url} did not answer: {getattr(exc, 'reason', exc)}")
