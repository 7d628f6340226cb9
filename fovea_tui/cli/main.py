"""`fovea-tui [--config PATH] [COMMAND] [OPTIONS]`: no command opens the TUI.

Every error an operator can cause ends here as one line on stderr (and, with --json, a
JSON document on stdout) with the contract's exit code; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from fovea_tui import __version__, masking
from fovea_tui.cli.commands import COMMAND_MODULES
from fovea_tui.cli.context import CliContext
from fovea_tui.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Cancelled, FoveaError


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (it already does) and names the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _commands_needed(argv: list[str]) -> list[str]:
    """The command modules whose parsers this command line needs.

    Each command module imports its part of the engine (boto3, psycopg, the status model...),
    so importing all of them costs a quarter of a second that a cron'd `sync` or the TUI's
    launch does not need: a known command gets its own parser only; a line without a command
    (the TUI) gets none unless it asks for help; anything else (an unknown command, a typo)
    gets them all, so argparse lists the choices.
    """
    words = iter(argv)
    for word in words:
        if word in ("-h", "--help"):
            return COMMAND_MODULES
        if word.startswith("--c") and "--config".startswith(word):
            next(words, None)  # --config PATH (or an abbreviation of it): PATH is not the command
            continue
        if word.startswith("-"):
            continue
        module = word.replace("-", "_")
        return [module] if module in COMMAND_MODULES and "_" not in word else COMMAND_MODULES
    return []


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser; with `argv`, only the command parsers that line needs (see above)."""
    parser = _Parser(
        prog="fovea-tui",
        description="Back up, prune, sync, restore and drill a Fovea install. "
        "Without a command, opens the terminal UI.",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: $FOVEA_TUI_CONFIG, "
                        "./fovea-tui.toml, ~/.config/fovea-tui/config.toml, /etc/fovea-tui/config.toml)")
    parser.add_argument("--version", action="version", version=f"fovea-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES if argv is None else _commands_needed(argv):
        importlib.import_module(f"fovea_tui.cli.commands.{name}").register(sub)
    return parser


def _crash_log(ctx: CliContext | None) -> Path | None:
    """Write a redacted traceback for an unexpected error; return where it went."""
    text = masking.redact(traceback.format_exc())
    candidates = []
    try:
        if ctx is not None:
            candidates.append(ctx.settings.state_dir)
    except Exception:  # noqa: BLE001 - settings may be what failed; fall back below
        pass
    candidates.append(Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "fovea-tui")
    for directory in candidates:
        try:
            from fovea_tui.engine.infra.locks import ensure_private_dir

            ensure_private_dir(directory)  # 0700 for every directory it creates, whatever the umask
            path = directory / "crash.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"--- {datetime.now(UTC).isoformat()} fovea-tui {__version__}\n{text}\n")
            return path
        except (OSError, FoveaError):
            continue
    return None


def _fail(ctx: CliContext | None, code: int, message: str, *, kind: str) -> int:
    message = masking.redact(message)
    sys.stderr.write(f"fovea-tui: {message}\n")
    if ctx is not None and ctx.json:
        sys.stdout.write(json.dumps({"ok": False, "error": message, "kind": kind, "exit_code": code}) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    root = logging.getLogger()
    if not any(isinstance(h, masking.RedactingStderrHandler) for h in root.handlers):
        root.addHandler(masking.RedactingStderrHandler())
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        from fovea_tui.tui.launch import launch_tui  # the only path that imports textual

        try:
            return launch_tui(args.config)
        except FoveaError as exc:
            return _fail(None, exc.exit_code, str(exc), kind=type(exc).__name__)

    ctx = CliContext(config_path=args.config, json=getattr(args, "json", False))

    def on_signal(signum, _frame):
        if ctx.cancel.cancelled:  # a second Ctrl-C: the operator really means it
            raise KeyboardInterrupt
        ctx.cancel.cancel("interrupted by signal " + signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        return int(args.handler(args, ctx) or EXIT_OK)
    except Cancelled as exc:
        return _fail(ctx, EXIT_FAILED, f"cancelled: {exc}", kind="Cancelled")
    except FoveaError as exc:
        return _fail(ctx, exc.exit_code, str(exc), kind=type(exc).__name__)
    except KeyboardInterrupt:
        return _fail(ctx, EXIT_FAILED, "interrupted", kind="Cancelled")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, a log, exit 1
        where = _crash_log(ctx)
        detail = f"; details in {where}" if where else ""
        return _fail(ctx, EXIT_FAILED, f"unexpected error: {type(exc).__name__}: {exc}{detail}",
                     kind="InternalError")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
