#!/usr/bin/env python3
"""Volume sync, side by side with `aws s3 sync`, against one moto S3 server.

Measured in the same run (the machines are noisy, so only ratios mean anything):

1. first upload of a few thousand small files: `fovea-tui sync` vs `aws s3 sync`
   (target: fovea-tui at least as fast, ratio fovea/aws <= 1.0)
2. a re-run where nothing changed (target: fovea-tui at most half of aws's time, <= 0.5).
   fovea-tui reads the copy's contents from the snapshot its last sync left (checked by a
   marker object and a sample); the same re-run with `--full-listing`, which lists the
   bucket as aws does, is reported beside it (target: no slower than aws, <= 1.0)
3. peak RSS of `fovea-tui sync` with 1,000 and with 100,000 files (target: flat): a no-op
   re-sync against a directory target holding the same files (walk + listing + merge at
   full scale), and a dry-run plan of 100,000 uploads against an empty bucket.

Both tools run as child processes (startup included, as an operator's cron sees it) against
a moto server in its own process, with the same credentials and endpoint. Peak RSS comes
from wait4() on each child. Run standalone (`python benchmarks/bench_sync.py`) or from
benchmarks/run.py; `--quick` for a smaller, faster run; `--json` for machine output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bytecode import compile_package  # benchmarks/bytecode.py

REPO = Path(__file__).resolve().parent.parent
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoProcess:
    """moto's S3 server in its own process, so neither tool shares its GIL with the store."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MotoProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **ENV})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self) -> str:
        name = f"bench-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


def make_volume(root: Path, files: int, *, min_size: int = 2048, max_size: int = 24 * 1024,
                thumbs_every: int = 4) -> int:
    """`files` small blobs (a fixed pseudo-random size mix), a quarter of them in thumbnails/."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "thumbnails").mkdir(exist_ok=True)
    block = os.urandom(max_size)
    total = 0
    span = max_size - min_size
    for i in range(files):
        size = min_size + (i * 7919) % (span + 1)
        name = f"thumbnails/{i:07x}.jpg" if thumbs_every and i % thumbs_every == 0 else f"{i:07x}.mp4"
        with open(root / name, "wb") as fh:
            fh.write(block[:size])
        total += size
    return total


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, int, int, str]:
    """(seconds, exit status, peak RSS in bytes, stdout) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = b"", b""
    # read the pipes before reaping: a child blocked on a full pipe never exits
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        sys.stderr.write(f"bench: {' '.join(argv[:6])}... exited {proc.returncode}: {err.decode()[-2000:]}\n")
    return elapsed, proc.returncode, usage.ru_maxrss * 1024, out.decode()


def fovea_cmd(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "fovea_tui", "--config", str(config), "sync", "--json", *extra]


def aws_cmd(volume: Path, url: str, endpoint: str) -> list[str]:
    peers = REPO / ".venv-peers" / "bin" / "aws"  # where `make bench` installs it
    aws = str(peers) if peers.exists() else shutil.which("aws")
    if aws is None:
        raise SystemExit("bench_sync: no aws CLI (run `make bench`, which installs it, or put one on PATH); "
                         "it is the peer to compare with")
    return [aws, "s3", "sync", str(volume), url, "--endpoint-url", endpoint, "--only-show-errors", "--no-progress"]


def write_config(path: Path, *, volume: Path, target: str, endpoint: str, state: Path) -> Path:
    path.write_text(
        f'[backups]\ndir = "{state}"\n\n'
        f'[volume]\npath = "{volume}"\ntarget = "{target}"\n\n'
        f'[s3]\nendpoint_url = "{endpoint}"\nregion = "us-east-1"\n')
    return path


def count_objects(moto: MotoProcess, bucket: str) -> int:
    """Video objects in the bucket (not fovea-tui's listing marker)."""
    from fovea_tui.engine.volume.listing import MARKER_NAME

    n = 0
    for page in moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
        n += sum(1 for obj in page.get("Contents", []) if not obj["Key"].endswith("/" + MARKER_NAME))
    return n


