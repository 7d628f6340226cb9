#!/usr/bin/env python3
"""Videos in S3: the first copy of the app's bucket to volume.target, side by side with
`aws s3 sync s3://src s3://dst`, on one moto S3 server, in the same run.

fovea-tui reads VIDEO_STORAGE_TYPE=s3 and the bucket from the install's env file and copies
server-side (CopyObject) because source and target share the endpoint; aws does the same
(its s3-to-s3 sync also copies server-side). Each repetition copies into fresh, empty
target buckets, alternating which tool goes first. Target: fovea-tui no slower
(median ratio fovea/aws <= 1.0). Both run as child processes, startup included.
Run standalone (`python benchmarks/bench_bucket_copy.py [--quick] [--json]`) or from run.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_sync import ENV, MotoProcess, run_child
from bytecode import compile_package

REPO = Path(__file__).resolve().parent.parent


def fill_bucket(moto: MotoProcess, bucket: str, objects: int) -> int:
    """`objects` small blobs (thumbnail-sized to small-video-sized), a quarter under thumbnails/."""
    client = moto.client()
    block = os.urandom(24 * 1024)

    def put(i: int) -> int:
        size = 2048 + (i * 7919) % (22 * 1024)
        key = f"thumbnails/{i:07x}.jpg" if i % 4 == 0 else f"{i:07x}.mp4"
        client.put_object(Bucket=bucket, Key=key, Body=block[:size])
        return size

    with ThreadPoolExecutor(16) as pool:
        return sum(pool.map(put, range(objects)))


def count_objects(moto: MotoProcess, bucket: str) -> int:
    """Video objects in the bucket (not fovea-tui's listing marker)."""
    from fovea_tui.engine.volume.listing import is_marker

    pages = moto.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(1 for page in pages for obj in page.get("Contents", []) if not is_marker(obj["Key"]))


def aws_cmd(src: str, dst: str, endpoint: str) -> list[str]:
    from bench_sync import aws_cmd as volume_cmd

    aws = volume_cmd(Path("."), "", endpoint)[0]
    return [aws, "s3", "sync", f"s3://{src}", f"s3://{dst}", "--endpoint-url", endpoint,
            "--only-show-errors", "--no-progress"]


def write_install(work: Path, moto: MotoProcess, src: str, dst: str, rep: int) -> Path:
    env = work / f"app-{rep}.env"
    env.write_text(f"VIDEO_STORAGE_TYPE=s3\nS3_BUCKET={src}\nS3_REGION=us-east-1\nS3_ENDPOINT={moto.url}\n"
                   f"AWS_ACCESS_KEY_ID={ENV['AWS_ACCESS_KEY_ID']}\nAWS_SECRET_ACCESS_KEY={ENV['AWS_SECRET_ACCESS_KEY']}\n")
    config = work / f"fovea-{rep}.toml"
    config.write_text(
        f'[install]\nenv_file = "{env}"\n\n[backups]\ndir = "{work / f"state-{rep}"}"\n\n'
        f'[volume]\npath = "{work / "no-volume"}"\ntarget = "s3://{dst}/"\n\n'
        f'[s3]\nendpoint_url = "{moto.url}"\nregion = "us-east-1"\n')
    return config


def main(argv: list[str]) -> int:
    compile_package()  # the timed `sync` runs are fresh processes: never timing the compiler
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="600 objects, 2 repetitions")
    parser.add_argument("--objects", type=int, default=3000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    objects, reps = (600, 2) if args.quick else (args.objects, args.reps)
    env = {**os.environ, **ENV}
    times: dict[str, list[float]] = {"fovea": [], "aws": []}
    copies = ""
    with MotoProcess() as moto, tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp:
        work = Path(tmp)
        src = moto.bucket()
        total = fill_bucket(moto, src, objects)
        for rep in range(reps):
            fovea_dst, aws_dst = moto.bucket(), moto.bucket()
            config = write_install(work, moto, src, fovea_dst, rep)
            runs = {"fovea": [sys.executable, "-m", "fovea_tui", "--config", str(config), "sync", "--json"],
                    "aws": aws_cmd(src, aws_dst, moto.url)}
            for tool in (["fovea", "aws"] if rep % 2 == 0 else ["aws", "fovea"]):
                elapsed, code, _, out = run_child(runs[tool], env)
                if code != 0:
                    raise SystemExit(f"bench_bucket_copy: {tool} failed")
                times[tool].append(elapsed)
                if tool == "fovea":
                    data = json.loads(out)
                    copies = data.get("copies") or ""
                    if data["uploaded"] != objects:
                        raise SystemExit(f"bench_bucket_copy: fovea-tui copied {data['uploaded']} of {objects}")
            for bucket in (fovea_dst, aws_dst):
                if count_objects(moto, bucket) != objects:
                    raise SystemExit(f"bench_bucket_copy: {bucket} holds {count_objects(moto, bucket)} of {objects}")
    fovea, aws = statistics.median(times["fovea"]), statistics.median(times["aws"])
    report = {"objects": objects, "bytes": total, "reps": reps, "fovea_s": times["fovea"], "aws_s": times["aws"],
              "median_fovea_s": fovea, "median_aws_s": aws, "ratio": fovea / aws, "target": 1.0, "copies": copies,
              "ok": fovea / aws <= 1.0}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"first copy of {objects} objects ({total / 1e6:.1f} MB) bucket to bucket on one endpoint, "
              f"{reps} reps: fovea-tui {fovea:.1f} s ({copies}), aws s3 sync {aws:.1f} s, "
              f"ratio {fovea / aws:.2f} (target <= 1.0) {'OK' if report['ok'] else 'SLOWER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
