"""What pre-flight reads from a dump's data before anything is restored: the videos it
references (the `videos` COPY block) and how many NULLs some columns hold (a pending
migration's SET NOT NULL fails on them).

It rides on verify's single read of the dump (ISA-L, 64 KiB reads): DumpScanner is the
StreamInspector verify feeds, which finds the COPY blocks and their ends with C-speed
bytes.find; only the videos rows (and the rows of a table whose NULLs are counted) are
split in Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.stream_format import StreamInspector
from fovea_tui.engine.backups.verify import DumpRead, VerifyResult, read_dump, verify_dump
from fovea_tui.engine.progress import CancelToken, ProgressEvent, no_progress

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


class DumpScanner(StreamInspector):
    """verify's StreamInspector that also reads the rows of the blocks asked about (the
    videos, the tables whose NULLs are counted); `scan` is the answer. The inspector finds
    the blocks and their ends; only a partial row is carried between chunks."""

    def __init__(self, null_columns: set[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.scan = DumpScan(nulls={key: 0 for key in null_columns or ()})
        self._wanted = {t for t, _ in self.scan.nulls} | {"videos"}
        self._block: tuple[str, list[str]] | None = None  # inside a COPY block that is read
        self._partial = b""

    def copy_started(self, header: bytes) -> None:
        m = _COPY.match(header.decode("utf-8", "replace").rstrip())
        table = unquote_ident(m.group(1)) if m else None
        if m is None or table not in self._wanted:
            self._block = None
            return
        self._block = (table, [unquote_ident(c) for c in _split_columns(m.group(2))])
        if table == "videos":
            self.scan.videos = []

    def copy_data(self, buf: bytes, start: int, end: int) -> None:
        if self._block is None or start >= end:
            return
        data = self._partial + buf[start:end] if self._partial else buf[start:end]
        last = data.rfind(b"\n") + 1
        self._read_rows(data[:last])
        self._partial = data[last:]

    def copy_ended(self) -> None:
        if self._block is not None and self._partial:
            self._read_rows(self._partial + b"\n")
        self._block, self._partial = None, b""

    def _read_rows(self, data: bytes) -> None:
        """Whole rows of the block being read (each line ends with a newline)."""
        if not data:
            return
        table, columns = self._block  # type: ignore[misc]  # only called inside a block that is read
        lines = data.split(b"\n")
        lines.pop()
        if table == "videos" and "filename" in columns:
            at_name = columns.index("filename")
            at_path = columns.index("path") if "path" in columns else None
            for line in lines:
                values = line.decode("utf-8", "replace").split("\t")
                name = copy_field(values[at_name]) if at_name < len(values) else None  # a short row: NULLs
                path = copy_field(values[at_path]) if at_path is not None and at_path < len(values) else None
                self.scan.videos.append((name or "", path or ""))  # type: ignore[union-attr]
        for i, column in enumerate(columns):
            if (table, column) in self.scan.nulls:
                self.scan.nulls[(table, column)] += sum(
                    1 for line in lines if line.count(b"\t") >= i and line.split(b"\t", i + 1)[i] == b"\\N")


def verify_and_scan(path: Path, manifest: mf.Manifest | None, *, cancel: CancelToken | None = None,
                    progress: Callable[[ProgressEvent], None] = no_progress,
                    read: DumpRead | None = None) -> tuple[VerifyResult, DumpScan]:
    """Pre-flight's one read of the whole dump: is it whole and its manifest's, and its videos.
    `read`: that read's answer when it was made ahead (readahead), a DumpScanner's."""
    if read is not None and isinstance(read[0], DumpScanner):
        scanner = read[0]
    else:
        scanner, read = DumpScanner(), None
    result = verify_dump(path, manifest, cancel=cancel, progress=progress, inspector=scanner, read=read)
    return result, scanner.scan


def scan_dump(path: Path, null_columns: set[tuple[str, str]] | None = None,
              cancel: CancelToken | None = None) -> DumpScan:
    """The `videos` rows' (filename, path) and, for each (table, column) asked, its NULL count."""
    scanner = DumpScanner(null_columns)
    read_dump(path, cancel=cancel, inspector=scanner)
    return scanner.scan


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
