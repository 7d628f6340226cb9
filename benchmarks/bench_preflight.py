#!/usr/bin/env python3
"""Pre-flight's read of the whole dump against gzip's own reading of the same file.

A pgserver PostgreSQL 16 cluster seeded with the sandbox data (Fovea's schema: annotations,
claims, summaries, videos...) at BENCH_SCALE (default 1000: a dump of about 40 MB), dumped
by fovea-tui's backup (so it has its manifest). Each round runs, in rotating order:
  test      gunzip -t FILE                    (gzip's integrity check: the floor)
  cat       gunzip -c FILE > /dev/null        (decompressing the whole stream)
  fovea     what pre-flight's dump check does: verify_and_scan (ISA-L; every gzip member's
            CRC, the completion line, size and sha256 against the manifest, rows per table,
            and the videos rows), timed inside a fresh Python process around the call only
            (in a restore it runs inside the already started runner)
Reported: medians of wall time and of CPU time (user + system; the machine may be shared,
CPU time is the steadier figure) and the medians of per-round ratios fovea/test and
fovea/cat. Target: fovea no slower than `gunzip -t` (ratio <= 1.0).
Environment: BENCH_SCALE (default 1000), BENCH_ROUNDS (default 7).
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

SCALE = int(os.environ.get("BENCH_SCALE", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))

BACKUP = r"""
import json, sys
from fovea_tui.config import settings_from_dict
from fovea_tui.engine.backups.pipeline import run_backup
print(json.dumps({"path": str(run_backup(settings_from_dict(json.loads(sys.argv[1])), offsite=False).path)}))
"""

PREFLIGHT = r"""
import json, sys, time
from pathlib import Path
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.dumpscan import verify_and_scan
path = Path(sys.argv[1])
manifest = mf.read_for(path)
events = []
wall, cpu = time.perf_counter(), time.process_time()
result, scan = verify_and_scan(path, manifest, progress=events.append)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
assert result.status == "verified", result.reasons
print(json.dumps({"wall": wall, "cpu": cpu, "videos": len(scan.videos or []), "rows": sum(result.tables.values()),
                  "sql": result.uncompressed_size, "events": len(events), "last": events[-1].done}))
"""


def timed_child(argv: list[str], stdout=subprocess.PIPE, **kw) -> tuple[float, float, bytes]:
    """(wall seconds, CPU seconds, stdout when piped) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, **kw)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench_preflight: {argv[:3]} failed")
    return wall, usage.ru_utime + usage.ru_stime, out


def main() -> int:
    prefix = pg_install_dir()
    if prefix is None:
        print("the pgserver wheel is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    gunzip = shutil.which("gunzip")
    if gunzip is None:
        print("no gunzip on PATH: it is the peer to compare with", file=sys.stderr)
        return 1
    bin_dir = prefix / "bin"
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-preflight-"))
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        t = time.perf_counter()
        cluster.bootstrap(scale=SCALE)
        print(f"seeded scale {SCALE} in {time.perf_counter() - t:.0f} s", flush=True)
        env_file = work / ".env"  # the backup copies the install's env file beside the dump
        env_file.write_text("SESSION_SECRET=bench\n")
        config = {"install": {"env_file": str(env_file)},
                  "database": {"mode": "direct", "url": cluster.url},
                  "backups": {"dir": str(work / "backups")}}
        out = subprocess.run([sys.executable, "-c", BACKUP, json.dumps(config)], capture_output=True,
                             text=True, env={**os.environ, "FOVEA_TUI_PG_BIN": str(bin_dir)}, cwd=ROOT)
        if out.returncode != 0:
            raise SystemExit(f"bench_preflight: the backup failed: {out.stderr[-2000:]}")
        dump = Path(json.loads(out.stdout.strip().splitlines()[-1])["path"])
    finally:
        cluster.stop()
    try:
        size = dump.stat().st_size
        info: list[dict] = []

        def test() -> tuple[float, float]:
            wall, cpu, _ = timed_child([gunzip, "-t", str(dump)])
            return wall, cpu

        def cat() -> tuple[float, float]:
            with open(os.devnull, "wb") as null:
                wall, cpu, _ = timed_child([gunzip, "-c", str(dump)], stdout=null)
            return wall, cpu

        def fovea() -> tuple[float, float]:
            _, _, out = timed_child([sys.executable, "-c", PREFLIGHT, str(dump)], cwd=ROOT)
            info.append(json.loads(out.decode().strip().splitlines()[-1]))
            return info[-1]["wall"], info[-1]["cpu"]

        runners = {"test": test, "cat": cat, "fovea": fovea}
        for fn in runners.values():
            fn()  # the file in the page cache, bytecode warm: not counted
        info.clear()
        wall: dict[str, list[float]] = {k: [] for k in runners}
        cpu: dict[str, list[float]] = {k: [] for k in runners}
        ratios: dict[str, list[float]] = {"test": [], "cat": [], "test_cpu": [], "cat_cpu": []}
        for i in range(ROUNDS):
            names = list(runners)
            names = names[i % 3:] + names[: i % 3]
            rnd = {name: runners[name]() for name in names}
            for name, (w, c) in rnd.items():
                wall[name].append(w)
                cpu[name].append(c)
            for peer in ("test", "cat"):
                ratios[peer].append(rnd["fovea"][0] / rnd[peer][0])
                ratios[f"{peer}_cpu"].append(rnd["fovea"][1] / rnd[peer][1])
            print(f"round {i + 1}: gunzip -t {rnd['test'][0]:.2f} s, gunzip -c {rnd['cat'][0]:.2f} s, "
                  f"pre-flight read {rnd['fovea'][0]:.2f} s", flush=True)
        med = statistics.median
        last = info[-1]
        print()
        print(f"dump: {size / 2**20:.1f} MiB gzip, {last['sql'] / 2**20:.0f} MiB of SQL, {last['rows']:,} rows, "
              f"{last['videos']:,} videos; progress events per read: {last['events']} (last at "
              f"{last['last']:,} of {size:,} bytes)")
        print(f"median over {ROUNDS} rounds   wall      CPU")
        for name, title in (("test", "gunzip -t"), ("cat", "gunzip -c > /dev/null"), ("fovea", "pre-flight's read")):
            print(f"  {title:<22} {med(wall[name]):6.3f} s  {med(cpu[name]):6.3f} s")
        r_test, r_cat = med(ratios["test"]), med(ratios["cat"])
        print(f"pre-flight / gunzip -t = {r_test:.2f} (CPU {med(ratios['test_cpu']):.2f}; target <= 1.0)")
        print(f"pre-flight / gunzip -c = {r_cat:.2f} (CPU {med(ratios['cat_cpu']):.2f})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
