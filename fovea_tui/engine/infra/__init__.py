"""What the domains stand on: the database, the Docker stack, object stores, locks, audit, detached jobs."""