def race(runs: dict, order: list[str], what: str, times: dict, *, rss: dict | None = None,
         check: Callable[[dict], None] | None = None) -> None:
    """Run each tool once, in `order`, recording its time (and peak RSS); `check` reads
    fovea-tui's JSON answer."""
    for tool in order:
        elapsed, code, peak, out = runs[tool]()
        if code != 0:
            raise SystemExit(f"bench_sync: {tool} {what} failed")
        times[tool].append(elapsed)
        if rss is not None:
            rss[tool].append(peak)
        if tool == "fovea" and check is not None:
            check(json.loads(out))


def bench_speed(moto: MotoProcess, work: Path, files: int, reps: int, env: dict[str, str]) -> dict:
    volume = work / "speed-volume"
    total = make_volume(volume, files)
    first = {"fovea": [], "aws": []}
    noop = {"fovea": [], "aws": []}
    noop_full = {"fovea": [], "aws": []}
    rss = {"fovea": [], "aws": []}

    def noop_check(mode: str) -> Callable[[dict], None]:
        def check(data: dict) -> None:
            assert data["uploaded"] == 0 and data["skipped"] == files, data
            assert data["listing"]["mode"] == mode, data["listing"]
        return check

    for rep in range(reps):
        b_fovea, b_aws = moto.bucket(), moto.bucket()
        cfg = write_config(work / f"speed-{rep}.toml", volume=volume, target=f"s3://{b_fovea}/videos/",
                           endpoint=moto.url, state=work / f"state-{rep}")
        runs = {
            "fovea": lambda cfg=cfg: run_child(fovea_cmd(cfg), env),
            "aws": lambda b_aws=b_aws: run_child(aws_cmd(volume, f"s3://{b_aws}/videos/", moto.url), env),
        }
        listing_runs = {
            "fovea": lambda cfg=cfg: run_child(fovea_cmd(cfg, "--full-listing"), env),
            "aws": runs["aws"],
        }
        order = ["fovea", "aws"] if rep % 2 == 0 else ["aws", "fovea"]  # alternate who goes first

        race(runs, order, "first upload", first, rss=rss)
        race(runs, order, "re-run", noop, check=noop_check("snapshot"))
        race(listing_runs, order, "re-run with a full listing", noop_full, check=noop_check("full"))
        for bucket in (b_fovea, b_aws):
            got = count_objects(moto, bucket)
            if got != files:
                raise SystemExit(f"bench_sync: bucket {bucket} holds {got} objects, expected {files}")
    med = {k: {t: statistics.median(v) for t, v in d.items()}
           for k, d in (("first", first), ("noop", noop), ("noop_full", noop_full))}
    return {
        "files": files, "bytes": total, "reps": reps,
        "first_upload_s": first, "noop_s": noop, "noop_full_listing_s": noop_full,
        "first_upload_median_s": med["first"], "noop_median_s": med["noop"],
        "noop_full_listing_median_s": med["noop_full"],
        "first_upload_ratio": med["first"]["fovea"] / med["first"]["aws"],
        "noop_ratio": med["noop"]["fovea"] / med["noop"]["aws"],
        "noop_full_listing_ratio": med["noop_full"]["fovea"] / med["noop_full"]["aws"],
        "peak_rss_first_upload": {t: max(v) for t, v in rss.items()},
    }


