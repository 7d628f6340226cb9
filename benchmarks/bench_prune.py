#!/usr/bin/env python3
"""What prune's read-before-delete costs: `fovea-tui prune` reads every dump it keeps end to
end (gzip CRCs, pg_dump's completion line, sha256 against the manifest) before deleting.

A backups directory of BENCH_DUMPS daily dumps of about BENCH_DUMP_MB MiB each (pg_dump
COPY text, gzip'd), all verified and cached, and a policy keeping BENCH_KEEP of them. Each
round runs, in rotating order:
  fovea     fovea-tui prune --dry-run --keep-daily K (a fresh process; reads the K kept dumps)
  plan      the same plan without reads (engine.backups.prune.build_plan: what prune did before)
  gunzip    gunzip -t on the K kept dumps (the peer: the cheapest check a person would run)
Reported: medians, the bytes read, MiB/s, and the ratio fovea/gunzip. The dry run reads
exactly what a real prune reads, and deletes nothing, so every round sees the same dumps.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bytecode import compile_package  # noqa: E402  (benchmarks/bytecode.py)
from support.backup_history import History, make_settings  # noqa: E402

DUMPS = int(os.environ.get("BENCH_DUMPS", "20"))
KEEP = int(os.environ.get("BENCH_KEEP", "14"))
DUMP_MB = int(os.environ.get("BENCH_DUMP_MB", "32"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def dump_data(mib: int) -> bytes:
    """pg_dump-like COPY rows (ids, uuids, timestamps, text), gzip'd, about `mib` MiB."""
    import gzip

    rng = random.Random(7)
    words = ["frame", "label", "track", "object", "person", "car", "annotation", "video", "clip", "box"]
    out = [b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.annotations (id, video_id, label, t, box) FROM stdin;\n"]
    size = 0
    i = 0
    while size < mib * (9 << 20) // 4:  # about 2.2:1 at gzip level 1 for this text (random ids)
        line = (f"{i}\t{rng.getrandbits(128):032x}\t{rng.choice(words)} {rng.choice(words)}\t"
                f"2026-11-{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00+00\t"
                f"{{{rng.random():.6f},{rng.random():.6f},{rng.random():.6f},{rng.random():.6f}}}\n").encode()
        out.append(line)
        size += len(line)
        i += 1
    out.append(b"\\.\n\n--\n-- PostgreSQL database dump complete\n--\n\n")
    return gzip.compress(b"".join(out), compresslevel=1)


def main() -> int:
    from fovea_tui.engine.backups.prune import build_plan

    compile_package()  # the timed `prune` runs are fresh processes: never timing the compiler
    work = Path(tempfile.mkdtemp(prefix="bench-prune-"))
    try:
        settings = make_settings(work, keep_daily=KEEP, keep_weekly=0)
        config = work / "fovea-tui.toml"
        config.write_text(f'[backups]\ndir = "{settings.backups_dir}"\n[retention]\ntimezone = "UTC"\n')
        data = dump_data(DUMP_MB)
        start = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0) - timedelta(days=DUMPS)
        paths = History(settings).daily(start, DUMPS, data=data)
        kept = paths[-KEEP:]
        read_mib = sum(p.stat().st_size for p in kept) / 2**20

        def fovea() -> None:
            subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), "prune", "--dry-run",
                            "--keep-daily", str(KEEP), "--keep-weekly", "0", "--json"],
                           check=True, capture_output=True, cwd=ROOT)

        def plan() -> None:
            build_plan(settings)

        def gunzip() -> None:
            subprocess.run(["gunzip", "-t", *map(str, kept)], check=True)

        runs = {"fovea": fovea, "plan": plan, "gunzip": gunzip}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(ROUNDS):
            order = list(runs)[r % 3:] + list(runs)[: r % 3]
            for name in order:
                t = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"{DUMPS} dumps of {data.__len__() / 2**20:.1f} MiB, policy keeps {KEEP}: "
              f"prune reads {read_mib:.0f} MiB ({ROUNDS} rounds, medians)")
        print(f"  fovea-tui prune --dry-run  {med['fovea']:7.2f} s  ({read_mib / med['fovea']:.0f} MiB/s)")
        print(f"  plan without reads        {med['plan']:7.2f} s  (what prune cost before)")
        print(f"  gunzip -t on the kept     {med['gunzip']:7.2f} s  ({read_mib / med['gunzip']:.0f} MiB/s)")
        print(f"  fovea/gunzip: {med['fovea'] / med['gunzip']:.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
