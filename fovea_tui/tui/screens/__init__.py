"""One module per screen. Register a new one with a line in fovea_tui.tui.app.SCREENS."""
