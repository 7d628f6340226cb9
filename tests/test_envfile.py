"""The install's env file: parsed like docker compose does, every value a secret."""

from __future__ import annotations

import os
import stat

import pytest

from fovea_tui import masking
from fovea_tui.envfile import DatabaseURL, EnvFile
from fovea_tui.errors import ConfigError

ENV_TEXT = """\
# Fovea production
export DATABASE_URL="postgresql://fovea:s%40cret%3Aw%2Frd@db.internal:6543/fovea"
POSTGRES_PASSWORD='s@cret:w/rd'
SESSION_SECRET=abcdef0123456789session   # trailing comment
API_KEY_ENCRYPTION_KEY="quoted value with spaces"
EMPTY=
REDIS_PORT=6379
"""


def write_env(tmp_path, text=ENV_TEXT):
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_parses_quotes_exports_and_comments(tmp_path):
    env = EnvFile.load(write_env(tmp_path))
    assert env.get("POSTGRES_PASSWORD") == "s@cret:w/rd"
    assert env.get("SESSION_SECRET") == "abcdef0123456789session"
    assert env.get("API_KEY_ENCRYPTION_KEY") == "quoted value with spaces"
    assert env.get("EMPTY") == ""
    assert env.missing_critical() == []
    url = env.database_url()
    assert (url.host, url.port, url.user, url.database) == ("db.internal", 6543, "fovea", "fovea")
    assert url.password == "s@cret:w/rd"


def test_password_never_in_repr_str_or_masked_view(tmp_path):
    env = EnvFile.load(write_env(tmp_path))
    url = env.database_url()
    for text in (repr(url), str(url), repr(env), str(env.masked())):
        assert "s@cret" not in text
        assert "abcdef0123456789session" not in text
    assert url.client_env()["PGPASSWORD"] == "s@cret:w/rd"  # handed to libpq, not argv


def test_every_value_is_redacted_from_text(tmp_path):
    EnvFile.load(write_env(tmp_path))
    leaked = "connect failed for s@cret:w/rd with quoted value with spaces"
    assert "s@cret" not in masking.redact(leaked)
    assert "quoted value" not in masking.redact(leaked)
    assert "6379" in masking.redact("port 6379")  # short values are not treated as secrets


def test_copy_is_byte_identical_and_0600(tmp_path):
    source = write_env(tmp_path)
    os.chmod(source, 0o644)
    env = EnvFile.load(source)
    dest = env.copy_to(tmp_path / "fovea-20260101T000000Z.env")
    assert dest.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert env.sha256() == __import__("hashlib").sha256(source.read_bytes()).hexdigest()


def test_missing_critical_keys_are_named(tmp_path):
    env = EnvFile.load(write_env(tmp_path, "DATABASE_URL=postgresql://a@b/c\n"))
    assert env.missing_critical() == ["SESSION_SECRET", "API_KEY_ENCRYPTION_KEY"]


def test_missing_and_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        EnvFile.load(tmp_path / "nope.env")
    assert info.value.key == "install.env_file"
    with pytest.raises(ConfigError, match="is a directory"):
        EnvFile.load(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_unreadable_env_file(tmp_path):
    path = write_env(tmp_path)
    os.chmod(path, 0o600)
    os.chown(path, 0, 0)
    pid = os.fork()
    if pid == 0:  # child: become nobody and try to read
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                EnvFile.load(path)
            except ConfigError as exc:
                os._exit(0 if "not readable" in str(exc) else 1)
            os._exit(2)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0


@pytest.mark.parametrize("bad", ["mysql://a@b/c", "postgresql://a@b:notaport/c"])
def test_bad_database_urls(bad):
    with pytest.raises(ConfigError):
        DatabaseURL.parse(bad)


def test_socket_host_in_query():
    url = DatabaseURL.parse("postgresql://postgres:@/postgres?host=/tmp/sock")
    assert url.host == "/tmp/sock"


def test_plain_configuration_is_not_scrubbed_but_credentials_are(tmp_path):
    EnvFile.load(write_env(tmp_path, "POSTGRES_USER=fovea\nPOSTGRES_DB=fovea\nNODE_ENV=production\n"
                                     "ADMIN_PASSWORD=hunter2x\nSOME_RANDOM_SETTING=Zk39fj20slq0vn3\n"))
    text = masking.redact("dump fovea-20260101T000000Z.sql.gz of fovea in production; pw hunter2x; Zk39fj20slq0vn3")
    assert "fovea-20260101T000000Z.sql.gz" in text and "production" in text
    assert "hunter2x" not in text and "Zk39fj20slq0vn3" not in text


def test_engine_warnings_reach_stderr_with_secrets_masked(capsys):
    import logging

    from fovea_tui.cli.main import main

    masking.register("warn-secret-9f8e7d6c")
    with pytest.raises(SystemExit):
        main(["--version"])  # installs the CLI's logging before it parses anything
    capsys.readouterr()
    logging.getLogger("fovea_tui.engine.infra.audit").warning("audit log not written: warn-secret-9f8e7d6c")
    err = capsys.readouterr().err
    assert "audit log not written" in err and "warn-secret-9f8e7d6c" not in err
