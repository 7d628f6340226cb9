"""Widgets shared by the screens: state cards, job progress, confirm dialogs."""
