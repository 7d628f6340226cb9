"""fovea-tui: back up, prune, sync, restore and drill a self-hosted Fovea install."""

__version__ = "0.1.0"
