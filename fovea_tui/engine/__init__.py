"""The engine: everything fovea-tui does, with no knowledge of screens.

Nothing under this package may import textual; the TUI and the CLI are thin faces on it.
"""
