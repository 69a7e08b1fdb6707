"""On-disk containers for syncd's own state (snapshots, stat cache)."""
