"""`python -m fovea_tui.tui.screenshots DIR`: an SVG of every registered screen, 120x36,
from the demo install, with the clock fixed at the demo's anchor time."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

SIZE = (120, 36)


async def _shoot(settings, clock, name: str, out: Path, *, press: tuple[str, ...] = ()) -> Path:
    from fovea_tui.tui.app import create_app

    app = create_app(settings, clock=clock, poll_interval=0, watch_stack=False, first_run=False,
                     animate=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):  # the first status probe runs in a thread
            if app.status is not None or app.status_error:
                break
            await pilot.pause(0.05)
        if name in app.screen_specs and name != app.current_mode:
            await app.switch_mode(name)
        for key in press:
            await pilot.press(key)
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)
        path = out / f"{name}.svg"
        path.write_text(app.export_screenshot(title=f"fovea-tui: {name}"), encoding="utf-8")
    return path


async def shoot_all(out: Path) -> list[Path]:
    from fovea_tui.config import load_file
    from fovea_tui.engine.infra.stack import no_docker
    from fovea_tui.sandbox import demo
    from fovea_tui.tui.app import SCREENS, fixed_clock

    no_docker()
    # A neutral, stable place (not the checkout), so no machine's paths end up in the SVGs.
    root = Path(os.environ.get(demo.DEMO_DIR_ENV) or Path(tempfile.gettempdir()) / "fovea-tui-demo")
    install = demo.build(root, log=lambda line: print(line, file=sys.stderr))
    settings = load_file(install.config)
    clock = fixed_clock(install.anchor)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in SCREENS:
        written.append(await _shoot(settings, clock, spec.name, out))
    written.append(await _shoot(settings, clock, "help", out, press=("question_mark",)))  # over the dashboard
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "screenshots")
    for path in asyncio.run(shoot_all(out)):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
