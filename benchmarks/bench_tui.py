#!/usr/bin/env python3
"""The terminal UI's speed: launch to a full dashboard, and scrolling a 10,000-row inventory.

A sandbox shaped like `fovea-tui demo`'s (fovea_tui/sandbox/demo.py writes the config, the env file
and the manifests; direct mode), with no database behind it (the env file's DATABASE_URL
points at a socket directory that does not exist) and no Docker engine (DOCKER_HOST points
at nothing, as in the demo). Its backups directory holds N copies of one small gzip dump
in pg_dump's shape, hourly, each with its manifest and env copy; the engine verifies the
first one and its verification-cache entry is copied to the others (size and mtime of each
copy), so the inventory reads as a settled install: verified dumps, the newest ten off-site.

1. Launch (1,000 dumps). Each round runs, in alternating order, in fresh processes:
     textual   python -c "import textual"                   (the floor: the toolkit alone)
     fovea     what `fovea-tui` does (parse its command line, load_settings, create_app,
               app.run) headless at 120x36, until the dashboard is fully drawn: the first
               status report handled
               (every card filled from collect_status, which lists the 1,000 dumps) and
               the screen refreshed after it; then it quits.
   Reported: medians of launch-to-dashboard (from the parent's spawn to the child's
   "drawn" mark, on the system-wide monotonic clock; the quit is not counted) and of the
   whole process, textual's whole process, the median of per-round ratios, the child's
   own milestones and peak RSS.
2. Scrolling (10,000 dumps), in this process. Per round: the app as `fovea-tui` builds it
   (no status polling, no Docker watch, no animation), `b` pressed, timed until the first
   rows are in the table and until the table is complete and drawn (rows added in batches,
   sorted), while the screen is asked every 20 ms to answer after a refresh (its longest
   wait is how long it could not repaint). Then KEYS, one at a time, timed two ways:
   key to redraw (the key posted, the cursor moved, the screen refreshed after it) and
   Pilot press + pause (as the test suite times it; includes Textual's idle detection);
   then a reload (rows updated in place by key, the cursor kept). The same KEYS on a bare
   Textual DataTable holding the same 10,000 rows (same text and styles), as wide and high
   as the screen's table, in the same round. Reported: max, p95 and median per key press,
   and medians of per-round ratios ours / bare (a stall shows as a max far above bare's).

The issue sets no number for either, so nothing here passes or fails: the report gives
figures and ratios.

Usage: bench_tui.py [--quick]. Environment: BENCH_ROUNDS (launch rounds, default 7; quick
3), BENCH_SCROLL_ROUNDS (default 3; quick 1), BENCH_LAUNCH_DUMPS (1000),
BENCH_SCROLL_DUMPS (10000). Exit status 0 unless the benchmark itself broke.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import os
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

from bytecode import compile_package  # noqa: E402  (benchmarks/bytecode.py)

from fovea_tui.sandbox import demo  # noqa: E402  (the sandbox's config, env file and manifests)

QUICK = "--quick" in sys.argv[1:]
LAUNCH_ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3" if QUICK else "7"))
SCROLL_ROUNDS = int(os.environ.get("BENCH_SCROLL_ROUNDS", "1" if QUICK else "3"))
LAUNCH_DUMPS = int(os.environ.get("BENCH_LAUNCH_DUMPS", "1000"))
SCROLL_DUMPS = int(os.environ.get("BENCH_SCROLL_DUMPS", "10000"))
SIZE = (120, 36)
OFFSITE_NEWEST = 10
LAUNCH_TIMEOUT_S = 120
KEYS = (["down"] * 20 + ["pagedown"] * 30 + ["ctrl+end"] + ["up"] * 10 + ["pageup"] * 10
        + ["ctrl+home"] + ["down"] * 10)
TABLES = {"users": 3, "videos": 40, "annotations": 400, "tags": 12}


def mono() -> float:
    """The system-wide monotonic clock: comparable between this process and its children."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# --------------------------------------------------------------------------- the sandbox


