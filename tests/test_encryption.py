"""Encrypted off-site copies (age, through pyrage), against real PostgreSQL, a directory
target and moto's S3 server; interoperability checked with Debian's `age` binary.

What an operator checks: `age -d -i KEY` opens what fovea-tui uploaded, byte for byte; no
secret of the env file sits in any off-site object; verify, list, restore and drill read the
encrypted copies with the identity and say one clear line without it or with the wrong one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_backup_helpers import direct_config, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.config import settings_from_dict
from fovea_tui.engine.backups import age_keys
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.pipeline import run_backup

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(
    (AGE is None or AGE_KEYGEN is None) and os.environ.get("CI", "").lower() != "true",
    reason="Debian's age is not installed (scripts/ensure-services.sh installs it)")


def keygen(tmp_path: Path, name: str) -> tuple[Path, str]:
    """An identity written by `fovea-tui keygen`, and its recipient."""
    out = tmp_path / "keys" / name
    proc = subprocess.run([sys.executable, "-m", "fovea_tui", "keygen", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)["recipient"]


def ssh_key(tmp_path: Path, name: str, kind: str = "ed25519") -> tuple[Path, str]:
    path = tmp_path / "keys" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    args = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)] + (["-b", "2048"] if kind == "rsa" else [])
    subprocess.run(args, check=True, capture_output=True)
    return path, path.with_name(name + ".pub").read_text().split(" comment")[0].strip()


def age_decrypt(identity: Path, src: Path) -> bytes:
    proc = subprocess.run([AGE, "-d", "-i", str(identity), str(src)], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def secrets_of(values: dict[str, str], password: str) -> list[bytes]:
    return [v.encode() for v in values.values() if len(v) > 6] + [password.encode()]


@pytest.fixture
def host(fresh_direct_db, tmp_path, monkeypatch):
    """A direct-mode install with an age identity from `fovea-tui keygen`."""
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    env_file, values = write_env(tmp_path)
    identity, recipient = keygen(tmp_path, "id-main.txt")
    return {"db": fresh_direct_db, "env_file": env_file, "values": values, "identity": identity,
            "recipient": recipient, "tmp": tmp_path}


def make(host, offsite: str, *, recipients=None, identity: Path | None | str = "default", **sections):
    enc = {"recipients": recipients if recipients is not None else [host["recipient"]]}
    if identity == "default":
        enc["identity_file"] = str(host["identity"])
    elif identity:
        enc["identity_file"] = str(identity)
    data = direct_config(host["tmp"], host["db"].url, host["env_file"], backups={"offsite": offsite},
                         encryption=enc, **sections)
    settings, cfg = settings_and_config(host["tmp"], data)
    own = cfg.with_name(f"fovea-tui-{hashlib.sha256(cfg.read_bytes()).hexdigest()[:8]}.toml")
    cfg.rename(own)  # one file per variant: a test compares several side by side
    return settings, own


# --------------------------------------------------------------------------- directory


@needs_age
def test_directory_copy_opens_with_debian_age_and_holds_no_secret(host):
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    settings, _cfg = make(host, str(offsite))
    result = run_backup(settings)
    stem = result.name[: -len(".sql.gz")]
    assert sorted(p.name for p in offsite.iterdir()) == sorted(
        [result.name + ".age", stem + ".env.age", result.name + ".manifest.json"])
    for p in offsite.iterdir():
        assert p.stat().st_mode & 0o077 == 0, p
    # the standard tool opens both, byte for byte
    assert age_decrypt(host["identity"], offsite / (result.name + ".age")) == result.path.read_bytes()
    assert age_decrypt(host["identity"], offsite / (stem + ".env.age")) == host["env_file"].read_bytes()
    # no secret in any off-site file, manifest included
    for p in offsite.iterdir():
        data = p.read_bytes()
        for secret in secrets_of(host["values"], host["db"].password):
            assert secret not in data, (p.name, secret)
    # the manifest stays readable and records the encryption (local and off-site alike)
    off_manifest = json.loads((offsite / (result.name + ".manifest.json")).read_text())
    assert off_manifest == json.loads(result.manifest_path.read_text())
    enc = off_manifest["encryption"]
    assert enc["format"] == "age-encryption.org/v1"
    assert enc["recipients"] == [{"type": "age", "fingerprint": age_keys.fingerprint(host["recipient"])}]
    rec = enc["files"][result.name + ".age"]
    ciphertext = (offsite / (result.name + ".age")).read_bytes()
    assert rec["sha256"] == hashlib.sha256(ciphertext).hexdigest() and rec["size"] == len(ciphertext)
    assert rec["plaintext_sha256"] == off_manifest["sha256"] == hashlib.sha256(result.path.read_bytes()).hexdigest()
    env_rec = enc["files"][stem + ".env.age"]
    assert env_rec["plaintext_sha256"] == off_manifest["env_file"]["sha256"]
    assert host["recipient"] not in json.dumps(off_manifest)  # fingerprints, not keys
    # local copies are as they were: gzip and a plain env copy
    assert result.path.read_bytes()[:2] == b"\x1f\x8b"
    assert not list(settings.backups_dir.glob("*.age")) and not list(settings.backups_dir.glob(".fovea-*.partial"))


@needs_age
def test_two_recipients_either_identity_opens_and_verifies(host, capsys):
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    ssh_id, ssh_pub = ssh_key(host["tmp"], "id_ed25519")
    rsa_id, rsa_pub = ssh_key(host["tmp"], "id_rsa", "rsa")
    settings, cfg = make(host, str(offsite), recipients=[host["recipient"], ssh_pub, rsa_pub])
    result = run_backup(settings)
    enc = json.loads(result.manifest_path.read_text())["encryption"]
    assert [r["type"] for r in enc["recipients"]] == ["age", "ssh-ed25519", "ssh-rsa"]
    # the SSH fingerprint is the one ssh-keygen prints
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(ssh_id) + ".pub"], capture_output=True, text=True).stdout
    assert enc["recipients"][1]["fingerprint"] in printed
    for identity in (host["identity"], ssh_id, rsa_id):
        assert age_decrypt(identity, offsite / (result.name + ".age")) == result.path.read_bytes()
        _settings, cfg = make(host, str(offsite), recipients=[host["recipient"], ssh_pub, rsa_pub], identity=identity)
        result.path.rename(result.path.with_suffix(".moved"))  # make `verify NAME` go off-site
        try:
            capsys.readouterr()
            code = main(["--config", str(cfg), "verify", "--json", result.name])
            out = json.loads(capsys.readouterr().out)
        finally:
            result.path.with_suffix(".moved").rename(result.path)
        assert code == 0, out
        assert out["dumps"][0]["location"] == "offsite" and out["dumps"][0]["status"] == "verified"


def test_recipient_validation_names_the_key(tmp_path):
    from fovea_tui.errors import ConfigError

    good = str(age_keys.x25519.Identity.generate().to_public())
    for bad, words in ((["age1notakey"], "encryption.recipients[0]"),
                       ([good, "ssh-dss AAAA"], "encryption.recipients[1]"),
                       ([good, good], "repeats"),
                       ([str(age_keys.x25519.Identity.generate())], "private key")):
        with pytest.raises(ConfigError) as info:
            settings_from_dict({"encryption": {"recipients": bad}})
        assert words in str(info.value)
        assert "AGE-SECRET-KEY" not in str(info.value)
    with pytest.raises(ConfigError, match="encryption.identity_file"):
        settings_from_dict({"encryption": {"identity_file": 3}})
    # the CLI: exit 2, one line, naming the key
    cfg = tmp_path / "c.toml"
    cfg.write_text('[encryption]\nrecipients = ["age1zzz"]\n')
    proc = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(cfg), "list"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "encryption.recipients[0]" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_keygen_writes_0600_under_umask_000_and_never_overwrites(tmp_path):
    out = tmp_path / "k" / "identity.txt"
    cmd = [sys.executable, "-m", "fovea_tui", "keygen", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    recipient = next(line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("recipient: "))
    assert recipient.startswith("age1") and "AGE-SECRET-KEY" not in proc.stdout
    assert "away from this host" in proc.stdout.lower().replace("AWAY", "away")
    # age-keygen agrees on the public key
    if AGE_KEYGEN:
        assert subprocess.run([AGE_KEYGEN, "-y", str(out)], capture_output=True, text=True).stdout.strip() == recipient
    before = out.read_bytes()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr and out.read_bytes() == before


def test_memory_stays_flat_while_encrypting_a_large_dump(tmp_path):
    """200 MiB through encrypt_file and back in a child process: peak RSS grows by far less."""
    script = f"""
