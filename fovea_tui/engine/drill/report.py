"""The drill's report (`<state_dir>/drills/drill-<stamp>.json` and `.md`) and the guide for
the full drill on a separate host."""

from __future__ import annotations

import json
import re
from datetime import UTC
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.drill.choose import choose_dump
from fovea_tui.engine.drill.result import MANUAL_CHECKLIST, DrillResult
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import human_duration

DRILLS_DIR = "drills"            # under state_dir; engine.metrics reads *.json here


def offsite_fetch_command(settings: Settings, key: str, dest: str) -> str:
    """A shell line that fetches off-site `key` to `dest`, through `age -d` when it is encrypted."""
    url = settings.backups.offsite
    identity = settings.encryption.identity_file or "IDENTITY"
    encrypted = key.endswith(encryption.AGE_SUFFIX)
    if url.startswith("s3://"):
        endpoint = f" --endpoint-url {settings.s3.endpoint_url}" if settings.s3.endpoint_url else ""
        source = f"{url.rstrip('/')}/{key}"
        if encrypted:
            return f"aws s3 cp{endpoint} {source} - | age -d -i {identity} > {dest}"
        return f"aws s3 cp{endpoint} {source} {dest}"
    path = Path(url) / key if url else settings.backups_dir / key
    return f"age -d -i {identity} -o {dest} {path}" if encrypted else f"cp {path} {dest}"


def recover_command(settings: Settings, identity: str = "~/fovea-identity.txt") -> str:
    """The one line that rebuilds this install on a new host (see engine.drill.recover)."""
    url = settings.backups.offsite or "<backups.offsite: not configured, nothing to recover from>"
    prefix = f"AWS_ENDPOINT_URL={settings.s3.endpoint_url} " if url.startswith("s3://") and settings.s3.endpoint_url else ""
    key = f" --identity {identity}" if encryption.enabled(settings) else ""
    return f"{prefix}fovea-tui recover --from {url}{key}"


def guide_steps(settings: Settings, dump: str | None = None, env_key: str | None = None) -> list[dict[str, Any]]:
    """The full drill on a separate host, with this install's names filled in: `recover`
    first, then the same step by step for an operator who wants each piece in hand.

    `dump` is the dump to restore (an off-site key or name); None leaves a placeholder.
    """
    dump = dump or "<newest dump from `fovea-tui list`>"
    plain_dump = encryption.plain_name(dump)
    env_name = env_key or (plain_dump[: -len(mf.DUMP_SUFFIX)] + ".env" if plain_dump.endswith(mf.DUMP_SUFFIX)
                           else "<its .env copy>")
    env_dest = settings.install.env_file
    compose_dir = str(Path(env_dest).parent)
    target = settings.volume.target or "<volume.target: not configured, the videos are not backed up>"
    identity = settings.encryption.identity_file or "<the identity kept away from this host>"
    first = []
    if encryption.enabled(settings):
        first.append(f"scp {identity} NEW-HOST:~/fovea-identity.txt   # or the copy kept away from this host")
    steps = [
        {"title": "Stand up an empty stack on a separate host",
         "detail": f"Same compose file and images as this install (project {settings.install.compose_project}); "
                   "install fovea-tui; give it read access to the off-site store (AWS credentials in the "
                   "environment or ~/.aws, never in the config)"
                   + ("; bring the age identity: the off-site copies are encrypted." if first else "."),
         "commands": first + [f"cd {compose_dir} && docker compose up -d {settings.database.service} redis"]},
        {"title": "Recover from the off-site copy",
         "detail": "Lists the off-site backups, fetches, decrypts and verifies the newest verified one, writes "
                   "this host's config, installs the env copy (0600), pulls the video copy, then runs the guided "
                   "restore with its safety checks. Pass --config PATH to start from a config written for the "
                   "new host.",
         "commands": [recover_command(settings)]},
        {"title": "Adjust the env file for the new host",
         "detail": "As recover lists: DATABASE_URL (and SESSION_SECRET, as the runbook says); keep "
                   "API_KEY_ENCRYPTION_KEY: the stored API keys are encrypted with it.",
         "commands": [f"$EDITOR {env_dest}   # DATABASE_URL, SESSION_SECRET"]},
        {"title": "Start the rest of the stack",
         "commands": [f"cd {compose_dir} && docker compose up -d", "fovea-tui status"]},
        {"title": "Check by hand, and tick in the drill report",
         "detail": "; ".join(MANUAL_CHECKLIST) + ".",
         "commands": []},
        {"title": "Or the same step by step",
         "detail": f"Copy this host's config over, pull the videos ({target} into {settings.volume.path}), fetch "
                   "the env copy of that backup, then the guided restore.",
         "commands": ["fovea-tui sync --pull", offsite_fetch_command(settings, env_name, env_dest),
                      f"chmod 600 {env_dest}", f"fovea-tui restore {plain_dump}"]},
    ]
    return steps


