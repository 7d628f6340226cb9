"""Secrets and access, tried on purpose: no secret from the env file, the database URL or the
S3 credentials in anything fovea-tui prints or writes (stdout/stderr of every command, JSON,
the state dir with its audit log, job state and logs, the backups dir except the env copies,
the crash log, the TUI's screens) nor on any process's command line while it runs. Files that
hold secrets are 0600, directories fovea-tui creates 0700, and nothing goes through a shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets as _random
import stat
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from test_backup_helpers import REPO, run_cli, settings_and_config

from fovea_tui import masking as fsecrets
from fovea_tui.config import settings_from_dict
from fovea_tui.envfile import EnvFile

PACKAGE = REPO / "fovea_tui"


# ---------------------------------------------------------------- nothing through a shell


def test_no_shell_anywhere_in_the_package():
    offenders = []
    pattern = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|os\.exec[lv]p?e?\(|commands\.getoutput|"
                         r"pty\.spawn\(|subprocess\.(?:run|call|check_call|check_output|Popen)\(\s*f?[\"']")
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "a command built from a string, or a shell:\n" + "\n".join(offenders)


def test_client_tools_get_argv_lists_and_passwords_only_in_the_environment(tmp_path):
    """The URL with every special character: libpq gets it in PG* variables, argv stays clean."""
    from fovea_tui.engine.infra.database import DirectDatabase
    from fovea_tui.envfile import DatabaseURL

    password = "p@ss:w/rd#%&\"' $x;`rm -rf /`"
    url = DatabaseURL.parse(f"postgresql://fovea:{quote(password, safe='')}@127.0.0.1:1/fo%20vea")
    assert url.password == password and url.database == "fo vea"
    db = DirectDatabase(url, bin_dir=Path("/bin"))
    seen = {}

    import fovea_tui.engine.infra.database as database

    class Spy:
        def __init__(self, argv, env, *, stdin=False):
            seen["argv"], seen["env"] = list(argv), dict(env)

    original = database.LocalProcess
    database.LocalProcess = Spy
    try:
        db.dump()
    finally:
        database.LocalProcess = original
    assert isinstance(seen["argv"], list) and all(password not in a for a in seen["argv"])
    assert seen["argv"][-1] == "fo vea"  # one argument, spaces and all: no shell splits it
    assert seen["env"]["PGPASSWORD"] == password
    assert password not in repr(url) and password not in str(url)


# ---------------------------------------------------------------- the whole run, grepped


@pytest.fixture
def secret_install(fresh_direct_db, tmp_path, s3_bucket, s3):
    """A direct-mode install whose env file, database URL and S3 credentials are all secrets."""
    values = {
        "DATABASE_URL": fresh_direct_db.url,
        "POSTGRES_PASSWORD": fresh_direct_db.password,
        "SESSION_SECRET": "sess-" + _random.token_hex(16),
        "API_KEY_ENCRYPTION_KEY": "enc-" + _random.token_hex(16),
        "ADMIN_PASSWORD": "adm-" + _random.token_hex(8),
        "STORAGE_PATH": str(tmp_path / "videos"),
    }
    env_file = tmp_path / "install" / ".env"
    env_file.parent.mkdir()
    lines = ["# generated for the secrets test", "export NODE_ENV=production"]
    lines += [f"{k}='{v}'" if "'" not in v else f'{k}="{v}"' for k, v in values.items()]
    env_file.write_text("\n".join(lines) + "\n")
    os.chmod(env_file, 0o600)
    (tmp_path / "videos").mkdir()
    aws = {"AWS_ACCESS_KEY_ID": "AKIA" + _random.token_hex(8).upper(),
           "AWS_SECRET_ACCESS_KEY": "aws-" + _random.token_hex(20),
           "AWS_SESSION_TOKEN": "tok-" + _random.token_hex(20)}
    data = {
        "install": {"env_file": str(env_file), "compose_project": "fovea-no-such-project"},
        "database": {"mode": "direct"},
        "backups": {"dir": str(tmp_path / "backups"), "offsite": f"s3://{s3_bucket}/prefix/"},
        "volume": {"path": str(tmp_path / "videos")},
        "s3": {"endpoint_url": s3.endpoint_url, "region": "us-east-1"},
    }
    settings, cfg = settings_and_config(tmp_path, data)
    env = {**aws, "FOVEA_TUI_PG_BIN": str(fresh_direct_db.bin_dir), "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
           "HOME": str(tmp_path / "home")}
    password = fresh_direct_db.password
    secret_values = [v for k, v in values.items() if k != "STORAGE_PATH"] + list(aws.values()) + [
        password, quote(password, safe="")]
    return settings, cfg, env, secret_values


def _scan_proc_cmdlines(stop: threading.Event, found: list[str], secret_values: list[str]) -> None:
    own = os.getpid()
    while not stop.is_set():
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                    cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            for value in secret_values:
                if value in cmdline:
                    found.append(f"pid {entry.name}: {cmdline[:200]}")
        time.sleep(0.005)


def test_no_secret_in_any_output_file_or_command_line(secret_install, tmp_path):
    settings, cfg, env, secret_values = secret_install
    stop, on_cmdline = threading.Event(), []
    sampler = threading.Thread(target=_scan_proc_cmdlines, args=(stop, on_cmdline, secret_values), daemon=True)
    sampler.start()
    runs = []
    try:
        for args in (["backup", "--json"], ["backup"], ["list", "--json"], ["list"], ["verify", "--json"],
                     ["status", "--json"], ["status"], ["prune", "--dry-run", "--json"], ["metrics"]):
            runs.append((args, run_cli("--config", str(cfg), *args, env=env, timeout=180)))
        dump = json.loads(runs[0][1].stdout)["path"]
        runs.append((["restore"], run_cli("--config", str(cfg), "restore", Path(dump).name, "--yes", "--json",
                                          env=env, timeout=300)))
        # Failures print the most: a wrong password, an S3 store that refuses the upload.
        wrong = "wrong-" + _random.token_hex(8)
        secret_values.append(wrong)
        good_url = EnvFile.load(settings.install.env_file).get("DATABASE_URL")
        userinfo = good_url.split("@")[0].rsplit(":", 1)[0]
        (tmp_path / "bad").mkdir()
        bad_url = settings_and_config(tmp_path / "bad", {
            "install": {"env_file": settings.install.env_file},
            "database": {"mode": "direct", "url": userinfo + ":" + wrong + "@" + good_url.split("@", 1)[1]},
            "backups": {"dir": str(tmp_path / "bad-backups")}})
        runs.append((["backup-bad"], run_cli("--config", str(bad_url[1]), "backup", "--json", env=env,
                                             timeout=120)))
        cfg_nobucket = tmp_path / "nobucket.toml"
        cfg_nobucket.write_text(cfg.read_text().replace(settings.backups.offsite, "s3://no-such-bucket-xyz/p/"))
        runs.append((["backup-nobucket"], run_cli("--config", str(cfg_nobucket), "backup", "--json",
                                                  env=env, timeout=120)))
    finally:
        stop.set()
        sampler.join()
    codes = {" ".join(a): r.returncode for a, r in runs}
    assert codes["backup --json"] == 0 and codes["restore"] == 0, [r.stderr for _, r in runs]
    assert codes["backup-nobucket"] == 1, runs[-1][1].stderr
    assert codes["backup-bad"] == 1 and "password authentication failed" in runs[-2][1].stderr
    assert on_cmdline == [], on_cmdline

    texts: dict[str, str] = {}
    for args, r in runs:
        texts[f"stdout of {' '.join(args)}"] = r.stdout
        texts[f"stderr of {' '.join(args)}"] = r.stderr
    for root in (settings.backups_dir, tmp_path / "bad-backups", tmp_path / "xdg-state", tmp_path / "home"):
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if path.is_file() and not path.name.endswith(".env"):
                texts[str(path)] = path.read_bytes().decode("utf-8", "replace") if not path.name.endswith(
                    ".gz") else ""
    for path in settings.backups_dir.rglob("*"):
        if path.is_file() and path.name.endswith(".env"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    leaks = [(where, value[:6] + "…") for where, text in texts.items() for value in secret_values if value in text]
    assert leaks == []
    assert len(texts) > 20  # the state dir, audit log, job state and log were all read


def test_files_fovea_tui_creates_are_private(secret_install):
    settings, cfg, env, _ = secret_install
    r = run_cli("--config", str(cfg), "backup", "--no-offsite", env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    r = run_cli("--config", str(cfg), "restore", "--json", "--yes",
                next(p.name for p in settings.backups_dir.glob("*.sql.gz")), env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for path in [settings.backups_dir, *settings.backups_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {mode:o}"
        else:
            assert mode & 0o077 == 0, f"{path} is {mode:o}"


def test_crash_log_is_private_and_redacted(tmp_path, monkeypatch, capsys):
    """An unexpected error: one line, a redacted traceback in a 0600 file under a 0700 dir."""
    from fovea_tui.cli import main as cli_main
    from fovea_tui.cli.commands import status as status_cmd

    secret = "crash-" + _random.token_hex(12)
    fsecrets.register(secret)
    backups = tmp_path / "nested" / "backups"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[backups]\ndir = "{backups}"\n')

    def boom(args, ctx):
        ctx.settings  # noqa: B018 - loaded, so the crash log goes to its state dir
        raise RuntimeError(f"connection string had {secret} in it")

    monkeypatch.setattr(status_cmd, "run", boom)
    old = os.umask(0o022)
    try:
        code = cli_main.main(["--config", str(cfg), "status"])
    finally:
        os.umask(old)
    err = capsys.readouterr().err
    assert code == 1 and "unexpected error" in err and secret not in err and "Traceback" not in err
    log = backups / ".fovea-tui" / "crash.log"
    assert log.is_file() and secret not in log.read_text() and "RuntimeError" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    for directory in (backups, backups / ".fovea-tui"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_env_file_values_are_all_masked_or_scrubbed(tmp_path):
    """Quotes, export, comments: every credential value parsed right and registered as a secret."""
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "export SESSION_SECRET='s3ss#not-a-comment'\n"
        'API_KEY_ENCRYPTION_KEY="enc with spaces"  # trailing comment\n'
        "DATABASE_URL=postgresql://u:pa%24%24word%40x@db:5432/fovea\n"
        "POSTGRES_DB=fovea\n")
    env = EnvFile.load(path)
    assert env.get("SESSION_SECRET") == "s3ss#not-a-comment"
    assert env.get("API_KEY_ENCRYPTION_KEY") == "enc with spaces"
    assert env.database_url().password == "pa$$word@x"
    text = "s3ss#not-a-comment / enc with spaces / pa$$word@x / fovea"
    redacted = fsecrets.redact(text)
    assert "s3ss" not in redacted and "enc with" not in redacted and "pa$$word" not in redacted
    assert redacted.endswith("/ fovea")  # plain settings survive
    assert set(env.masked().values()) == {fsecrets.MASK}


# ---------------------------------------------------------------- the TUI's screens


def test_tui_screens_show_no_secret(secret_install, monkeypatch):
    """Every screen of the app on the real install, exported as text: no value of the env file."""
    from fovea_tui.tui.app import SCREENS, create_app

    settings, _, env, secret_values = secret_install
    settings = settings_from_dict({**settings.to_toml_dict()})
    settings.source = Path(settings.backups.dir).parent / "fovea-tui.toml"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    EnvFile.load(settings.install.env_file)

    async def visit() -> list[str]:
        app = create_app(settings, poll_interval=0, watch_stack=False, first_run=False, animate=False,
                         cursor_blink=False)
        shots = []
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause(0.5)
            for spec in SCREENS:
                await pilot.press(spec.key)
                await pilot.pause(0.3)
                shots.append(app.export_screenshot())
        return shots

    shots = asyncio.run(visit())
    assert len(shots) >= 3
    for shot in shots:
        for value in secret_values:
            assert value not in shot and value.replace("&", "&amp;").replace('"', "&quot;") not in shot


@pytest.mark.parametrize("where", ["directory", "s3"])
def test_offsite_copies_and_fetched_copies_are_private(where, tmp_path, s3, s3_bucket):
    """A dump and its env copy hold everything: 0600 in an off-site directory, and 0600 when a
    restore fetches them back (whatever the umask)."""
    from support.backup_history import History, make_settings, mirror

    from fovea_tui.engine.infra import jobs
    from fovea_tui.engine.infra.stores import open_store
    from fovea_tui.engine.restore.context import RestoreContext
    from fovea_tui.engine.restore.steps import ChooseDump

    local = make_settings(tmp_path / "src")
    dump = History(local).add("fovea-20261101T020000Z.sql.gz")
    if where == "directory":
        url = str(tmp_path / "offsite")
        (tmp_path / "offsite").mkdir(mode=0o755)
        settings = make_settings(tmp_path, offsite=url)
    else:
        url = f"s3://{s3_bucket}/db/"
        settings = make_settings(tmp_path, offsite=url, endpoint_url=s3.endpoint_url)
    old = os.umask(0o022)
    try:
        mirror(local, open_store(url, settings.s3))
        if where == "directory":
            for path in (tmp_path / "offsite").iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        job_id = jobs.create_job(settings, "restore", {"dump": dump.name, "database": "fovea"})
        directory = jobs.jobs_dir(settings)
        handle = jobs.JobHandle(directory, job_id, jobs.read_state(directory, job_id), settings)
        try:
            ChooseDump().run(RestoreContext(handle))
        finally:
            handle.close()
    finally:
        os.umask(old)
    fetched = sorted(p.name for p in settings.backups_dir.iterdir() if p.is_file())
    assert fetched == sorted(p.name for p in local.backups_dir.iterdir() if p.is_file())
    for name in fetched:
        assert stat.S_IMODE((settings.backups_dir / name).stat().st_mode) == 0o600, name
