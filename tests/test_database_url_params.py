"""DATABASE_URL's libpq parameters reach pg_dump and psql (issue 14, item 10).

A real PostgreSQL 15 server (Debian's, built with OpenSSL) that accepts only SSL over TCP,
with a certificate from a throwaway CA; the shared PostgreSQL 16 cluster for the server
without SSL. The CLI runs in a subprocess in direct mode, as cron would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from support.services import PgCluster, unavailable
from test_backup_helpers import direct_config, dump_files, run_cli, settings_and_config, write_env

from fovea_tui.envfile import DatabaseURL
from fovea_tui.errors import ConfigError

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture(scope="module")
def ssl_only_pg(tmp_path_factory):
    """A PostgreSQL 15 cluster on 127.0.0.1 that rejects every connection without SSL."""
    if not (DEBIAN_BIN / "postgres").exists():
        unavailable("Debian's PostgreSQL 15 server is not installed")
    certs = tmp_path_factory.mktemp("certs")
    ca_crt, ca_key = _make_ca(certs, "ca")
    (certs / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
             "-out", "server.csr", cwd=certs)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", "san.cnf", "-out", "server.crt", cwd=certs)
    cluster = PgCluster(DEBIAN_BIN, password="pw with spaces & 'quotes'")
    try:
        if cluster._ids:
            os.chown(cluster.base, *cluster._ids)
        r = cluster._as_owner([str(DEBIAN_BIN / "initdb"), "-D", str(cluster.data_dir), "-U", "postgres",
                               "--auth-local=trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        assert r.returncode == 0, r.stderr
        for name in ("server.crt", "server.key"):
            target = cluster.data_dir / name
            target.write_bytes((certs / name).read_bytes())
            os.chmod(target, 0o600)
            if cluster._ids:
                os.chown(target, *cluster._ids)
        (cluster.data_dir / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n")
        with open(cluster.data_dir / "postgresql.conf", "a") as fh:
            fh.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
        cluster.start()
        cluster.psql(f"CREATE ROLE fovea LOGIN PASSWORD '{cluster.password.replace(chr(39), chr(39) * 2)}';",
                     db="postgres")
        cluster.psql("CREATE DATABASE fovea OWNER fovea;", db="postgres")
        cluster.psql("CREATE TABLE marker (id int PRIMARY KEY); INSERT INTO marker VALUES (1), (2);",
                     db="fovea", user="fovea")
    except Exception as exc:  # noqa: BLE001
        cluster.destroy()
        unavailable(f"could not start an SSL-only PostgreSQL 15: {exc}")
    cluster.ca_crt = ca_crt
    cluster.other_ca, _ = _make_ca(certs / "other", "other")
    yield cluster
    cluster.destroy()


def _url(cluster, query: str, host: str = "127.0.0.1") -> str:
    return (f"postgresql://fovea:{quote(cluster.password, safe='')}@{host}:{cluster.port}/fovea"
            + (f"?{query}" if query else ""))


def _backup(tmp_path: Path, url: str, *, in_env_file: bool = False) -> subprocess.CompletedProcess:
    env_file, _ = write_env(tmp_path, database_url=url if in_env_file else "")
    data = direct_config(tmp_path, "" if in_env_file else url, env_file)
    _, cfg = settings_and_config(tmp_path, data)
    return run_cli("--config", str(cfg), "backup", "--json", "--no-offsite")


def test_sslmode_verify_full_with_its_root_cert_backs_up_over_ssl(tmp_path, ssl_only_pg):
    """The server rejects anything but SSL: the backup succeeding means the URL's SSL
    parameters reached the client, and a client that can do SSL was chosen."""
    r = _backup(tmp_path, _url(ssl_only_pg, f"sslmode=verify-full&sslrootcert={ssl_only_pg.ca_crt}"),
                in_env_file=True)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["tables"] == {"marker": 2}
    assert ssl_only_pg.password not in r.stdout + r.stderr


def test_the_root_cert_of_the_url_is_the_one_checked(tmp_path, ssl_only_pg):
    r = _backup(tmp_path, _url(ssl_only_pg, f"sslmode=verify-ca&sslrootcert={ssl_only_pg.other_ca}"))
    assert r.returncode == 1, r.stderr
    assert "certificate verify failed" in r.stderr and "Traceback" not in r.stderr
    assert dump_files(tmp_path / "backups") == []
    assert ssl_only_pg.password not in r.stdout + r.stderr


def test_sslmode_require_against_a_server_without_ssl_fails_and_sends_nothing(tmp_path, fresh_direct_db):
    """The shared cluster has no SSL: with sslmode=require the password must not travel in
    the clear; the backup fails saying why, and keeps nothing."""
    r = _backup(tmp_path, fresh_direct_db.url + "?sslmode=require")
    assert r.returncode == 1, r.stderr
    assert "SSL" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert dump_files(tmp_path / "backups") == []
    assert fresh_direct_db.password not in r.stdout + r.stderr


def test_a_client_that_cannot_do_what_the_url_requires_is_named(tmp_path, fresh_direct_db):
    """SSL (only Debian's 15 client has it here) and require_auth (16 and later): no client
    on this host can do both, and the message says which parameter asks for what."""
    r = _backup(tmp_path, fresh_direct_db.url + "?sslmode=require&require_auth=scram-sha-256")
    assert r.returncode == 2, r.stderr
    assert "database.url" in r.stderr and ("require_auth" in r.stderr or "SSL" in r.stderr), r.stderr
    assert dump_files(tmp_path / "backups") == []


def test_prisma_parameters_are_ignored_and_application_name_is_honoured(tmp_path, fresh_direct_db):
    r = _backup(tmp_path, fresh_direct_db.url + "?schema=public&connection_limit=5&application_name=nightly-x",
                in_env_file=False)
    assert r.returncode == 0, r.stderr
    url = DatabaseURL.parse(fresh_direct_db.url + "?application_name=nightly-x&connect_timeout=3")
    env = url.client_env()
    assert env["PGAPPNAME"] == "nightly-x" and env["PGCONNECT_TIMEOUT"] == "3"


@pytest.mark.parametrize("query,needle", [
    ("sslmod=require", "sslmod"),
    ("sslpassword=hunter2-secret", "sslpassword"),
    ("port=abc", "port"),
])
def test_unknown_or_unpassable_parameters_are_config_errors(tmp_path, fresh_direct_db, query, needle):
    with pytest.raises(ConfigError, match=needle):
        DatabaseURL.parse(fresh_direct_db.url + "?" + query, source="database.url")
    r = _backup(tmp_path, fresh_direct_db.url + "?" + query)
    assert r.returncode == 2 and needle in r.stderr and "database.url" in r.stderr, r.stderr
    assert "hunter2-secret" not in r.stdout + r.stderr
