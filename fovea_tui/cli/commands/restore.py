"""`fovea-tui restore DUMP [--yes] [--json] [--skip-migrate] [--no-rollback] [--allow-missing-videos]`:
the guided restore.

`--rollback JOB` of a restore that finished is a new destructive act: confirmed like a
restore (the database name typed, or `--yes --force-after-success`), else exit 3.

The restore runs in a detached runner (it survives this terminal); this command starts it,
follows its state file, asks for the database name on the terminal when the runner waits for
it (unless --yes), and prints the report. Ctrl-C while steps run only stops following: the
restore carries on, and `--follow JOB` picks it up again. `--resume JOB` and `--rollback JOB`
handle a restore whose runner was killed.
"""

from __future__ import annotations

import re
import signal
import sys
import time

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.backups import readahead
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, UsageError
from fovea_tui.formatting import plural

COUNTDOWN_EVERY_S = 5.0
ICONS = {"ok": "ok ", "failed": "ERR", "skipped": "-- ", "running": "...", "pending": "   "}


def register(sub) -> None:
    parser = sub.add_parser("restore", help="the guided restore, headless; without --yes it asks on the terminal")
    parser.add_argument("dump", nargs="?", metavar="DUMP", help="a dump's file name or path, or an off-site key")
    add_json_flag(parser)
    parser.add_argument("--yes", action="store_true", help="do not ask for the database name (stands for typing it)")
    parser.add_argument("--skip-migrate", action="store_true", help="do not apply the backend's bundled migrations")
    parser.add_argument("--allow-missing-videos", action="store_true",
                        help="start the backend even when referenced videos are still missing after the pull "
                             "(it deletes their rows, annotations, summaries and claims)")
    parser.add_argument("--accept-mismatch", action="store_true",
                        help="restore a whole dump that is not what its manifest says (status mismatch)")
    parser.add_argument("--force-after-success", action="store_true",
                        help="with --rollback and --yes: roll back a restore that finished (its writes since are "
                             "discarded; a fresh safety dump of them is taken first)")
    parser.add_argument("--no-rollback", action="store_true",
                        help="when a step after the stop fails, leave the install as it is instead of rolling back")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", metavar="JOB", help="continue an interrupted restore from its last completed step")
    group.add_argument("--rollback", metavar="JOB", help="roll a restore back to its safety dump (one that finished "
                       "only when confirmed: the database name typed, or --yes --force-after-success)")
    group.add_argument("--follow", metavar="JOB", help="follow a running restore (or show a finished one)")
    from fovea_tui.cli.commands.compare import add_restore_flags

    add_restore_flags(parser)
    parser.set_defaults(handler=run)


def _engine():
    """The restore engine, imported at its first use: a new restore first begins its dump's
    read (readahead), which then runs on another core beside this import."""
    from fovea_tui.engine import restore

    return restore


