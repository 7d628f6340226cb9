#!/usr/bin/env python3
"""`backup` with `[encryption]` against the same backup without it, side by side.

A pgserver PostgreSQL 16 cluster seeded at BENCH_SCALE; each round runs, in alternating order,
in a fresh Python process each:
  plain      run_backup(settings) with an off-site directory, no recipients
  encrypted  run_backup(settings) with the same off-site directory and one age recipient
Reported: the median of the per-round ratio encrypted/plain (target <= 1.10), both peak RSS,
and pyrage's throughput on the compressed dump next to the dump pipeline's (raw SQL per
second), which is why encrypting the compressed file after the dump costs little.
Environment: BENCH_SCALE (default 1500), BENCH_ROUNDS (default 5).
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

SCALE = int(os.environ.get("BENCH_SCALE", "1500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))

CHILD = r"""
import json, resource, shutil, sys, time
from pathlib import Path
from fovea_tui.config import settings_from_dict
from fovea_tui.engine.backups.pipeline import run_backup
settings = settings_from_dict(json.loads(sys.argv[1]))
t = time.perf_counter()
result = run_backup(settings)
elapsed = time.perf_counter() - t
print(json.dumps({"engine_s": elapsed, "size": result.size, "raw": result.raw_bytes,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

THROUGHPUT = r"""
import sys, time
from pathlib import Path
from fovea_tui.engine.backups import age_keys, encryption
src = Path(sys.argv[1])
ident = age_keys.x25519.Identity.generate()
rec = age_keys.parse_recipient(str(ident.to_public()))
t = time.perf_counter()
encryption.encrypt_file(src, src.with_name("probe.age"), [rec], plaintext_sha256="")
print(time.perf_counter() - t)
"""


def main() -> int:
    prefix = pg_install_dir()
    if prefix is None:
        print("the pgserver wheel is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    bin_dir = prefix / "bin"
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-enc-"))
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        t = time.perf_counter()
        cluster.bootstrap(scale=SCALE)
        print(f"seeded scale {SCALE} in {time.perf_counter() - t:.0f} s", flush=True)
        env_file = work / "install.env"
        env_file.write_text("SESSION_SECRET=bench\nDATABASE_URL=postgresql://x@y/z\n")
        os.chmod(env_file, 0o600)
        identity = work / "identity.txt"
        out = subprocess.run([sys.executable, "-m", "fovea_tui", "keygen", "--out", str(identity), "--json"],
                             check=True, capture_output=True, text=True, cwd=ROOT)
        recipient = json.loads(out.stdout)["recipient"]
        base = {"install": {"env_file": str(env_file)}, "database": {"mode": "direct", "url": cluster.url},
                "backups": {"dir": str(work / "backups"), "offsite": str(work / "offsite")}}
        configs = {"plain": base, "encrypted": {**base, "encryption": {"recipients": [recipient]}}}
        child_env = {**os.environ, "FOVEA_TUI_PG_BIN": str(bin_dir)}
        info: dict[str, list[dict]] = {k: [] for k in configs}
        walls: dict[str, list[float]] = {k: [] for k in configs}

        def run(kind: str) -> float:
            for d in ("backups", "offsite"):
                shutil.rmtree(work / d, ignore_errors=True)
            (work / "offsite").mkdir()
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(configs[kind])], check=True,
                                  capture_output=True, text=True, env=child_env, cwd=ROOT)
            wall = time.perf_counter() - t
            info[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
            return wall

        run("plain")  # warm the cache once
        ratios = []
        for i in range(ROUNDS):
            order = ["plain", "encrypted"] if i % 2 == 0 else ["encrypted", "plain"]
            rnd = {kind: run(kind) for kind in order}
            for kind, v in rnd.items():
                walls[kind].append(v)
            ratios.append(rnd["encrypted"] / rnd["plain"])
            print(f"round {i + 1}: plain {rnd['plain']:.2f} s, encrypted {rnd['encrypted']:.2f} s, "
                  f"ratio {ratios[-1]:.3f}", flush=True)
        # pyrage alone on the compressed dump of the last round, beside the pipeline's rate
        run("plain")
        dump = next((work / "backups").glob("fovea-*.sql.gz"))
        enc_s = float(subprocess.run([sys.executable, "-c", THROUGHPUT, str(dump)], check=True, capture_output=True,
                                     text=True, cwd=ROOT).stdout.strip())
        last = info["plain"][-1]
        pipeline_rate = last["raw"] / last["engine_s"] / 2**20
        enc_rate = dump.stat().st_size / enc_s / 2**20
        ratio = statistics.median(ratios)
        peak = {k: max(x["maxrss_kb"] for x in v) / 1024 for k, v in info.items()}
        print()
        print(f"dump: {last['raw'] / 2**20:.0f} MiB of SQL, {last['size'] / 2**20:.0f} MiB gzip")
        med_plain, med_enc = statistics.median(walls["plain"]), statistics.median(walls["encrypted"])
        print(f"median wall time over {ROUNDS} rounds (dump + off-site copy, whole process): plain "
              f"{med_plain:.2f} s, encrypted {med_enc:.2f} s (ratio of the medians {med_enc / med_plain:.3f}; "
              f"per-round ratios {min(ratios):.2f}-{max(ratios):.2f})")
        print(f"dump pipeline {pipeline_rate:.0f} MiB/s of SQL; pyrage {enc_rate:.0f} MiB/s on the gzip file")
        checks = [
            (f"encrypted / plain = {ratio:.3f}  (target <= 1.10)", ratio <= 1.10),
            (f"peak RSS           = plain {peak['plain']:.0f} MB, encrypted {peak['encrypted']:.0f} MB "
             "(target: within 20 MB)", peak["encrypted"] - peak["plain"] < 20),
        ]
        for text, ok in checks:
            print(f"  [{'ok' if ok else 'MISS'}] {text}")
        return 0
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
