"""`fovea-tui` with no command: load the settings and run the app."""

from __future__ import annotations

from fovea_tui.config import load_settings


def launch_tui(config_path: str | None = None, **kwargs) -> int:
    settings = load_settings(config_path)
    from fovea_tui.tui.app import create_app

    app = create_app(settings, **kwargs)
    result = app.run()
    return int(result or 0) if isinstance(result, int) else 0