class _Follower:
    """Draws the job's state on stderr as it changes."""

    def __init__(self, ctx: CliContext, job_id: str, *, yes: bool) -> None:
        self.ctx = ctx
        self.job_id = job_id
        self.yes = yes
        self.shown: dict[str, str] = {}
        self.lines: dict[str, int] = {}
        self.undo_shown: dict[str, str] = {}
        self.waits: dict[str, tuple[str, float]] = {}
        self.asked = False
        self.asked_videos = False
        self.result_out = False  # the restore's outcome is recorded (a safety copy may still be written)
        self.copy_shown: str | None = None
        self.bar = ctx.progress()

    def __call__(self, data: dict) -> None:
        for rec in data.get("steps", []):
            name, status = rec["name"], rec["status"]
            total = rec.get("output_total", 0)
            seen = self.lines.get(name, 0)
            if total > seen:
                for line in rec.get("output", [])[-(total - seen):]:
                    self.ctx.info(f"      {name}: {line}")
                self.lines[name] = total
            if status != self.shown.get(name) and status != "pending":
                self.shown[name] = status
                text = rec.get("title", name) if status == "running" else rec.get("detail", "")
                self.ctx.info(f"[{ICONS.get(status, status)}] {name:<12} {text}")
            waiting = rec.get("waiting") if status == "running" else None
            if waiting and self._countdown_due(name, waiting):
                self.bar.stop()  # the countdown lines replace a bar, never drawn under it
                self.ctx.info(f"      {name}: " + "; ".join(waiting))
            if status == "running" and rec.get("progress") and rec["progress"].get("total"):
                p = rec["progress"]
                self.bar(ProgressEvent(name, p["done"], p["total"], p.get("unit", "bytes")))
            undo = rec.get("undo")
            if undo and undo.get("status") != self.undo_shown.get(name):
                self.undo_shown[name] = undo["status"]
                self.ctx.info(f"[{ICONS.get(undo['status'], undo['status'])}] undo {name:<7} {undo.get('detail', '')}")
        self.result_out = bool(data.get("result_reported"))
        copy = _engine().safety_copy(data) or {}
        if copy.get("mode") == "rename" and copy.get("status") and copy["status"] != self.copy_shown:
            self.copy_shown = copy["status"]
            self.ctx.info(f"[{ICONS.get(copy['status'], copy['status'])}] safety copy  "
                          + (copy.get("detail") or f"writing the safety dump from {copy.get('renamed_to')}"))
        if copy.get("status") == "running" and (copy.get("progress") or {}).get("total"):
            p = copy["progress"]
            self.bar(ProgressEvent("safety_copy", p["done"], p["total"], p.get("unit", "bytes")))
        if data.get("awaiting") == "confirm" and not self.asked:
            self.asked = True
            self.ask(data)
        if data.get("awaiting") == "missing_videos" and not self.asked_videos:
            self.asked_videos = True
            self.ask_videos(data)

    def _countdown_due(self, name: str, waiting: list[str]) -> bool:
        """A countdown line when what is awaited changes, else every few seconds (not every tick)."""
        shape = re.sub(r"\d+", "#", "; ".join(waiting))
        last_shape, last_at = self.waits.get(name, ("", 0.0))
        if shape == last_shape and time.monotonic() - last_at < COUNTDOWN_EVERY_S:
            return False
        self.waits[name] = (shape, time.monotonic())
        return True

    def ask_videos(self, data: dict) -> None:
        from fovea_tui.engine.restore.videos import missing_words

        self.bar.stop()  # the pull's bar, live until now, must not redraw under the question
        found = (data.get("facts") or {}).get("videos") or {}
        phrase = _engine().acceptance_phrase(found.get("missing", 0))
        self.ctx.info(f"\n{missing_words(found)}.\nStarting {', '.join(found.get('reconcilers') or ['the backend'])} "
                      "deletes their rows and everything that depends on them.")
        typed = _answer(f"Type {phrase!r} to start it anyway, anything else to hold the restore "
                        "(the database stays restored, the services stay stopped): ")
        _engine().accept_missing_videos(self.ctx.settings, self.job_id, (typed or "").strip() or "\x00")

    def ask(self, data: dict) -> None:
        self.bar.stop()
        name = data["params"].get("database", "")
        self.ctx.info("\n" + _engine().confirm_question(data))
        typed = _answer(f"Type the database name ({name}) to go ahead, anything else to cancel: ")
        if typed is None:
            _engine().cancel(self.ctx.settings, self.job_id)
            return
        _engine().confirm(self.ctx.settings, self.job_id, typed.strip() or "\x00")


