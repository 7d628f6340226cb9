#!/usr/bin/env python3
"""Selective restore: compare a dump with live and bring back one video, against a full restore.

A pgserver PostgreSQL 16 cluster seeded with the sandbox data (BENCH_SCALE 5000: 1,000,000
annotations), backed up with fovea-tui; then one video's annotations are deleted live. Timed:
  full restore   the dump streamed into a fresh database (what `restore` does to the data)
  load           the same dump into the scratch database a comparison uses (same work)
  compare        the streamed keyed merge of every video and persona, both databases
  scan x2        the floor: md5 of every row of the compared tables, once per database
  one video      `restore --video` of that video (rows, change set, undo file, transaction)
Reported: the times, compare / (scan x2), and the peak RSS of the comparing process (the merge
must not hold rows). Environment: BENCH_SCALE (default 5000).
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.services import PgCluster, pg_install_dir  # noqa: E402  (the tests' throwaway cluster)

from fovea_tui.config import settings_from_dict  # noqa: E402
from fovea_tui.engine.backups.pipeline import run_backup  # noqa: E402
from fovea_tui.engine.drill.run import ScratchStreamContext  # noqa: E402
from fovea_tui.engine.infra.database import open_database  # noqa: E402
from fovea_tui.engine.progress import CancelToken, no_progress  # noqa: E402
from fovea_tui.engine.restore.steps import stream_dump  # noqa: E402
from fovea_tui.engine.selective.scopes import PARTS  # noqa: E402
from fovea_tui.engine.selective.session import open_session  # noqa: E402

SCALE = int(os.environ.get("BENCH_SCALE", "5000"))


def main() -> int:
    prefix = pg_install_dir()
    if prefix is None:
        print("the pgserver wheel is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    bin_dir = prefix / "bin"
    os.environ["FOVEA_TUI_PG_BIN"] = str(bin_dir)
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-selective-"))
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        t = time.perf_counter()
        cluster.bootstrap(scale=SCALE)
        print(f"seeded scale {SCALE} in {time.perf_counter() - t:.0f} s", flush=True)
        (work / "fovea.env").write_text("SESSION_SECRET=bench\n")
        os.chmod(work / "fovea.env", 0o600)
        settings = settings_from_dict({"install": {"env_file": str(work / "fovea.env")},
                                       "database": {"mode": "direct", "url": cluster.url},
                                       "backups": {"dir": str(work / "backups")}})
        dump = run_backup(settings, offsite=False)
        print(f"dump {dump.path.name}: {dump.size / 2**20:.0f} MiB, {dump.rows} rows",
              flush=True)
        video = cluster.psql('SELECT "videoId" FROM annotations GROUP BY 1 ORDER BY count(*) DESC LIMIT 1').strip()
        lost = int(cluster.psql(f"WITH d AS (DELETE FROM annotations WHERE \"videoId\" = '{video}' RETURNING 1) "
                                "SELECT count(*) FROM d").strip())
        db = open_database(settings)

        t = time.perf_counter()
        db.create_database("bench_full_restore")
        stream_dump(ScratchStreamContext(db, CancelToken(), no_progress, dump.path.name), dump.path, "bench_full_restore")
        full = time.perf_counter() - t

        t = time.perf_counter()
        scans = 0.0
        for database in (db.name, "bench_full_restore"):
            for kind in PARTS:
                for part in PARTS[kind]:
                    s = time.perf_counter()
                    cluster.psql(f"SELECT sum(length(md5(t::text))) FROM \"{part.table}\" t", database)
                    scans += time.perf_counter() - s
        db.drop_database("bench_full_restore")

        t = time.perf_counter()
        with open_session(settings, dump.path.name) as session:
            load = time.perf_counter() - t
            comparison = session.compare()
            merge = comparison.duration_s
            first = comparison.differing[0]
            t = time.perf_counter()
            result = session.apply(session.changeset(session.find("video", video), "replace"))
            one = time.perf_counter() - t
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print()
        print(f"most different: {first.summary()}")
        print(f"one video back: {result.message}")
        print(f"full restore of the dump      {full:8.1f} s")
        print(f"load into the scratch db      {load:8.1f} s  (includes verifying the dump)")
        print(f"compare (streamed merge)      {merge:8.1f} s  for {len(comparison.scopes)} videos and personas")
        print(f"md5 scan of both databases    {scans:8.1f} s  (the floor: two sequential scans)")
        print(f"restore --video ({lost} rows)   {one:8.1f} s")
        print(f"  compare / scans = {merge / scans:.2f}; compare+load / full restore = {(merge + load) / full:.2f}")
        print(f"  peak RSS of this process: {rss:.0f} MB (the merge holds counters per scope, not rows)")
        return 0
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
