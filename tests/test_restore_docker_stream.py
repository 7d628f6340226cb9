"""Docker mode's restore stream on the compose-labelled test stack: psql may stay silent (and
stop reading) for longer than the Docker client's request timeout while the server works on
one statement (a slow CHECK, an index build on a loaded server), and the restore must wait
for it, not take the quiet for a lost session."""

from __future__ import annotations

import time

import pytest
from test_restore import marker_present, mutate, run_cli  # noqa: F401

from fovea_tui.config import save_settings
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.infra.database import open_database

pytestmark = pytest.mark.docker

SLOW_S = 22  # longer than the Docker client's timeout (10 s) plus the exec's exit wait (5 s)

# A table whose CHECK sleeps for each row while it is restored: its COPY comes first in the
# dump (tables' data by name), so psql neither reads nor writes for SLOW_S seconds while
# the rest of the dump waits behind it. The test's own insert sets the sleep to 0.
SLOW_TABLE = f"""
CREATE FUNCTION public.aaa_slow_check(v int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_catalog.pg_sleep(coalesce(nullif(pg_catalog.current_setting('fovea_test.sleep_s', true), ''),
                                       '{SLOW_S}')::float8);
  RETURN v IS NOT NULL;
END $$;
CREATE TABLE public.aaa_slow (v int CHECK (public.aaa_slow_check(v)));
SET fovea_test.sleep_s = '0';
INSERT INTO public.aaa_slow VALUES (1);
"""


def test_a_silent_statement_longer_than_the_client_timeout_does_not_fail_the_restore(stack, tmp_path):
    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    stack.psql(SLOW_TABLE)
    dump = run_backup(settings, offsite=False).path
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    mutate(stack)
    t0 = time.monotonic()
    result = run_cli(["--config", str(config), "restore", dump.name, "--yes"], timeout=300)
    took = time.monotonic() - t0
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lost its session" not in result.stdout + result.stderr
    assert took >= SLOW_S  # the slow statement really ran inside the restore
    assert not marker_present(stack)
    assert stack.psql("SELECT count(*) FROM aaa_slow").strip() == "1"
    rows = open_database(settings).table_rows()
    assert rows["aaa_slow"] == 1 and rows["annotations"] > 0


def test_the_reused_database_container_is_looked_up_again_once_it_stopped(stack, tmp_path):
    """The database's container id is reused between execs: once the container stops, the
    next call says the service is not running (no Docker API error), and works again once
    it is back."""
    from fovea_tui.errors import OperationFailed

    db = open_database(stack.settings(tmp_path))
    assert db.ping()  # the container id is now reused
    stack.container("postgres").stop(timeout=10)
    try:
        with pytest.raises(OperationFailed, match="service postgres is not running"):
            db.ping()
    finally:
        stack.container("postgres").start()
        stack.wait_pg_ready()
    assert db.table_rows()["annotations"] > 0
