"""`fovea-tui` with no command: load the settings and run the app."""

from __future__ import annotations

from fovea_tui.config import load_settings
from fovea_tui.engine.infra.stack import no_docker


def launch_tui(config_path: str | None = None, *, docker: bool = True, **kwargs) -> int:
    """Run the app; `docker=False` (the demo) manages no stack: no Docker engine is asked."""
    settings = load_settings(config_path)
    from fovea_tui.tui.app import create_app

    if not docker:
        no_docker()
        kwargs["watch_stack"] = False
    app = create_app(settings, **kwargs)
    result = app.run()
    return int(result or 0) if isinstance(result, int) else 0
