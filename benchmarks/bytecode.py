"""Compile fovea-tui's bytecode before a benchmark times processes that import it.

An installed fovea-tui has its .pyc files (pip compiles them); a checkout run with
PYTHONDONTWRITEBYTECODE set (or from a read-only tree) compiles every module from source
at each start, while its dependencies in site-packages do not: a start-up race against
`aws` or `import textual` would time the compiler. compileall writes __pycache__ next to
the sources (ignored by git) and skips what is up to date.
"""

from __future__ import annotations

import compileall
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "fovea_tui"


def compile_package() -> None:
    if not compileall.compile_dir(PACKAGE, quiet=1):
        raise SystemExit(f"compileall failed on {PACKAGE}")
