"""The disaster-recovery drill: a scratch restore of the newest dump, checked end to end."""