def small_dump() -> bytes:
    """A gzip dump in pg_dump's plain shape (COPY blocks, the completion line): verifiable."""
    lines = ["--", "-- PostgreSQL database dump", "--", "", "SET client_encoding = 'UTF8';", ""]
    for table, rows in TABLES.items():
        lines.append(f"COPY public.{table} (id, name) FROM stdin;")
        lines += [f"{i}\t{table}-{i}" for i in range(1, rows + 1)]
        lines += ["\\.", ""]
    lines += ["--", "-- PostgreSQL database dump complete", "--", ""]
    return gzip.compress("\n".join(lines).encode(), mtime=0)


def build_sandbox(root: Path, count: int) -> Path:
    """`count` hourly dumps (manifest + env copy each) under root/backups; the config path."""
    from fovea_tui.config import load_file
    from fovea_tui.engine.backups import verify, verify_cache

    root.mkdir(parents=True, exist_ok=True)
    env_file = root / "install" / ".env"
    demo._write_env(env_file, str(root / "no-database-here"))  # DATABASE_URL: a socket dir that is not there
    config = demo._write_config(root)
    for sub in ("backups", "offsite", "videos", "videos-copy"):
        (root / sub).mkdir(exist_ok=True)
    backups, offsite = root / "backups", root / "offsite"
    data = small_dump()
    env_bytes = env_file.read_bytes()
    anchor = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(minutes=50)
    times = [anchor - timedelta(hours=h) for h in range(count)]

    def write_one(when: datetime, template: dict | None) -> tuple[Path, dict]:
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        dump = backups / f"fovea-{stamp}.sql.gz"
        env_copy = backups / f"fovea-{stamp}.env"
        dump.write_bytes(data)
        env_copy.write_bytes(env_bytes)
        os.chmod(env_copy, 0o600)
        if template is None:
            manifest = demo._manifest(dump, when, TABLES, "16.4", "16.4", env_copy, 0.05)
        else:
            manifest = copy.deepcopy(template)
            manifest["created_at"] = when.isoformat().replace("+00:00", "Z")
            manifest["env_file"]["name"] = env_copy.name
        manifest_path = backups / f"{dump.name}.manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        ts = when.timestamp()
        for path in (dump, env_copy, manifest_path):
            os.utime(path, (ts, ts))
        return dump, manifest

    first, template = write_one(times[0], None)
    settings = load_file(config)
    [result] = verify.verify_many(settings, [str(first)])  # the engine's own verdict on one copy
    if result.status != "verified":
        raise SystemExit(f"the sandbox's dump does not verify: {result.reasons}")
    dumps = [first] + [write_one(when, template)[0] for when in times[1:]]
    # One verification per dump would rewrite the cache 10,000 times; every copy is the same
    # bytes, so the first one's entry stands for all (each with its own size and mtime).
    cache_path = settings.state_dir / verify_cache.CACHE_FILE
    cache = json.loads(cache_path.read_text())
    entry = cache["entries"][first.name]
    for dump in dumps[1:]:
        st = dump.stat()
        cache["entries"][dump.name] = {**entry, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache_path.write_text(json.dumps(cache))
    for dump in dumps[:OFFSITE_NEWEST]:
        for path in (dump, dump.with_name(dump.name[:-len(".sql.gz")] + ".env"),
                     dump.with_name(dump.name + ".manifest.json")):
            shutil.copy2(path, offsite / path.name)
    return config


# --------------------------------------------------------------------------- 1. launch


LAUNCH_CHILD = r"""
import time
t_start = time.clock_gettime(time.CLOCK_MONOTONIC)
import asyncio, json, resource, sys
from fovea_tui.cli.main import build_parser
argv = ["--config", sys.argv[1]]
build_parser(argv).parse_args(argv)  # what `fovea-tui --config PATH` parses before it opens the TUI
from fovea_tui.config import load_settings
from fovea_tui.tui.app import create_app
from fovea_tui.tui.widgets.cards import StateCard
mono = lambda: time.clock_gettime(time.CLOCK_MONOTONIC)
marks = {"start": t_start, "imported": mono()}
settings = load_settings(sys.argv[1])
app = create_app(settings)  # as launch_tui builds it: every default
timeout = float(sys.argv[2])

async def until_drawn(pilot):
    marks["running"] = mono()  # the app is up: the dashboard composed, "collecting status…"
    deadline = mono() + timeout
    # Waiting for the first report is not polled: a loop waking every millisecond would take
    # the interpreter from the status worker it waits for, a few hundred times a second.
    reported = asyncio.Event()
    app.status_changed.subscribe(app.screen, lambda report: reported.set(), immediate=True)
    if app.status is None:
        try:
            await asyncio.wait_for(reported.wait(), timeout)
        except asyncio.TimeoutError:
            pass
    while True:
        cards = list(app.screen.query(StateCard))
        if app.status is not None and cards and all(card.border_subtitle for card in cards):
            break
        if mono() > deadline:
            marks["error"] = f"no full dashboard after {timeout:g} s (status error: {app.status_error!r})"
            app.exit(1)
            return
        await asyncio.sleep(0.001)
    marks["filled"] = mono()
    drawn = asyncio.Event()
    app.screen.call_after_refresh(drawn.set)
    await drawn.wait()
    marks["drawn"] = mono()
    marks["cards"] = {card.id: card.border_subtitle for card in cards}
    app.exit(0)

app.run(headless=True, size=(%d, %d), auto_pilot=until_drawn)
marks["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(marks), flush=True)
""" % SIZE  # noqa: UP031  (the child's code has braces of its own)


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(spawn time, whole-process seconds, stdout)."""
    spawn = mono()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=LAUNCH_TIMEOUT_S + 60)
    elapsed = mono() - spawn
    if proc.returncode != 0:
        raise RuntimeError(f"{args[:2]} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
    return spawn, elapsed, proc.stdout


def bench_launch(config: Path) -> list[str]:
    env = {**os.environ, "DOCKER_HOST": demo.NO_DOCKER}
    env.pop("FOVEA_TUI_CONFIG", None)

    def textual() -> dict:
        _, whole, _ = run_child(["-c", "import textual"], env)
        return {"whole": whole}

    def fovea() -> dict:
        spawn, whole, out = run_child(["-c", LAUNCH_CHILD, str(config), str(LAUNCH_TIMEOUT_S)], env)
        marks = json.loads(out.strip().splitlines()[-1])
        if "error" in marks:
            raise RuntimeError(marks["error"])
        rel = {k: marks[k] - spawn for k in ("start", "imported", "running", "filled", "drawn")}
        return {"whole": whole, "launch": rel["drawn"], "marks": rel, "cards": marks["cards"],
                "maxrss_kb": marks["maxrss_kb"]}

    fovea()  # warm the page cache and the bytecode once (not counted)
    textual()
    runs: dict[str, list[dict]] = {"textual": [], "fovea": []}
    ratios, ratios_whole = [], []
    for i in range(LAUNCH_ROUNDS):
        order = [("textual", textual), ("fovea", fovea)]
        if i % 2:
            order.reverse()
        rnd = {name: fn() for name, fn in order}
        for name, value in rnd.items():
            runs[name].append(value)
        ratios.append(rnd["fovea"]["launch"] / rnd["textual"]["whole"])
        ratios_whole.append(rnd["fovea"]["whole"] / rnd["textual"]["whole"])
        print(f"  launch round {i + 1}: import textual {rnd['textual']['whole']:.3f} s, fovea to the full "
              f"dashboard {rnd['fovea']['launch']:.3f} s (whole process {rnd['fovea']['whole']:.3f} s)", flush=True)
    med = lambda xs: statistics.median(xs)  # noqa: E731
    fov = runs["fovea"]
    t_textual = med([r["whole"] for r in runs["textual"]])
    t_launch = med([r["launch"] for r in fov])
    t_whole = med([r["whole"] for r in fov])
    stages = {k: med([r["marks"][k] for r in fov]) for k in ("start", "imported", "running", "filled", "drawn")}
    ratio = med(ratios)
    peak = max(r["maxrss_kb"] for r in fov) / 1024
    cards = fov[-1]["cards"]
    print()
    print(f"launch, {LAUNCH_DUMPS:,} dumps, medians over {LAUNCH_ROUNDS} rounds:")
    print(f"  python -c 'import textual'        {t_textual:.3f} s  (whole process)")
    print(f"  fovea-tui to the full dashboard   {t_launch:.3f} s  (whole process incl. quitting: {t_whole:.3f} s)")
    print(f"    interpreter up {stages['start']:.3f} s · imports done {stages['imported']:.3f} s · "
          f"app running (cards empty) {stages['running']:.3f} s · cards filled {stages['filled']:.3f} s · "
          f"drawn {stages['drawn']:.3f} s")
    shown = ", ".join(f"{key.removeprefix('card-')} {verdict}" for key, verdict in cards.items())
    print(f"    cards: {shown}")
    print(f"    peak RSS {peak:.0f} MB")
    return [f"launch to the full dashboard / import textual = {ratio:.2f} (median of per-round ratios; "
            f"whole process {med(ratios_whole):.2f})"]


# --------------------------------------------------------------------------- 2. scrolling


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(0.95 * len(xs)) - 1))]


async def key_to_redraw(pilot, table, keys: list[str]) -> list[float]:
    """Per key: the Key event posted, the table's cursor moved, and the screen refreshed
    after it (polled on every event-loop turn; the settling afterwards is not timed)."""
    from textual import events

    app = pilot.app
    times = []
    for key in keys:
        before = table.cursor_row
        t = time.perf_counter()
        app.post_message(events.Key(key, None))
        while table.cursor_row == before:
            if time.perf_counter() - t > 30:
                raise RuntimeError(f"{key} did not move the cursor from row {before}")
            await asyncio.sleep(0)
        await after_refresh(app.screen)
        times.append(time.perf_counter() - t)
        await pilot.pause()
    return times


async def pilot_presses(pilot, keys: list[str]) -> list[float]:
    """Per key: `await pilot.press(key); await pilot.pause()`, as the test suite times it.
    That includes Textual's idle detection (20 ms sleeps until the process's CPU time stops
    advancing): it floors at ~60 ms and grows with any background work in the process."""
    times = []
    for key in keys:
        t = time.perf_counter()
        await pilot.press(key)
        await pilot.pause()
        times.append(time.perf_counter() - t)
    return times


async def both_ways(pilot, table) -> tuple[list[float], list[float]]:
    redraw = await key_to_redraw(pilot, table, KEYS)
    await pilot.press("ctrl+home")
    await pilot.pause()
    return redraw, await pilot_presses(pilot, KEYS)


async def wait_until(predicate, timeout: float) -> None:
    """Poll every 5 ms with a plain sleep (a Pilot pause would wait for the screen's queue,
    which a long handler holds)."""
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"condition not reached in {timeout:g} s")
        await asyncio.sleep(0.005)


async def after_refresh(node) -> None:
    drawn = asyncio.Event()
    node.call_after_refresh(drawn.set)
    await drawn.wait()


async def screen_waits(screen, stop: asyncio.Event) -> list[float]:
    """How long the screen takes to run a callback after its next refresh, asked every 20 ms
    until `stop`: while one of its handlers runs, it neither repaints nor answers."""
    waits = []
    while not stop.is_set():
        t = time.perf_counter()
        await after_refresh(screen)
        waits.append(time.perf_counter() - t)
        await asyncio.sleep(0.02)
    return waits


async def fovea_scroll(config: Path) -> dict:
    from textual import events
    from textual.widgets import DataTable

    from fovea_tui.config import load_file
    from fovea_tui.tui.app import create_app
    from fovea_tui.tui.screens import backups as backups_screen
    from fovea_tui.tui.screens.backups import BackupsScreen

    batches: list[int] = []  # the screen adds rows a batch per repaint: a load is drawn when its last batch is
    apply_rows = BackupsScreen._apply_rows

    def counting(self, generation, inv, start, added):
        batches.append(start)
        return apply_rows(self, generation, inv, start, added)

    BackupsScreen._apply_rows = counting  # type: ignore[method-assign]

    def loads_drawn(screen) -> int:
        if screen.inventory is None:
            return 0
        per_load = max(1, -(-len(screen.inventory.entries) // backups_screen.BATCH))
        return len(batches) // per_load

    app = create_app(load_file(config), poll_interval=0, watch_stack=False, animate=False, cursor_blink=False)
    out: dict = {}
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.status is not None, 120)  # the dashboard's probe, out of the way
        await pilot.pause()
        t = time.perf_counter()
        app.post_message(events.Key("b", "b"))
        await wait_until(lambda: isinstance(app.screen, BackupsScreen) and app.screen.query("#inventory"), 30)
        screen = app.screen
        table = screen.query_one("#inventory", DataTable)
        stop = asyncio.Event()
        waits = asyncio.create_task(screen_waits(screen, stop))
        await wait_until(lambda: table.row_count > 0, 120)
        out["first_rows"] = time.perf_counter() - t
        await wait_until(lambda: loads_drawn(screen) >= 1, 300)
        await after_refresh(screen)
        out["complete"] = time.perf_counter() - t
        stop.set()
        out["load_waits"] = await waits
        out["rows"] = table.row_count
        out["cells"] = [[(c.plain, str(c.style)) for c in table.get_row_at(i)] for i in range(table.row_count)]
        out["labels"] = [str(col.label) for col in table.columns.values()]
        out["box"] = (table.outer_size.width, table.outer_size.height)
        table.focus()
        await pilot.pause(0.2)
        out["keys"], out["pilot"] = await both_ways(pilot, table)
        cursor = table.cursor_row
        loads = loads_drawn(screen)
        t = time.perf_counter()
        screen.action_reload()
        await wait_until(lambda: loads_drawn(screen) > loads, 300)
        out["reload"] = time.perf_counter() - t
        out["cursor_kept"] = table.cursor_row == cursor and table.row_count == out["rows"]
    return out


async def bare_scroll(labels: list[str], cells: list[list[tuple[str, str]]], box: tuple[int, int]) -> dict:
    from rich.text import Text
    from textual.app import App
    from textual.widgets import DataTable

    rows = [[Text(text, style=style, no_wrap=True, overflow="ellipsis") for text, style in row] for row in cells]

    class Bare(App):
        CSS = f"DataTable {{ width: {box[0]}; height: {box[1]}; }}"  # the Backups screen's table, cell for cell

        def compose(self):
            yield DataTable(cursor_type="row", zebra_stripes=True)

    app = Bare()
    out: dict = {}
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        for i, label in enumerate(labels):
            table.add_column(label, key=str(i))
        t = time.perf_counter()
        table.add_rows(rows)
        await pilot.pause()
        out["complete"] = time.perf_counter() - t
        table.focus()
        await pilot.pause(0.2)
        out["keys"], out["pilot"] = await both_ways(pilot, table)
    return out


def bench_scroll(config: Path) -> list[str]:
    rounds: list[tuple[dict, dict]] = []
    for i in range(SCROLL_ROUNDS):
        ours = asyncio.run(fovea_scroll(config))
        cells, labels = ours.pop("cells"), ours.pop("labels")
        bare = asyncio.run(bare_scroll(labels, cells, ours["box"]))
        rounds.append((ours, bare))
        print(f"  scroll round {i + 1}: table complete {ours['complete']:.2f} s (first rows {ours['first_rows']:.2f} s); "
              f"key to redraw max {max(ours['keys']) * 1000:.0f} ms, p95 {p95(ours['keys']) * 1000:.0f} ms "
              f"(bare {max(bare['keys']) * 1000:.0f}, {p95(bare['keys']) * 1000:.0f}); Pilot max "
              f"{max(ours['pilot']) * 1000:.0f} ms (bare {max(bare['pilot']) * 1000:.0f})", flush=True)
    med = statistics.median
    rows = rounds[-1][0]["rows"]
    print()
    print(f"scrolling, {rows:,} rows, {len(KEYS)} key presses x {SCROLL_ROUNDS} round(s), each way "
          f"({', '.join(f'{KEYS.count(k)} {k}' for k in dict.fromkeys(KEYS))}):")
    load_wait = med([max(o["load_waits"]) for o, _ in rounds])
    print(f"  Backups screen: first rows in the table {med([o['first_rows'] for o, _ in rounds]):.2f} s, complete "
          f"and drawn {med([o['complete'] for o, _ in rounds]):.2f} s after `b`; longest the screen went "
          f"without answering (no repaint) meanwhile {load_wait:.2f} s")
    print(f"  reload (rows updated by key) "
          f"{med([o['reload'] for o, _ in rounds]):.2f} s, cursor and rows kept: "
          f"{all(o['cursor_kept'] for o, _ in rounds)}")
    print(f"  bare DataTable: add_rows of the same rows {med([b['complete'] for _, b in rounds]):.2f} s")
    summary = [f"loading {rows:,} rows: the screen answered no event for {load_wait:.2f} s at a stretch "
               f"(of {med([o['complete'] for o, _ in rounds]):.2f} s to the complete table)"]
    for field, title in (("keys", "key to redraw"), ("pilot", "Pilot press + pause")):
        ours_all = [k for o, _ in rounds for k in o[field]]
        bare_all = [k for _, b in rounds for k in b[field]]
        r_max = med([max(o[field]) / max(b[field]) for o, b in rounds])
        r_p95 = med([p95(o[field]) / p95(b[field]) for o, b in rounds])
        r_med = med([med(o[field]) / med(b[field]) for o, b in rounds])
        print(f"  {title} (ms)   ours: max {max(ours_all) * 1000:.0f}, p95 {p95(ours_all) * 1000:.0f}, "
              f"median {med(ours_all) * 1000:.1f}")
        print(f"  {' ' * len(title)}        bare: max {max(bare_all) * 1000:.0f}, p95 {p95(bare_all) * 1000:.0f}, "
              f"median {med(bare_all) * 1000:.1f}")
        print(f"  {' ' * len(title)}  ours / bare: max {r_max:.2f}, p95 {r_p95:.2f}, median {r_med:.2f} "
              "(medians of per-round ratios)")
        if field == "keys":
            slow = max(((k, key) for o, _ in rounds for k, key in zip(o[field], KEYS, strict=True)))
            bare_slow = max(((k, key) for _, b in rounds for k, key in zip(b[field], KEYS, strict=True)))
            summary.append(f"slowest key to redraw on {rows:,} rows: {slow[0] * 1000:.0f} ms ({slow[1]}); "
                           f"bare DataTable {bare_slow[0] * 1000:.0f} ms ({bare_slow[1]}); p95 ratio {r_p95:.2f}")
    summary.append(f"reload kept every row and the cursor: {all(o['cursor_kept'] for o, _ in rounds)}")
    return summary


# --------------------------------------------------------------------------- main


def main() -> int:
    compile_package()
    work = Path(tempfile.mkdtemp(prefix="fovea-bench-tui-"))
    os.environ["DOCKER_HOST"] = demo.NO_DOCKER  # the in-process app too: no Docker engine
    try:
        t = time.perf_counter()
        small = build_sandbox(work / "launch", LAUNCH_DUMPS)
        large = build_sandbox(work / "scroll", SCROLL_DUMPS)
        print(f"sandboxes: {LAUNCH_DUMPS:,} and {SCROLL_DUMPS:,} dumps in {time.perf_counter() - t:.1f} s"
              f"{' (quick)' if QUICK else ''}", flush=True)
        summary = bench_launch(small)
        print(flush=True)
        summary += bench_scroll(large)
        print("\nsummary:")
        for line in summary:
            print(f"  {line}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
