#!/usr/bin/env python3
"""fovea-tui's backup against the runbook's `pg_dump | gzip > file` and a bare pg_dump.

A pgserver PostgreSQL 16 cluster seeded with the sandbox data at a large scale (a dump of
a few hundred MB). Each round runs, in rotating order:
  bare      pg_dump DB > /dev/null                      (the floor: pg_dump alone)
  runbook   pg_dump DB | gzip > file                    (the runbook's nightly line)
  fovea     run_backup(settings, offsite=False)          (in a fresh Python process)
Reported: medians over the rounds, ratios fovea/runbook and fovea/bare (both timed in
the same round), and fovea's peak RSS. Targets: fovea <= 0.5x runbook, <= 1.3x bare,
peak memory < 150 MB. Environment: BENCH_SCALE (default 2500), BENCH_ROUNDS (default 5).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from support.services import PgCluster, pg_install_dir  # noqa: E402  (the tests' throwaway cluster)

SCALE = int(os.environ.get("BENCH_SCALE", "2500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

CHILD = r"""
import json, resource, sys, time
from fovea_tui.config import settings_from_dict
from fovea_tui.engine.backups.pipeline import run_backup
settings = settings_from_dict(json.loads(sys.argv[1]))
t = time.perf_counter()
result = run_backup(settings, offsite=False)
elapsed = time.perf_counter() - t
print(json.dumps({"engine_s": elapsed, "size": result.size, "raw": result.raw_bytes,
                  "rows": result.rows, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    prefix = pg_install_dir()
    if prefix is None:
        print("the pgserver wheel is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    bin_dir = prefix / "bin"
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-backup-"))
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        t = time.perf_counter()
        cluster.bootstrap(scale=SCALE)
        print(f"seeded scale {SCALE} in {time.perf_counter() - t:.0f} s", flush=True)
        env = cluster.tcp_env()
        pg_dump = str(bin_dir / "pg_dump")
        config = {"install": {"env_file": str(work / "none.env")},
                  "database": {"mode": "direct", "url": cluster.url},
                  "backups": {"dir": str(work / "backups")}}
        child_env = {**os.environ, "FOVEA_TUI_PG_BIN": str(bin_dir)}

        def bare() -> None:
            subprocess.run(f"'{pg_dump}' --no-password fovea > /dev/null", shell=True, check=True, env=env)

        def runbook() -> None:
            subprocess.run(f"'{pg_dump}' --no-password fovea | gzip > '{work}/runbook.sql.gz'", shell=True,
                           check=True, env=env)

        fovea_info: list[dict] = []

        def fovea() -> None:
            shutil.rmtree(work / "backups", ignore_errors=True)
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], check=True,
                                 capture_output=True, text=True, env=child_env, cwd=ROOT)
            fovea_info.append(json.loads(out.stdout.strip().splitlines()[-1]))

        runners = {"bare": bare, "runbook": runbook, "fovea": fovea}
        times: dict[str, list[float]] = {k: [] for k in runners}
        ratios_runbook, ratios_bare, ratios_bare_engine = [], [], []
        bare()  # warm the cache once
        for i in range(ROUNDS):
            names = list(runners)
            names = names[i % 3:] + names[: i % 3]
            rnd = {name: timed(runners[name]) for name in names}
            for name, v in rnd.items():
                times[name].append(v)
            engine = fovea_info[-1]["engine_s"]
            ratios_runbook.append(rnd["fovea"] / rnd["runbook"])
            ratios_bare.append(rnd["fovea"] / rnd["bare"])
            ratios_bare_engine.append(engine / rnd["bare"])
            print(f"round {i + 1}: bare {rnd['bare']:.2f} s, runbook {rnd['runbook']:.2f} s, "
                  f"fovea {rnd['fovea']:.2f} s (engine {engine:.2f} s)", flush=True)
        runbook_size = (work / "runbook.sql.gz").stat().st_size
        last = fovea_info[-1]
        med = {k: statistics.median(v) for k, v in times.items()}
        peak_mb = max(f["maxrss_kb"] for f in fovea_info) / 1024
        r_runbook = statistics.median(ratios_runbook)
        r_bare = statistics.median(ratios_bare)
        r_bare_engine = statistics.median(ratios_bare_engine)
        print()
        print(f"dump: {last['raw'] / 2**20:.0f} MiB of SQL, {last['rows']} rows; gzip: fovea "
              f"{last['size'] / 2**20:.0f} MiB, runbook {runbook_size / 2**20:.0f} MiB")
        print(f"median wall time over {ROUNDS} rounds: bare pg_dump {med['bare']:.2f} s, "
              f"pg_dump | gzip {med['runbook']:.2f} s, fovea-tui {med['fovea']:.2f} s (whole process)")
        checks = [
            (f"fovea / runbook  = {r_runbook:.2f}  (target <= 0.50)", r_runbook <= 0.5),
            (f"fovea / bare     = {r_bare:.2f}  (target <= 1.30; whole process incl. interpreter start)",
             r_bare <= 1.3),
            (f"engine / bare    = {r_bare_engine:.2f}  (run_backup() alone)", r_bare_engine <= 1.3),
            (f"peak RSS         = {peak_mb:.0f} MB (target < 150)", peak_mb < 150),
        ]
        for text, ok in checks:
            print(f"  [{'ok' if ok else 'MISS'}] {text}")
        return 0
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