import os, resource, sys
from pathlib import Path
from fovea_tui.engine.backups import age_keys, encryption
src = Path({str(tmp_path)!r}) / "big"
with open(src, "wb") as fh:
    block = os.urandom(1 << 20)
    for _ in range(200):
        fh.write(block)
ident = age_keys.x25519.Identity.generate()
rec = age_keys.parse_recipient(str(ident.to_public()))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from fovea_tui.engine.backups.manifest import file_sha256
sealed = encryption.encrypt_file(src, src.with_suffix(".age"), [rec], plaintext_sha256=file_sha256(src))
out = src.with_suffix(".out")
with open(src.with_suffix(".age"), "rb") as fin, open(out, "wb") as fout:
    back = encryption.decrypt_stream(fin, fout, [ident], what="big")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert back.plaintext_sha256 == sealed.plaintext_sha256 and back.sha256 == sealed.sha256
print((peak - base) // 1024)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grew_mib = int(proc.stdout.strip())
    assert grew_mib < 40, f"peak RSS grew by {grew_mib} MiB while 200 MiB went through"


# --------------------------------------------------------------------------- S3 (moto)


def cli(cfg: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(cfg), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("fovea-tui:")]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture
def s3_host(host, s3, s3_bucket, monkeypatch):
    url = f"s3://{s3_bucket}/db/"
    s3cfg = {"endpoint_url": s3.endpoint_url, "region": s3.region}
    settings, cfg = make(host, url, s3=s3cfg)
    result = run_backup(settings)
    host.update(url=url, s3=s3, bucket=s3_bucket, s3cfg=s3cfg, settings=settings, cfg=cfg, result=result)
    return host


@needs_age
def test_s3_objects_hold_no_secret_and_open_with_age(s3_host, tmp_path):
    client = s3_host["s3"].client()
    objects = client.list_objects_v2(Bucket=s3_host["bucket"])["Contents"]
    result = s3_host["result"]
    stem = result.name[: -len(".sql.gz")]
    assert sorted(o["Key"] for o in objects) == sorted(
        f"db/{n}" for n in (result.name + ".age", stem + ".env.age", result.name + ".manifest.json"))
    for obj in objects:
        body = client.get_object(Bucket=s3_host["bucket"], Key=obj["Key"])["Body"].read()
        for secret in secrets_of(s3_host["values"], s3_host["db"].password):
            assert secret not in body, (obj["Key"], secret)
        if obj["Key"].endswith(".age"):
            assert body.startswith(b"age-encryption.org/v1\n")
            local = tmp_path / obj["Key"].rsplit("/", 1)[-1]
            local.write_bytes(body)
            plain = age_decrypt(s3_host["identity"], local)
            expected = result.path if obj["Key"].endswith(".sql.gz.age") else s3_host["env_file"]
            assert plain == expected.read_bytes()


def test_list_shows_encrypted_offsite_copies_without_the_key(s3_host):
    cfg = s3_host["cfg"]
    proc = cli(cfg, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["backups"][0]
    assert entry["name"] == s3_host["result"].name and entry["locations"] == ["local", "offsite"]
    off = entry["copies"]["offsite"]
    assert off["encrypted"] is True and off["key"].endswith(".sql.gz.age") and off["status"] == "verified"
    assert entry["siblings"]["env"] == ["local", "offsite"]
    # off-site only (a lost host's view): listed, never called corrupt, without any identity
    s3_host["result"].path.unlink()
    _s, cfg_none = make(s3_host, s3_host["url"], identity=None, s3=s3_host["s3cfg"])
    proc = cli(cfg_none, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["backups"][0]
    assert entry["locations"] == ["offsite"] and entry["status"] == "unverified"
    assert "encrypted" in entry["copies"]["offsite"]["detail"]


def test_drill_guide_leads_with_recover_and_decrypts_by_hand(s3_host):
    proc = cli(s3_host["cfg"], "drill", "--guide")
    assert proc.returncode == 0, proc.stderr
    guide = proc.stdout
    recover = (f"$ AWS_ENDPOINT_URL={s3_host['s3'].endpoint_url} fovea-tui recover --from {s3_host['url']} "
               "--identity ~/fovea-identity.txt")
    assert recover in guide
    env_key = s3_host["result"].name.replace(".sql.gz", ".env.age")
    assert f"{s3_host['url']}{env_key} - | age -d -i {s3_host['identity']} > " in guide
    assert guide.index(recover) < guide.index("fovea-tui sync --pull")


def test_verify_restore_drill_with_identity_wrong_identity_and_none(s3_host):
    result = s3_host["result"]
    name = result.name
    # the local copy gone: every command has to read the encrypted off-site one
    result.path.unlink()
    mf.env_copy_path(result.path).unlink()
    mf.manifest_path(result.path).unlink()
    wrong, _ = keygen(s3_host["tmp"], "id-wrong.txt")
    _s, cfg_wrong = make(s3_host, s3_host["url"], identity=wrong, s3=s3_host["s3cfg"])
    _s, cfg_none = make(s3_host, s3_host["url"], identity=None, s3=s3_host["s3cfg"])
    _s, cfg_missing = make(s3_host, s3_host["url"], identity=s3_host["tmp"] / "no-such-key", s3=s3_host["s3cfg"])
    _s, cfg_good = make(s3_host, s3_host["url"], s3=s3_host["s3cfg"])

    # verify
    proc = cli(cfg_good, "verify", "--json", name)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dumps"][0]["status"] == "verified"
    line = one_line(cli(cfg_wrong, "verify", name))
    assert "cannot decrypt" in line and "not one of the recipients" in line
    assert cli(cfg_wrong, "verify", name).returncode == 1
    proc = cli(cfg_none, "verify", name)
    assert proc.returncode == 2 and "encryption.identity_file" in one_line(proc)
    proc = cli(cfg_missing, "verify", name)
    assert proc.returncode == 2 and "encryption.identity_file" in one_line(proc) and "does not exist" in proc.stderr

    # drill (decrypts the newest off-site dump and env copy as its checks)
    proc = cli(cfg_none, "drill")
    assert proc.returncode == 2 and "encryption.identity_file" in one_line(proc)
    proc = cli(cfg_wrong, "drill", "--json")
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert not checks["dump"]["ok"] and "not one of the recipients" in checks["dump"]["detail"]
    assert not checks["env_copy"]["ok"]
    proc = cli(cfg_good, "drill", "--json")
    data = json.loads(proc.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["dump"]["ok"] and "decrypted with encryption.identity_file" in checks["dump"]["detail"]
    assert checks["env_copy"]["ok"] and "decrypted" in checks["env_copy"]["detail"]
    assert checks["rows"]["ok"] and checks["restore"]["ok"]

    # restore from off-site
    proc = cli(cfg_none, "restore", "--yes", name)
    assert proc.returncode == 2 and "encryption.identity_file" in one_line(proc)
    proc = cli(cfg_wrong, "restore", "--yes", name)
    assert proc.returncode == 1 and "not one of the recipients" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    db = s3_host["db"]
    before = db.psql("SELECT count(*) FROM annotations").strip()
    db.psql("DELETE FROM annotations")
    proc = cli(cfg_good, "restore", "--yes", "--json", name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert db.psql("SELECT count(*) FROM annotations").strip() == before
    fetched = s3_host["settings"].backups_dir / name
    assert fetched.is_file() and mf.manifest_path(fetched).is_file()
    env_copy = mf.env_copy_path(fetched)
    assert env_copy.read_bytes() == s3_host["env_file"].read_bytes()
    assert oct(env_copy.stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------- recover


@pytest.fixture
def new_server(direct_pg):
    """A second database server: the new host's, with the app role and an empty `fovea`."""
    from support.services import PgCluster, sql_ident, sql_literal

    cluster = PgCluster(direct_pg.bin_dir)
    cluster.start()
    try:
        cluster.psql(f"CREATE ROLE {sql_ident(cluster.user)} LOGIN SUPERUSER PASSWORD "
                     f"{sql_literal(cluster.password)};", db="postgres")
        cluster.psql(f"CREATE DATABASE {sql_ident(cluster.database)} OWNER {sql_ident(cluster.user)};", db="postgres")
        yield cluster
    finally:
        cluster.destroy()


def table_rows(cluster, tables) -> dict[str, int]:
    return {t: int(cluster.psql(f'SELECT count(*) FROM public."{t}"').strip()) for t in tables}


@pytest.mark.parametrize("target", ["s3", "directory"])
def test_recover_on_a_second_host_from_the_offsite_copy_alone(host, new_server, target, request, tmp_path):
    from test_drill import make_volume, video_rows

    from fovea_tui.engine.volume.sync import run_sync

    # the lost host: backups encrypted off-site, videos synced to their own copy
    volume, video_copy = tmp_path / "videos", tmp_path / "video-copy"
    make_volume(volume, video_rows(host["db"]))
    video_copy.mkdir()
    if target == "s3":
        s3 = request.getfixturevalue("s3")
        url, s3cfg = f"s3://{s3.make_bucket()}/fovea/", {"endpoint_url": s3.endpoint_url, "region": s3.region}
    else:
        url, s3cfg = str(tmp_path / "offsite"), {}
        Path(url).mkdir()
    extra = {"s3": s3cfg} if s3cfg else {}
    settings, _cfg = make(host, url, volume={"path": str(volume), "target": str(video_copy)}, **extra)
    assert run_sync(settings).ok
    result = run_backup(settings)
    manifest = json.loads(result.manifest_path.read_text())
    # a copy of the key kept away from the host is all the operator brings
    key = tmp_path / "kept-away" / "identity.txt"
    key.parent.mkdir()
    shutil.copy(host["identity"], key)

    # the new host: nothing but fovea-tui, a new database server and a stub of a config
    new = tmp_path / "new-host"
    env_file = new / "fovea" / ".env"
    partial = {"database": {"mode": "direct", "url": new_server.url}, "backups": {"dir": str(new / "backups")},
               "install": {"env_file": str(env_file), "compose_project": "fovea-no-such-project"},
               "volume": {"path": str(new / "videos")}, **extra}
    stub = new / "config" / "fovea-tui" / "config.toml"
    stub.parent.mkdir(parents=True)
    import tomli_w

    stub.write_text(tomli_w.dumps(partial))
    env = {"XDG_CONFIG_HOME": str(new / "config"), "HOME": str(new), "FOVEA_TUI_CONFIG": ""}
    base = [sys.executable, "-m", "fovea_tui", "--config", str(stub), "recover", "--from", url]

    # the listing needs no key
    listing = subprocess.run(base + ["--list", "--json"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
    assert listing.returncode == 0, listing.stderr
    found = json.loads(listing.stdout)["backups"]
    assert found[0]["name"] == result.name and found[0]["status"] == "verified" and found[0]["encrypted"]
    # no key: exit 2 naming --identity; nothing written
    proc = subprocess.run(base + ["--yes"], capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert proc.returncode == 2 and "--identity" in one_line(proc)
    assert not env_file.exists() and not (new / "backups" / result.name).exists()
    # a different env file already there: refused, left as it was
    env_file.parent.mkdir(parents=True)
    env_file.write_text("SESSION_SECRET=someone-elses\n")
    proc = subprocess.run(base + ["--identity", str(key), "--yes", "--json"], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env})
    assert proc.returncode == 3 and "--replace-env" in one_line(proc)
    assert env_file.read_text() == "SESSION_SECRET=someone-elses\n"
    env_file.unlink()

    proc = subprocess.run(base + ["--identity", str(key), "--yes", "--json"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["restore"]["ok"] and data["backup"]["name"] == result.name
    assert data["target_empty"] is True and data["env_installed"] == "installed"
    # the rows the manifest records, the env file byte for byte at 0600, every video back
    assert table_rows(new_server, manifest["tables"]) == manifest["tables"]
    assert env_file.read_bytes() == host["env_file"].read_bytes()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    for path in volume.rglob("*"):
        if path.is_file():
            twin = new / "videos" / path.relative_to(volume)
            assert twin.is_file() and twin.stat().st_size == path.stat().st_size
    # step 4 of the runbook, named without values
    notes = " ".join(data["adjustments"])
    assert "DATABASE_URL" in notes and "SESSION_SECRET" in notes
    everything = proc.stdout + proc.stderr
    for secret in secrets_of(host["values"], host["db"].password):
        assert secret.decode() not in everything
    # the config written for this host: what the stub said, plus what it lacked
    from fovea_tui.config import load_file

    written = load_file(stub)
    assert written.database.url == new_server.url and written.backups.offsite == url
    assert written.volume.target == str(video_copy) and written.encryption.identity_file == str(key)
    assert written.encryption.recipients == [host["recipient"]]
    # and the recovered install works as any other: its next backup is encrypted off-site
    again = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(stub), "backup", "--json"],
                           capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert again.returncode == 0, again.stderr
    assert all(k.endswith((".age", ".json")) for k in json.loads(again.stdout)["offsite"]["keys"])


# --------------------------------------------------------------------------- status, damage


def encryption_alerts(cfg: Path) -> tuple[int, list[dict]]:
    proc = cli(cfg, "status", "--json")
    data = json.loads(proc.stdout)
    return proc.returncode, [a for a in data["alerts"] if a["subject"] == "encryption"]


def test_status_warns_while_env_copies_go_unencrypted_and_alerts_on_a_key_that_cannot_open(host):
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    _s, plain = make(host, str(offsite), recipients=[], identity=None)
    _code, alerts = encryption_alerts(plain)
    assert [a["level"] for a in alerts] == ["warning"] and "unencrypted" in alerts[0]["message"]

    settings, good = make(host, str(offsite))
    run_backup(settings)
    _code, alerts = encryption_alerts(good)
    assert alerts == []
    wrong, _ = keygen(host["tmp"], "id-other.txt")
    _s, bad = make(host, str(offsite), identity=wrong)
    _code, alerts = encryption_alerts(bad)
    assert [a["level"] for a in alerts] == ["critical"]
    assert "cannot decrypt the newest off-site dump" in alerts[0]["message"]
    # a key left readable by others is worth a warning too
    os.chmod(host["identity"], 0o644)
    _code, alerts = encryption_alerts(good)
    assert [a["level"] for a in alerts] == ["warning"] and "chmod 600" in alerts[0]["message"]


def test_damaged_ciphertext_is_one_clear_line(host):
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    settings, cfg = make(host, str(offsite))
    result = run_backup(settings)
    age_file = offsite / (result.name + ".age")
    data = bytearray(age_file.read_bytes())
    data[len(data) // 2] ^= 0x40
    age_file.write_bytes(bytes(data))
    result.path.unlink()
    proc = cli(cfg, "verify", result.name)
    assert proc.returncode == 1 and "damaged" in one_line(proc)
    assert not list((settings.state_dir).rglob("*.partial"))


@pytest.mark.docker
def test_recover_in_docker_mode_onto_an_empty_stack(stack, tmp_path):
    """The compose-labelled stack stands in for the new host's: its `fovea` database emptied,
    a fresh config dir and backups dir; recover finds the project, restores, installs the env."""
    import tomli_w

    identity, recipient = keygen(tmp_path, "id.txt")
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    old = stack.settings(tmp_path / "old", backups={"offsite": str(offsite)},
                         encryption={"recipients": [recipient]}, stack={"health_url": stack.health_url})
    result = run_backup(old)
    manifest = json.loads(result.manifest_path.read_text())
    # the new host's database: empty, like a stack just brought up
    stack.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION fovea;")
    assert stack.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").strip() == "0"

    new = tmp_path / "new-host"
    env_file = new / "fovea" / ".env"
    stub = new / "config.toml"
    new.mkdir()
    stub.write_text(tomli_w.dumps({"backups": {"dir": str(new / "backups")}, "install": {"env_file": str(env_file)},
                                   "stack": {"health_url": stack.health_url,
                                             "migrate_command": list(stack.migrate_command)}}))
    proc = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(stub), "recover", "--from", str(offsite),
                           "--identity", str(identity), "--yes", "--json"], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "XDG_CONFIG_HOME": str(new / "xdg")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["restore"]["ok"] and data["target_empty"] is True
    from fovea_tui.config import load_file

    written = load_file(stub)
    assert written.install.compose_project == stack.project and written.database.mode == "docker"
    rows = {t: int(stack.psql(f'SELECT count(*) FROM public."{t}"').strip()) for t in manifest["tables"]}
    # the guided restore's migrate step applies what the backend image bundles beyond the dump
    assert rows.pop("_prisma_migrations") >= manifest["tables"]["_prisma_migrations"]
    assert rows == {t: n for t, n in manifest["tables"].items() if t != "_prisma_migrations"}
    assert env_file.read_bytes() == stack.env_file.read_bytes()
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"


def test_a_manifest_that_lies_about_the_encrypted_file_is_caught(host):
    """The off-site manifest's record of the ciphertext (size, sha256) is checked, not trusted."""
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    settings, cfg = make(host, str(offsite))
    result = run_backup(settings)
    key = result.name + ".age"
    off_manifest = offsite / (result.name + ".manifest.json")
    data = json.loads(off_manifest.read_text())
    data["encryption"]["files"][key]["sha256"] = "0" * 64
    off_manifest.write_text(json.dumps(data))
    result.path.unlink()
    mf.manifest_path(result.path).unlink()
    proc = cli(cfg, "verify", result.name)
    assert proc.returncode == 1 and "differs from the manifest's record" in one_line(proc)
    # a record whose size disagrees with the object: the listing calls the copy corrupt
    data["encryption"]["files"][key]["size"] += 1
    off_manifest.write_text(json.dumps(data))
    shutil.copy(off_manifest, mf.manifest_path(result.path))  # as if the local manifest said so
    proc = cli(cfg, "list", "--json")
    entry = json.loads(proc.stdout)["backups"][0]
    assert entry["copies"]["offsite"]["status"] == "corrupt"


def test_prune_forgets_encrypted_offsite_copies_with_their_siblings(host):
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    settings, cfg = make(host, str(offsite), retention={"keep_last": 1, "keep_daily": 0, "keep_weekly": 0})
    first = run_backup(settings)
    second = run_backup(settings)
    assert cli(cfg, "verify").returncode == 0  # prune keeps only what it knows to be sound
    proc = cli(cfg, "prune", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = sorted(p.name for p in offsite.iterdir())
    stem = second.name[: -len(".sql.gz")]
    assert left == sorted([second.name + ".age", stem + ".env.age", second.name + ".manifest.json"])
    assert not any(first.name[: -len(".sql.gz")] in name for name in left)


def test_a_killed_run_leaves_its_encrypted_temp_to_the_next_run(host):
    """What kill -9 during the encryption leaves (the temp age copy beside the dump, named as
    the pipeline's temp files are) is removed by the next backup, and never uploaded."""
    offsite = host["tmp"] / "offsite"
    offsite.mkdir()
    settings, _cfg = make(host, str(offsite))
    settings.backups_dir.mkdir(parents=True, mode=0o700)
    leftover = settings.backups_dir / ".fovea-20260101T000000Z.sql.gz.age.partial"
    leftover.write_bytes(b"age-encryption.org/v1\n-> half a file")
    result = run_backup(settings)
    assert not leftover.exists()
    assert sorted(p.name for p in offsite.iterdir()) == sorted(
        [result.name + ".age", result.name[: -len(".sql.gz")] + ".env.age", result.name + ".manifest.json"])
