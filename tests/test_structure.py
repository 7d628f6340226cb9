"""The package's shape: no import cycle between fovea_tui's modules (function-level imports
included, so a cycle cannot hide inside a function), and the one atomic write."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from fovea_tui.engine.infra.files import write_atomic

PACKAGE = Path(__file__).resolve().parent.parent / "fovea_tui"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the fovea_tui modules it imports anywhere in its body (a package's own
    __init__ is not counted as imported by its submodules: Python runs it first anyway)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("fovea_tui") and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_the_engine():
    graph = _graph()
    assert "fovea_tui.engine.backups.stream_format" in graph["fovea_tui.engine.backups.pipeline"]
    assert "fovea_tui.engine.backups.prune_journal" in graph["fovea_tui.engine.backups.inventory"]


def test_no_import_cycle_between_modules():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_the_walk_finds_a_cycle_hidden_in_a_function():
    graph = _graph()
    graph["fovea_tui.engine.backups.stream_format"].add("fovea_tui.engine.backups.pipeline")
    assert _cycle(graph) is not None


def test_the_engine_never_imports_a_face():
    faces = ("fovea_tui.tui", "fovea_tui.cli", "textual")
    for name, path in _modules().items():
        if not name.startswith("fovea_tui.engine"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(faces)], (name, names)


# --------------------------------------------------------------------------- write_atomic


def test_write_atomic_has_its_mode_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        secret = write_atomic(tmp_path / "state.json", '{"a": 1}')
        unit = write_atomic(tmp_path / "fovea.service", b"[Unit]\n", 0o644)
    finally:
        os.umask(old)
    assert (secret.stat().st_mode & 0o777, unit.stat().st_mode & 0o777) == (0o600, 0o644)
    os.umask(0o077)
    try:
        assert write_atomic(tmp_path / "fovea.service", b"[Unit]\n", 0o644).stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    assert secret.read_text() == '{"a": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fovea.service", "state.json"]


def test_write_atomic_replacing_keeps_the_old_file_until_the_new_one_is_whole(tmp_path):
    target = tmp_path / "prune-pending.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new" * 100_000)
    assert target.read_bytes() == b"new" * 100_000
    assert [p.name for p in tmp_path.iterdir()] == ["prune-pending.json"]


def test_write_atomic_that_cannot_rename_leaves_nothing_behind(tmp_path):
    blocker = tmp_path / "summary.json"
    blocker.mkdir()  # a directory where the file should go: the rename fails
    (blocker / "inside").write_text("kept")
    with pytest.raises(OSError):
        write_atomic(blocker, b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    assert (blocker / "inside").read_text() == "kept"
