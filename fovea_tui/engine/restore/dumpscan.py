"""What pre-flight reads from a dump's data before anything is restored: the videos it
references (the `videos` COPY block) and how many NULLs some columns hold (a pending
migration's SET NOT NULL fails on them).

One streaming pass over the decompressed SQL; only the COPY blocks asked about are parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from isal import igzip

from fovea_tui.engine.progress import CancelToken

_COPY = re.compile(r'^COPY (?:"?public"?\.)?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*) \((.*)\) FROM stdin;$')
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote_ident(name: str) -> str:
    """An SQL identifier as PostgreSQL stores it: quoted kept verbatim, unquoted folded to lower case."""
    name = name.strip()
    if name.startswith('"') and name.endswith('"') and len(name) >= 2:
        return name[1:-1].replace('""', '"')
    return name.lower()


def copy_field(raw: str) -> str | None:
    r"""One field of COPY's text format: \N is NULL; backslash escapes decoded."""
    if raw == r"\N":
        return None
    if "\\" not in raw:
        return raw
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


@dataclass
class DumpScan:
    videos: list[tuple[str, str]] | None = None   # (filename, path) per row; None: no videos data
    nulls: dict[tuple[str, str], int] = field(default_factory=dict)


def scan_dump(path: Path, null_columns: set[tuple[str, str]] | None = None,
              cancel: CancelToken | None = None) -> DumpScan:
    """The `videos` rows' (filename, path) and, for each (table, column) asked, its NULL count."""
    null_columns = set(null_columns or ())
    tables = {t for t, _ in null_columns}
    scan = DumpScan(nulls={key: 0 for key in null_columns})
    with igzip.open(path, "rb") as fh:
        reading: tuple[str, list[str]] | None = None
        for n, raw in enumerate(fh):
            if cancel is not None and n % 100_000 == 0:
                cancel.check()
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if reading is None:
                if not line.startswith("COPY "):
                    continue
                m = _COPY.match(line)
                if not m:
                    continue
                table = unquote_ident(m.group(1))
                if table == "videos" or table in tables:
                    columns = [unquote_ident(c) for c in _split_columns(m.group(2))]
                    reading = (table, columns)
                    if table == "videos":
                        scan.videos = []
                continue
            if line == "\\.":
                reading = None
                continue
            table, columns = reading
            values = line.split("\t")
            if table == "videos" and scan.videos is not None and "filename" in columns:
                row = dict(zip(columns, values, strict=False))  # a short row: its missing fields read as NULL
                scan.videos.append((copy_field(row["filename"]) or "", copy_field(row.get("path", r"\N")) or ""))
            for i, column in enumerate(columns):
                if (table, column) in scan.nulls and i < len(values) and values[i] == r"\N":
                    scan.nulls[(table, column)] += 1
    return scan


def _split_columns(text: str) -> list[str]:
    """COPY's column list: commas outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [c.strip() for c in out if c.strip()]
