#!/usr/bin/env python3
"""The recovery time: `fovea-tui restore --yes` and its rollback against the runbook's pipeline.

Same server, same dump, alternating order in each round, at two sizes of a Fovea-shaped
database (the sandbox schema and seed), in direct mode (a pgserver PostgreSQL 16 cluster) and
in docker mode (the compose-labelled test stack of tests/support/teststack.py).

  runbook   dropdb; createdb; gunzip -c DUMP | psql       (docker: the runbook's `compose exec -T`
            lines, with every service but postgres stopped before and started after, until the
            backend's health URL answers 200 again; and, as the runbook says for a dump older
            than the backend image, its one-off `prisma migrate deploy` before the start)
  fovea     fovea-tui restore DUMP --yes                  (a fresh process; "result" is when the
            result is printed, i.e. the install is back; "exit" includes the renamed database's
            safety dump written after it)
  rollback  the same restore with its last step (verify) failing: a migration marked unfinished
            while verify is held, so its migrations check fails and the restore is rolled back

Reported: medians over the rounds and median ratios (each ratio within one round). Targets:
end to end <= 1.2x the runbook; the restore step <= 1.05x the runbook's `gunzip | psql`; the
rollback of the database (undo of steps 6-7) <= 0.1x the restore step. Also reported: the
downtime, the job's own step times from the stop to verify (pre-flight reads the dump while
the application still runs; the runbook's first command already takes it down).
Environment: BENCH_RESTORE_SCALES (default "400,2000": 80,000 and 400,000 annotations),
BENCH_ROUNDS (default 3), BENCH_RESTORE_MODES (default "direct,docker").
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bytecode import compile_package  # noqa: E402  (benchmarks/bytecode.py)
from support.services import PgCluster, docker_client_or_fail, pg_install_dir  # noqa: E402

SCALES = [int(x) for x in os.environ.get("BENCH_RESTORE_SCALES", "400,2000").split(",") if x]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MODES = [m for m in os.environ.get("BENCH_RESTORE_MODES", "direct,docker").split(",") if m]
PAUSE_S = 2  # verify is held this long in the rollback run, while the fault is injected


class Target:
    """One database server and the two ways of restoring into it."""

    name = ""
    config: Path
    settings = None
    env: dict[str, str]

    def psql(self, sql: str) -> None: ...

    def runbook(self, dump: Path) -> tuple[float, float]:
        """(whole pipeline, its `gunzip | psql` part) in seconds."""
        raise NotImplementedError


class Direct(Target):
    name = "direct"

    def __init__(self, cluster: PgCluster, work: Path) -> None:
        from fovea_tui.config import save_settings, settings_from_dict

        self.cluster = cluster
        self.tcp = cluster.tcp_env()
        (work / "videos").mkdir(parents=True, exist_ok=True)
        (work / "fovea.env").write_text("STORAGE_PATH=/videos\n")
        self.settings = settings_from_dict({
            "install": {"compose_project": "fovea-bench-none", "env_file": str(work / "fovea.env")},
            "database": {"mode": "direct", "url": cluster.url},
            "backups": {"dir": str(work / "backups")},
            "volume": {"path": str(work / "videos")}})
        self.config = save_settings(self.settings, work / "fovea-tui.toml")
        self.env = {**os.environ, "FOVEA_TUI_PG_BIN": str(cluster.bin_dir)}

    def psql(self, sql: str) -> None:
        self.cluster.psql(sql, "fovea", user=self.cluster.user)

    def runbook(self, dump: Path) -> tuple[float, float]:
        b = self.cluster.bin_dir
        t0 = time.perf_counter()
        subprocess.run([str(b / "dropdb"), "--if-exists", "fovea"], check=True, env=self.tcp)
        subprocess.run([str(b / "createdb"), "fovea"], check=True, env=self.tcp)
        t1 = time.perf_counter()
        subprocess.run(f"gunzip -c '{dump}' | '{b / 'psql'}' -q -X -d fovea > /dev/null", shell=True, check=True,
                       env=self.tcp)
        t2 = time.perf_counter()
        return t2 - t0, t2 - t1


class Docker(Target):
    name = "docker"
    others = ("redis", "backend", "frontend", "model-service")

    def __init__(self, stack, work: Path) -> None:
        from fovea_tui.config import save_settings
        from fovea_tui.engine.infra.stack import Stack

        self.stack = stack
        self.one_off = Stack.connect(stack.project)  # the runbook's `docker compose run --rm`
        self.settings = stack.settings(work, stack={"health_url": stack.health_url})
        self.config = save_settings(self.settings, work / "fovea-tui.toml")
        self.env = dict(os.environ)

    def psql(self, sql: str) -> None:
        self.stack.psql(sql)

    def _behind_the_image(self, dump: Path) -> bool:
        """Does the dump lack a migration the backend image bundles (the runbook then migrates)?"""
        import json

        manifest = json.loads(dump.with_name(dump.name + ".manifest.json").read_text())
        bundled = {p.parent.name for p in (self.stack.app_dir / "prisma" / "migrations").glob("*/migration.sql")}
        return not bundled <= set(manifest.get("prisma_migrations") or [])

    def _exec(self, *cmd: str, stdin=None) -> None:
        subprocess.run(["docker", "exec", "-i", self.stack.container_name("postgres"), *cmd], check=True,
                       stdin=stdin, stdout=subprocess.DEVNULL)

    def runbook(self, dump: Path) -> tuple[float, float]:
        names = [self.stack.container_name(s) for s in self.others]
        t0 = time.perf_counter()
        subprocess.run(["docker", "stop", *reversed(names)], check=True, stdout=subprocess.DEVNULL)
        self._exec("dropdb", "-U", "fovea", "--if-exists", "fovea")
        self._exec("createdb", "-U", "fovea", "fovea")
        t1 = time.perf_counter()
        gunzip = subprocess.Popen(["gunzip", "-c", str(dump)], stdout=subprocess.PIPE)
        self._exec("psql", "-q", "-U", "fovea", "fovea", stdin=gunzip.stdout)
        gunzip.wait()
        t2 = time.perf_counter()
        if self._behind_the_image(dump):
            # the runbook: "After a restore from a backup taken on an older release, run docker
            # compose run --rm backend npx prisma migrate deploy" (the SDK's one-off, as compose's)
            code, out = self.one_off.run_one_off("backend", list(self.stack.migrate_command))
            if code != 0:
                raise SystemExit(f"the runbook's migrate failed ({code}): {out[-500:]}")
        subprocess.run(["docker", "start", *names], check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.stack.health_url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        return time.perf_counter() - t0, t2 - t1


def fovea_restore(target: Target, dump: Path, *, fail_verify: bool = False) -> dict:
    """One `fovea-tui restore --yes`; times to the printed result and to the exit, and its report."""
    from fovea_tui.engine import restore as engine
    from fovea_tui.engine.infra import jobs

    env = dict(target.env)
    if fail_verify:
        # the tests' hold (tests/support/hold): the runner sleeps in verify while the fault lands
        env["FOVEA_TEST_HOLD_STEP"] = f"verify:{PAUSE_S}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests" / "support" / "hold"),
                                                          env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(target.config), "restore", dump.name,
                             "--yes"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    if fail_verify:
        threading.Thread(target=_break_while_verify_is_held, args=(target,), daemon=True).start()
    assert proc.stdout is not None
    proc.stdout.read1(1 << 16)  # text mode prints the result as soon as the runner records it
    result_s = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    exit_s = time.perf_counter() - t0
    data = jobs.latest_job(target.settings, "restore")
    assert data is not None
    report = engine.report(data)
    steps = {s["name"]: s for s in report["steps"]}
    if report["status"] != ("rolled_back" if fail_verify else "ok"):
        failed = [f"{s['name']}: {s['detail']}" for s in report["steps"] if s["status"] == "failed"]
        raise SystemExit(f"{target.name}: restore ended {report['status']}: {'; '.join(failed)}")
    out = {"result_s": result_s, "exit_s": exit_s, "status": report["status"],
           "restore_s": steps["restore"]["duration_s"] or 0.0,
           "safety": steps["safety_dump"]["detail"].split(":")[0].split(" (")[0]}
    out["steps"] = {n: round(s.get("duration_s") or 0.0, 2) for n, s in steps.items()}
    names = list(steps)
    # The application's downtime: from the stop (nothing of the install is touched before it:
    # pre-flight reads while the application still runs) to the verified result.
    out["down_s"] = sum(steps[n].get("duration_s") or 0.0 for n in names[names.index("stop"):])
    if fail_verify:
        out["rollback_db_s"] = sum((steps[n].get("undo") or {}).get("duration_s") or 0.0 for n in ("restore", "prepare"))
        out["rollback_s"] = sum((s.get("undo") or {}).get("duration_s") or 0.0 for s in report["steps"])
    for old in target.settings.backups_dir.glob("*-pre-restore.*"):
        old.unlink()
    return out


def _break_while_verify_is_held(target: Target) -> None:
    from fovea_tui.engine.infra import jobs

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        data = jobs.latest_job(target.settings, "restore")
        if data and next(s for s in data["steps"] if s["name"] == "verify")["status"] == "running":
            target.psql("UPDATE _prisma_migrations SET finished_at = NULL WHERE migration_name = "
                        "(SELECT min(migration_name) FROM _prisma_migrations);")
            return
        time.sleep(0.05)


def bench(target: Target, dump: Path, scale: int) -> list[tuple[str, bool]]:
    runs = {"runbook": lambda: target.runbook(dump), "fovea": lambda: fovea_restore(target, dump),
            "rollback": lambda: fovea_restore(target, dump, fail_verify=True)}
    seen: dict[str, list] = {k: [] for k in runs}
    ratios: dict[str, list[float]] = {"e2e": [], "e2e_exit": [], "down": [], "step": [], "rollback": []}
    for i in range(ROUNDS):
        names = list(runs)
        names = names[i % 3:] + names[: i % 3]
        rnd = {n: runs[n]() for n in names}
        for n, v in rnd.items():
            seen[n].append(v)
        (rb_total, rb_pipe), fv, rb = rnd["runbook"], rnd["fovea"], rnd["rollback"]
        assert fv["status"] == "ok" and rb["status"] == "rolled_back", (fv, rb)
        ratios["e2e"].append(fv["result_s"] / rb_total)
        ratios["e2e_exit"].append(fv["exit_s"] / rb_total)
        ratios["down"].append(fv["down_s"] / rb_total)
        ratios["step"].append(fv["restore_s"] / rb_pipe)
        ratios["rollback"].append(rb["rollback_db_s"] / fv["restore_s"])
        print(f"  round {i + 1}: runbook {rb_total:.2f} s (pipe {rb_pipe:.2f} s); fovea result {fv['result_s']:.2f} s, "
              f"exit {fv['exit_s']:.2f} s, down {fv['down_s']:.2f} s, restore step {fv['restore_s']:.2f} s ({fv['safety']}); rollback of the "
              f"database {rb['rollback_db_s']:.2f} s (whole rollback {rb['rollback_s']:.2f} s)", flush=True)
        print("    steps: " + ", ".join(f"{n} {d:.2f}" for n, d in fv["steps"].items()), flush=True)
    med = {k: statistics.median(v) for k, v in ratios.items()}
    rb_med = statistics.median(x[0] for x in seen["runbook"])
    fv_med = statistics.median(x["result_s"] for x in seen["fovea"])
    print(f"  {target.name}, scale {scale}: median runbook {rb_med:.2f} s, fovea-tui {fv_med:.2f} s to the result, "
          f"{statistics.median(x['exit_s'] for x in seen['fovea']):.2f} s to its exit")
    checks = [
        (f"end to end (to the result) / runbook = {med['e2e']:.2f}  (target <= 1.20)", med["e2e"] <= 1.2),
        (f"end to end (to the exit, safety dump included) / runbook = {med['e2e_exit']:.2f}", True),
        (f"downtime (steps from the stop to the verified result) / runbook = {med['down']:.2f}", True),
        (f"restore step / gunzip | psql = {med['step']:.2f}  (target <= 1.05)", med["step"] <= 1.05),
        (f"rollback of the database / restore step = {med['rollback']:.3f}  (target <= 0.10)", med["rollback"] <= 0.1),
    ]
    for text, ok in checks:
        print(f"  [{'ok' if ok else 'MISS'}] {target.name} scale {scale}: {text}", flush=True)
    return checks


def _video_files(cluster: PgCluster, volume: Path) -> None:
    """The files the `videos` rows name, as in a real install (sparse, of the recorded size)."""
    for line in cluster.psql('SELECT filename, "fileSize" FROM videos;', "fovea").split():
        name, _, size = line.partition("|")
        with open(volume / name, "wb") as fh:
            fh.truncate(int(size or 0))


def main() -> int:
    prefix = pg_install_dir()
    if prefix is None:
        print("the pgserver wheel is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    from fovea_tui.engine.backups.pipeline import run_backup

    compile_package()  # as installed: each restore is a fresh process, never timing the compiler
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-restore-"))
    stack = None
    try:
        for scale in SCALES:
            cluster = PgCluster(prefix / "bin")
            try:
                cluster.start()
                t = time.perf_counter()
                cluster.bootstrap(scale=scale)
                direct = Direct(cluster, work / f"direct-{scale}")
                _video_files(cluster, Path(direct.settings.volume.path))
                os.environ["FOVEA_TUI_PG_BIN"] = str(cluster.bin_dir)
                dump = run_backup(direct.settings, offsite=False).path
                print(f"scale {scale}: seeded in {time.perf_counter() - t:.0f} s; dump {dump.stat().st_size / 2**20:.1f} MiB",
                      flush=True)
                if "direct" in MODES:
                    bench(direct, dump, scale)
                if "docker" in MODES:
                    if stack is None:
                        from support.teststack import TestStack

                        stack = TestStack(docker_client_or_fail(), prefix)
                        stack.start()
                    docker = Docker(stack, work / f"docker-{scale}")
                    _video_files(cluster, stack.videos_dir)
                    placed = docker.settings.backups_dir / dump.name
                    placed.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(dump, placed)
                    shutil.copy2(dump.with_name(dump.name + ".manifest.json"),
                                 placed.with_name(placed.name + ".manifest.json"))
                    docker.runbook(placed)  # the stack's database at this size before the first round
                    bench(docker, placed, scale)
            finally:
                cluster.destroy()
        return 0
    finally:
        if stack is not None:
            stack.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