def _answer(question: str) -> str | None:
    """A line typed on the terminal ("" at its end); None for Ctrl-C, which answers at once:
    the CLI's own handler only flags a Ctrl-C, and the read would go on waiting for a line."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline()
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return None
    except EOFError:
        return ""
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_code(report: dict) -> int:
    if report["ok"]:
        return EXIT_OK
    return EXIT_REFUSED if report["status"] in ("refused", "held") else EXIT_FAILED


def render(report: dict) -> str:
    lines = [f"restore of {report['dump']} (job {report['job']}): {report['status']}"]
    for step in report["steps"]:
        dur = f" ({step['duration_s']:.1f} s)" if step.get("duration_s") else ""
        lines.append(f"  [{ICONS.get(step['status'], step['status'])}] {step['name']:<12} {step['detail']}{dur}")
        if step.get("undo"):
            undo = step["undo"]
            took = f" ({undo['duration_s']:.1f} s)" if undo.get("duration_s") is not None else ""
            lines.append(f"        undo{took}: {undo['status']}: {undo.get('detail', '')}")
    for svc in report.get("still_starting", []) + report.get("services_not_up", []):
        lines.append(f"  {svc['service']} {svc['detail']}")
    videos = report.get("videos") or {}
    if videos.get("expected_deletions"):
        d = videos["expected_deletions"]
        lines.append(f"expected to be deleted by the backend: {plural(d['videos'], 'video')}, {plural(d['annotations'], 'annotation')}, "
                     f"{plural(d['summaries'], 'summary')}, {plural(d['claims'], 'claim')}")
    checks = report["verification"].get("checks") or []
    if checks:
        lines.append("verification:")
        for c in checks:
            mark = "ok " if c["ok"] else ("ERR" if c["severity"] == "error" else "!! ")
            lines.append(f"  [{mark}] {c['name']:<10} {c['detail']}")
    copy = report.get("safety_copy") or {}
    if copy.get("mode") == "rename":
        lines.append(f"safety copy: {copy.get('status')}: " + (
            copy.get("detail") or f"{copy.get('renamed_to')} holds the database as it was; its safety dump is "
                                  f"written in the background (`fovea-tui restore --follow {report['job']}`)"))
    if report["ok"]:
        lines.append("still to check by hand:")
        lines += [f"  [ ] {item}" for item in report["verification"].get("checklist", [])]
    lines.append("")
    lines.append(report["message"])
    return "\n".join(lines)


def _read_ahead(settings, wanted: str) -> None:
    """Begin pre-flight's read of a local dump now (the runner's choose step finds the same
    file: a path, else a name in backups.dir); an off-site key, a symlink or a name that is not
    a plain dump's is left to the runner."""
    from pathlib import Path

    from fovea_tui.engine.backups.manifest import parse_dump_name

    candidate = Path(wanted)
    beside = settings.backups_dir / candidate.name
    path = candidate if candidate.is_file() else beside if beside.is_file() else None
    if path is None or path.is_symlink() or not path.name.endswith(".sql.gz") or parse_dump_name(path.name) is None:
        return
    try:
        readahead.begin(path)
    except OSError:
        pass  # pre-flight reads it itself, and says what is wrong with it


def _require_known_dump(settings, wanted: str) -> None:
    """A name that is nowhere is a typo (exit 2), caught before a restore job is created.
    Whether a dump that exists is fit to restore is the pre-flight's call (exit 3)."""
    from pathlib import Path

    from fovea_tui.engine.backups.inventory import load_inventory

    candidate = Path(wanted)
    if candidate.is_file() or (settings.backups_dir / candidate.name).is_file():
        return
    if settings.backups.offsite:
        inventory = load_inventory(settings)
        if inventory.errors:
            return  # the store did not answer: the runner's choose step reports that failure
        entry = inventory.find(wanted)
        if entry is not None and entry.offsite is not None:
            from fovea_tui.engine.backups.encryption import identities_for

            identities_for(settings, entry.offsite.key)  # an encrypted copy needs a usable identity (exit 2)
            return
    where = f" nor off-site at {settings.backups.offsite}" if settings.backups.offsite else ""
    raise UsageError(f"no dump {wanted!r} in {settings.backups_dir}{where}; `fovea-tui list` shows them",
                     key="DUMP")


def _ask_rollback(ctx: CliContext, args, interactive: bool) -> str | None:
    """For a restore that finished: the database name typed on the terminal (None when the
    job did not finish, or nobody can type; the engine refuses then, exit 3)."""
    finished = _engine().finished_restore(jobs.load_job(ctx.settings, args.rollback))
    if finished is None or (args.yes and args.force_after_success) or not interactive:
        return None
    ctx.info(finished.question)
    typed = _answer(f"Type the database name ({finished.database}) to roll back, anything else to keep it: ")
    return typed.strip() if typed is not None else None


