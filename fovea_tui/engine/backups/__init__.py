"""Database backups: the dump pipeline, manifests, verification, the inventory, retention and prune."""