def bench_memory(moto: MotoProcess, work: Path, sizes: list[int], env: dict[str, str]) -> dict:
    out: dict[str, dict] = {"noop_directory_target": {}, "dry_run_plan_s3": {}}
    for n in sizes:
        volume = work / f"mem-{n}"
        make_volume(volume, n, min_size=16, max_size=64)
        target = work / f"mem-{n}-offsite"
        # the off-site copy already holds every file: hard links are the fast way to build it
        subprocess.run(["cp", "-al", str(volume), str(target)], check=True)
        cfg = write_config(work / f"mem-{n}.toml", volume=volume, target=str(target), endpoint=moto.url,
                           state=work / f"mem-state-{n}")
        elapsed, code, peak, data = run_child(fovea_cmd(cfg), env)
        result = json.loads(data)
        assert code == 0 and result["skipped"] == n and result["uploaded"] == 0, result
        out["noop_directory_target"][n] = {"peak_rss": peak, "seconds": elapsed}

        bucket = moto.bucket()
        cfg = write_config(work / f"mem-{n}-s3.toml", volume=volume, target=f"s3://{bucket}/videos/",
                           endpoint=moto.url, state=work / f"mem-state-{n}")
        elapsed, code, peak, data = run_child(fovea_cmd(cfg, "--dry-run"), env)
        result = json.loads(data)
        assert code == 0 and result["to_transfer"] == n, {k: v for k, v in result.items() if k != "planned"}
        out["dry_run_plan_s3"][n] = {"peak_rss": peak, "seconds": elapsed}
        shutil.rmtree(volume)
        shutil.rmtree(target)
    lo, hi = min(sizes), max(sizes)
    for case in out.values():
        case["ratio"] = case[hi]["peak_rss"] / case[lo]["peak_rss"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=3000, help="small files for the speed runs (default 3000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions; medians are reported (default 3)")
    parser.add_argument("--mem-sizes", default="1000,100000", help="volume sizes for the memory runs")
    parser.add_argument("--quick", action="store_true", help="1000 files, 1 rep, memory at 1000 and 20000")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.reps, args.mem_sizes = 1000, 1, "1000,20000"
    sizes = [int(s) for s in args.mem_sizes.split(",")]
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    compile_package()
    with tempfile.TemporaryDirectory(prefix="fovea-bench-sync-") as tmp, MotoProcess() as moto:
        work = Path(tmp)
        speed = bench_speed(moto, work, args.files, args.reps, env)
        memory = bench_memory(moto, work, sizes, env)

    targets = {
        "first_upload_at_least_as_fast_as_aws": speed["first_upload_ratio"] <= 1.0,
        "noop_at_most_half_of_aws": speed["noop_ratio"] <= 0.5,
        "noop_full_listing_no_slower_than_aws": speed["noop_full_listing_ratio"] <= 1.0,
        "memory_flat": all(case["ratio"] <= 1.25 for case in memory.values()),
    }
    report = {"benchmark": "sync", "speed": speed, "memory": memory, "targets": targets}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        mb = 1024 * 1024
        fm, nm = speed["first_upload_median_s"], speed["noop_median_s"]
        print(f"sync benchmark: {speed['files']} files ({speed['bytes'] / mb:.1f} MiB), {speed['reps']} reps, medians")
        print(f"  first upload   fovea-tui {fm['fovea']:.2f}s  aws s3 sync {fm['aws']:.2f}s  "
              f"ratio {speed['first_upload_ratio']:.2f} (target <= 1.0)")
        fl = speed["noop_full_listing_median_s"]
        print(f"  no-op re-run   fovea-tui {nm['fovea']:.2f}s  aws s3 sync {nm['aws']:.2f}s  "
              f"ratio {speed['noop_ratio']:.2f} (target <= 0.5; from the last sync's snapshot)")
        print(f"  no-op, listing fovea-tui {fl['fovea']:.2f}s  aws s3 sync {fl['aws']:.2f}s  "
              f"ratio {speed['noop_full_listing_ratio']:.2f} (target <= 1.0; sync --full-listing)")
        print(f"  peak RSS, first upload: fovea-tui {speed['peak_rss_first_upload']['fovea'] / mb:.0f} MiB, "
              f"aws {speed['peak_rss_first_upload']['aws'] / mb:.0f} MiB")
        for name, case in memory.items():
            cells = ", ".join(f"{n} files {case[n]['peak_rss'] / mb:.0f} MiB ({case[n]['seconds']:.1f}s)" for n in sizes)
            print(f"  peak RSS {name}: {cells}; ratio {case['ratio']:.2f} (target flat)")
        print("  targets: " + ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    return 1 if args.strict and not all(targets.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
