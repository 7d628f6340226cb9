"""The drill's report (`<state_dir>/drills/drill-<stamp>.json` and `.md`) and the guide for
the full drill on a separate host."""

from __future__ import annotations

import json
import re
from datetime import timezone
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.drill.choose import choose_dump
from fovea_tui.engine.drill.result import MANUAL_CHECKLIST, DrillResult
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import human_duration

DRILLS_DIR = "drills"            # under state_dir; engine.metrics reads *.json here


def offsite_fetch_command(settings: Settings, key: str, dest: str) -> str:
    url = settings.backups.offsite
    if url.startswith("s3://"):
        endpoint = f" --endpoint-url {settings.s3.endpoint_url}" if settings.s3.endpoint_url else ""
        return f"aws s3 cp{endpoint} {url.rstrip('/')}/{key} {dest}"
    if url:
        return f"cp {Path(url) / key} {dest}"
    return f"cp {settings.backups_dir / key} {dest}"


def guide_steps(settings: Settings, dump: str | None = None, env_key: str | None = None) -> list[dict[str, Any]]:
    """The full drill on a separate host, step by step, with this install's names filled in.

    `dump` is the dump to restore (an off-site key or name); None leaves a placeholder.
    """
    dump = dump or "<newest dump from `fovea-tui list`>"
    env_name = env_key or (dump[: -len(mf.DUMP_SUFFIX)] + ".env" if dump.endswith(mf.DUMP_SUFFIX)
                           else "<its .env copy>")
    env_dest = settings.install.env_file
    compose_dir = str(Path(env_dest).parent)
    config = str(settings.source) if settings.source else "/etc/fovea-tui/config.toml"
    target = settings.volume.target or "<volume.target: not configured, the videos are not backed up>"
    steps = [
        {"title": "Stand up an empty stack on a separate host",
         "detail": f"Same compose file and images as this install (project {settings.install.compose_project}); "
                   "install fovea-tui and copy its config; give it read access to the off-site store "
                   "(AWS credentials in the environment or ~/.aws, never in the config).",
         "commands": [f"scp {config} NEW-HOST:{config}",
                      f"cd {compose_dir} && docker compose up -d {settings.database.service} redis"]},
        {"title": "Sync the video volume back",
         "detail": f"Downloads {target} into volume.path ({settings.volume.path}).",
         "commands": ["fovea-tui sync --pull"]},
        {"title": "Copy the env file of that backup",
         "detail": "Then adjust DATABASE_URL (and SESSION_SECRET, as the runbook says) for the new host; keep "
                   "API_KEY_ENCRYPTION_KEY: the stored API keys are encrypted with it.",
         "commands": [offsite_fetch_command(settings, env_name, env_dest), f"chmod 600 {env_dest}",
                      f"$EDITOR {env_dest}   # DATABASE_URL, SESSION_SECRET"]},
        {"title": "Restore the most recent dump",
         "detail": "The guided restore: pre-flight, safety dump, restore, migrations, start, verify.",
         "commands": [f"fovea-tui restore {dump}"]},
        {"title": "Start the rest of the stack",
         "commands": [f"cd {compose_dir} && docker compose up -d", "fovea-tui status"]},
        {"title": "Check by hand, and tick in the drill report",
         "detail": "; ".join(MANUAL_CHECKLIST) + ".",
         "commands": []},
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
    stem = "drill-" + result.started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
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