def render_guide(steps: list[dict[str, Any]]) -> str:
    lines = ["Full drill on a separate host (the runbook's quarterly drill):"]
    for i, step in enumerate(steps, 1):
        lines.append(f"  {i}. {step['title']}")
        if step.get("detail"):
            lines.append(f"     {step['detail']}")
        for cmd in step.get("commands", []):
            lines.append(f"       $ {cmd}")
    return "\n".join(lines)


def guide_for(settings: Settings) -> list[dict[str, Any]]:
    """The guide for the newest dump off-site (or local), without running a drill."""
    try:
        chosen = choose_dump(settings)
        return guide_steps(settings, chosen.dump_key or chosen.name, chosen.env_key)
    except FoveaError:
        last = latest_report(settings)
        if last and last.get("dump"):
            return guide_steps(settings, last.get("dump_key") or last["dump"], last.get("env_key"))
        return guide_steps(settings)


def drills_dir(settings: Settings) -> Path:
    return settings.state_dir / DRILLS_DIR


def render_markdown(data: dict[str, Any]) -> str:
    verdict = "PASSED" if data["ok"] else "FAILED"
    lines = [f"# Disaster-recovery drill {data['started_at']}: {verdict}", "",
             f"- Dump: `{data['dump']}` ({data['source']}" + (f", `{data['dump_key']}`" if data.get("dump_key") else "")
             + ")",
             f"- Dump taken: {data.get('dump_time') or 'unknown'}",
             f"- Recovery time (RTO, start to a verified database): {human_duration(data.get('rto_s'))}",
             f"- Recovery point (RPO, age of the backup): {human_duration(data.get('rpo_s'))}",
             f"- Scratch database: `{data['scratch_database']}` (dropped)",
             f"- Off-site: {data.get('offsite') or 'none configured'}; videos: {data.get('volume_target') or 'none configured'}",
             "", "## Checks", "", "| check | result | what it saw |", "|---|---|---|"]
    for c in data["checks"]:
        detail = str(c["detail"]).replace("|", "\\|")
        lines.append(f"| {c.get('title', c['name'])} (`{c['name']}`) | {c['status']} | {detail} |")
    if data.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    lines += ["", "## On a separate host: tick by hand", ""]
    lines += [f"- [ ] {item['item']}" for item in data["checklist"]]
    if data.get("guide"):
        lines += ["", "## The full drill on a separate host", ""]
        for i, step in enumerate(data["guide"], 1):
            lines.append(f"{i}. **{step['title']}**" + (f" {step['detail']}" if step.get("detail") else ""))
            if step.get("commands"):
                lines.append("")
                lines.append("   ```sh")
                lines += [f"   {cmd}" for cmd in step["commands"]]
                lines.append("   ```")
    return "\n".join(lines) + "\n"


def write_reports(settings: Settings, result: DrillResult) -> tuple[Path, Path]:
    directory = ensure_private_dir(drills_dir(settings))
    stem = "drill-" + result.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    result.report_json = directory / f"{stem}.json"
    result.report_md = directory / f"{stem}.md"
    data = result.as_dict()
    write_atomic(result.report_md, masking.redact(render_markdown(data)).encode("utf-8"))
    write_atomic(result.report_json,
                          (masking.redact(json.dumps(data, indent=2, default=str)) + "\n").encode("utf-8"))
    return result.report_json, result.report_md


_REPORT = re.compile(r"drill-\d{8}T\d{6}Z\.json")


def latest_report(settings: Settings) -> dict[str, Any] | None:
    """The newest drill report (by its name, which is its start time), or None."""
    try:
        names = sorted((p for p in drills_dir(settings).iterdir() if _REPORT.fullmatch(p.name)), reverse=True)
    except OSError:
        return None
    for path in names:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "ok" in data:
            data.setdefault("report", {})["json"] = str(path)
            return data
    return None
