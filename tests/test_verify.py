"""`fovea-tui verify`: a dump is verified only if it is whole gzip, ends with pg_dump's
completion line and matches its manifest; everything else is corrupt (exit 3)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess

import pytest
from test_backup_helpers import direct_config, run_cli, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.backups.verify_cache import cached_status


@pytest.fixture
def backed_up(fresh_direct_db, tmp_path):
    env_file, _ = write_env(tmp_path)
    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    result = run_backup(settings)
    return settings, cfg, result


def _verify_json(cfg, capsys, *dumps):
    # A fresh process: only this test's env file is registered as secrets there.
    r = run_cli("--config", str(cfg), "verify", "--json", *dumps)
    assert "Traceback" not in r.stderr
    return r.returncode, json.loads(r.stdout)


def test_good_dump_verifies_and_is_cached(backed_up, capsys):
    settings, cfg, result = backed_up
    code, out = _verify_json(cfg, capsys)
    assert code == 0 and out["ok"] is True
    [entry] = out["dumps"]
    assert entry["status"] == "verified" and entry["has_manifest"]
    assert entry["sha256"] == result.sha256 and entry["tables"] == result.tables
    assert cached_status(settings, result.path) == "verified"
    os.utime(result.path, ns=(1, 1))  # changed since: the cache no longer vouches for it
    assert cached_status(settings, result.path) is None


def test_truncated_dump_is_corrupt(backed_up, capsys):
    settings, cfg, result = backed_up
    data = result.path.read_bytes()
    result.path.write_bytes(data[: len(data) // 2])
    code, out = _verify_json(cfg, capsys, result.name)
    assert code == 3 and out["ok"] is False
    reasons = " ".join(out["dumps"][0]["reasons"])
    assert "truncated" in reasons and "size" in reasons
    assert cached_status(settings, result.path) == "corrupt"


def test_complete_gzip_of_a_cut_dump_is_corrupt(backed_up, tmp_path, capsys):
    """The runbook's pipe without pipefail: gzip finishes cleanly on a dump that died."""
    settings, cfg, result = backed_up
    sql = gzip.decompress(result.path.read_bytes())
    legacy = settings.backups_dir / "fovea-2026-01-02.sql.gz"
    legacy.write_bytes(gzip.compress(sql[: len(sql) * 2 // 3]))
    good_legacy = settings.backups_dir / "fovea-2026-01-01.sql.gz"
    good_legacy.write_bytes(gzip.compress(sql))
    code, out = _verify_json(cfg, capsys, legacy.name, str(good_legacy))
    assert code == 3
    by_name = {d["name"]: d for d in out["dumps"]}
    assert by_name[legacy.name]["status"] == "corrupt"
    assert "completion line" in " ".join(by_name[legacy.name]["reasons"])
    assert by_name[good_legacy.name]["status"] == "verified" and by_name[good_legacy.name]["legacy"]
    # `gzip -t` agrees the cut one is "fine" as gzip: only the completion line catches it.
    assert subprocess.run(["gzip", "-t", str(legacy)]).returncode == 0


def test_a_different_dump_under_the_name_fails_the_manifest(backed_up, capsys):
    """Whole and complete, but not the bytes its manifest describes: "mismatch" (exit 1), not
    corrupt (exit 3): nothing that deletes corrupt dumps may take it."""
    settings, cfg, result = backed_up
    sql = gzip.decompress(result.path.read_bytes())
    result.path.write_bytes(gzip.compress(sql, compresslevel=9))  # valid, complete, but not the same bytes
    code, out = _verify_json(cfg, capsys, result.name)
    assert code == 1 and out["dumps"][0]["status"] == "mismatch" and out["mismatch"] == 1
    assert any("sha256" in r or "size" in r for r in out["dumps"][0]["reasons"])


@pytest.mark.parametrize("content, expected", [
    (b"{not json", "is not valid JSON"),
    (b'{"created_at": "x"}', "lacks database"),
    (b"[1, 2]", "is not a JSON object"),
])
def test_a_bad_manifest_is_a_clear_reason_never_a_traceback(backed_up, capsys, content, expected):
    settings, cfg, result = backed_up
    mf.manifest_path(result.path).write_bytes(content)
    with pytest.raises(mf.ManifestError) as info:
        mf.read(mf.manifest_path(result.path))
    assert expected in str(info.value)
    code, out = _verify_json(cfg, capsys)
    # The dump itself is whole: it is unverified (exit 1), not corrupt, so nothing that
    # deletes corrupt dumps may take it, and the inventory says why.
    assert code == 1
    assert out["dumps"][0]["status"] == "unverified"
    assert expected in " ".join(out["dumps"][0]["reasons"])
    from fovea_tui.engine.backups.inventory import load_inventory

    entry = load_inventory(settings, include_offsite=False).find(result.path.name)
    assert entry.status == "unverified"
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_unknown_dump_is_bad_usage(backed_up, capsys):
    settings, cfg, _ = backed_up
    assert main(["--config", str(cfg), "verify", "fovea-19990101T000000Z.sql.gz"]) == 2
    assert "no dump" in capsys.readouterr().err


def test_verify_dump_api_reads_manifest_beside(backed_up):
    _, _, result = backed_up
    v = verify_dump(result.path)
    assert v.status == "verified" and v.reasons == [] and v.size == result.size
    assert sum(v.tables.values()) == result.rows


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_failure(backed_up, capsys):
    settings, cfg, result = backed_up
    from fovea_tui.engine.backups.verify_cache import CACHE_FILE

    cache = settings.state_dir / CACHE_FILE
    cache.unlink(missing_ok=True)
    cache.mkdir()  # the cache file cannot be replaced: writing it fails
    code, out = _verify_json(cfg, capsys)
    assert code == 0
    [dump] = out["dumps"]
    assert dump["status"] == "verified"
    assert any("not cached" in w for w in dump["warnings"])
