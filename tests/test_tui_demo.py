"""`fovea-tui demo`'s sandbox: what it builds, that re-running reuses it, that the TUI reads it."""

from __future__ import annotations

import gzip
import json
import stat
import zlib

import pytest
from support.tui import asynctest, make_app, wait_for

from fovea_tui.config import load_file

pytest.importorskip("pgserver")


@pytest.fixture(scope="module")
def demo_install(tmp_path_factory):
    from fovea_tui.sandbox import demo

    root = tmp_path_factory.mktemp("demo")
    install = demo.build(root)
    yield install
    install.server.cleanup()


def test_sandbox_has_every_piece(demo_install):
    root = demo_install.root
    settings = load_file(demo_install.config)
    assert settings.database.mode == "direct"
    assert settings.backups.dir == str(root / "backups")
    env = root / "install" / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "SESSION_SECRET=" in env.read_text()
    videos = [p for p in (root / "videos").iterdir() if p.is_file()]
    assert len(videos) >= 200
    names = sorted(p.name for p in (root / "backups").iterdir())
    dumps = [n for n in names if n.endswith(".sql.gz") and "T" in n and "pre-restore" not in n]
    legacy = [n for n in names if n.endswith(".sql.gz") and "T" not in n]
    assert len(dumps) > 30 and len(legacy) == 3
    assert any("pre-restore" in n for n in names)
    assert any(n.endswith(".manifest.json") for n in names)
    manifest = json.loads((root / "backups" / f"{dumps[-1]}.manifest.json").read_text())
    for key in ("created_at", "database", "server_version", "pg_dump_version", "size", "sha256", "tables",
                "prisma_migrations", "env_file", "duration_s", "tool_version"):
        assert key in manifest
    assert manifest["tables"]["users"] > 0
    newest = root / "backups" / dumps[-1]
    assert b"-- PostgreSQL database dump complete" in gzip.decompress(newest.read_bytes())[-200:]
    corrupt = 0
    for name in dumps:
        try:
            gzip.decompress((root / "backups" / name).read_bytes())
        except (EOFError, zlib.error, OSError):
            corrupt += 1
    assert corrupt == 1
    assert len(list((root / "offsite").iterdir())) >= 10
    created = sorted(json.loads(p.read_text())["created_at"] for p in (root / "backups").glob("*.manifest.json"))
    assert created[0][:7] < created[-1][:7]  # months apart: every retention bucket holds something


def test_engine_settled_the_sandbox(demo_install):
    """Statuses come from the engine's verify; the volume was synced once, before the newest videos."""
    from fovea_tui.engine.backups.inventory import load_inventory
    from fovea_tui.engine.volume.sync import read_summary, run_sync
    from fovea_tui.sandbox import demo

    settings = load_file(demo_install.config)
    inv = load_inventory(settings, include_offsite=False)
    counts = inv.counts()
    assert counts["corrupt"] == 1 and counts["unverified"] == 3 and counts["verified"] > 30
    assert all(e.kind == "legacy" or "T" not in e.name for e in inv.entries if e.status == "unverified")
    last = read_summary(settings)
    assert last["last_ok"] == last["time"] < demo_install.anchor.isoformat()
    assert run_sync(settings, dry_run=True).to_transfer == demo.HELD_BACK
    assert len([p for p in (demo_install.root / "videos").iterdir() if p.is_file()]) >= 200  # all put back


def test_rebuilding_reuses_the_sandbox(demo_install):
    from fovea_tui.sandbox import demo

    again = demo.build(demo_install.root)
    assert again.anchor == demo_install.anchor
    assert again.config == demo_install.config


@asynctest
async def test_dashboard_on_the_demo(demo_install, monkeypatch):
    from fovea_tui.sandbox import demo

    monkeypatch.setenv("DOCKER_HOST", demo.NO_DOCKER)
    # the real status, collected from the sandbox, on the sandbox's clock
    app = make_app(load_file(demo_install.config), now=demo_install.anchor, status_source=None)
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.status is not None, timeout=60)
        await pilot.pause()
        db = app.status.as_dict()["database"]
        assert db["ok"], db
        assert db["tables"] >= 12
        assert app.screen.query_one("#card-database").verdict == "fine"
        assert "not managed" in str(app.screen.query_one("#stack-caption").render())