def run(args, ctx: CliContext) -> int:
    from fovea_tui.cli.commands.compare import check_restore_flags, run_restore, selective_requested

    if selective_requested(args):
        return run_restore(args, ctx)  # one video or persona, live: see compare.py
    check_restore_flags(args)
    settings = ctx.settings
    chosen = [x for x in (args.resume, args.rollback, args.follow) if x]
    if chosen and args.dump:
        raise UsageError("give either DUMP or one of --resume/--rollback/--follow", key="DUMP")
    if not chosen and not args.dump:
        raise UsageError("restore needs DUMP (a dump's name or path, or an off-site key); "
                         "`fovea-tui list` shows them", key="DUMP")
    interactive = sys.stdin.isatty()
    if args.force_after_success and not (args.rollback and args.yes):
        raise UsageError("--force-after-success goes with --rollback JOB and --yes", key="--force-after-success")
    if (args.dump or args.resume) and not args.yes and not interactive:
        raise UsageError("no terminal to type the database name on: pass --yes to confirm the restore",
                         key="--yes")
    if args.follow:
        job_id = args.follow
        jobs.load_state(settings, job_id)  # a clear error for an unknown job
    elif args.resume:
        job_id = _engine().resume_restore(settings, args.resume, confirmed=args.yes,
                                       allow_missing_videos=args.allow_missing_videos, fork=True)
        ctx.info(f"resuming restore {job_id}")
    elif args.rollback:
        job_id = _engine().rollback_restore(settings, args.rollback, typed=_ask_rollback(ctx, args, interactive),
                                         force_after_success=args.yes and args.force_after_success, fork=True)
        ctx.info(f"rolling back restore {job_id}")
    else:
        _read_ahead(settings, args.dump)
        try:
            _require_known_dump(settings, args.dump)
            job_id = _engine().start_restore(settings, args.dump, confirmed=args.yes, skip_migrate=args.skip_migrate,
                                             no_rollback=args.no_rollback, allow_missing_videos=args.allow_missing_videos,
                                             accept_mismatch=args.accept_mismatch, fork=True)
        finally:
            readahead.release()  # the runner took it with it, or there is no runner
        ctx.info(f"restore job {job_id} started; it runs on if this terminal goes away "
                 f"(`fovea-tui restore --follow {job_id}`)")
    follower = _Follower(ctx, job_id, yes=args.yes)
    with follower.bar:
        # The outcome is printed as soon as the runner records it; the renamed database's safety
        # dump is written after it, outside the recovery time, and followed here on stderr.
        data = jobs.follow(settings, job_id, follower, interval=0.02,
                           stop=lambda: ctx.cancel.cancelled or follower.result_out)
    if ctx.cancel.cancelled and (data.get("alive") or jobs.load_state(settings, job_id).alive):
        if data.get("awaiting") in ("confirm", "missing_videos"):
            _engine().cancel(settings, job_id)
            data = jobs.follow(settings, job_id, lambda _d: None, timeout=30)
        else:
            ctx.info(f"stopped following; the restore goes on in the background: "
                     f"`fovea-tui restore --follow {job_id}`")
            return EXIT_FAILED
    result = _engine().report(_engine().check_services(settings, data))
    result["log"] = str(jobs.jobs_dir(settings) / f"{job_id}.log")
    if not ctx.json:  # a person reads the result at once; a script gets one document at the end
        ctx.emit(result, render(result))
    if follower.result_out and data.get("alive"):
        data = _follow_safety_copy(ctx, follower, job_id)
        result = {**result, "safety_dump": _engine().report(data)["safety_dump"],
                  "safety_copy": _engine().safety_copy(data), "message": _engine().describe_status(data)}
    if ctx.json:
        ctx.emit(result)
    return _exit_code(result)


def _follow_safety_copy(ctx: CliContext, follower: _Follower, job_id: str) -> dict:
    """Wait, with progress on stderr, while the runner dumps the renamed database; Ctrl-C
    leaves it to finish in the background."""
    ctx.info("writing the safety dump from the renamed database (the install is already back; "
             "Ctrl-C leaves it to finish in the background)")
    with follower.bar:
        data = jobs.follow(ctx.settings, job_id, follower, stop=lambda: ctx.cancel.cancelled)
    copy = _engine().safety_copy(data) or {}
    if ctx.cancel.cancelled and data.get("alive"):
        ctx.info(f"stopped following; the safety dump goes on in the background: `fovea-tui restore --follow {job_id}`")
    elif copy.get("status") != "verified":
        ctx.info(f"warning: safety copy {copy.get('status')}: {copy.get('detail') or ''}")
    return data
