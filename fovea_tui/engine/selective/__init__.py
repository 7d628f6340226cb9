"""Selective restore: compare a dump with live, bring back one video or persona, undo it."""
