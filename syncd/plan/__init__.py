"""Pure planning over snapshots: what differs, what to send, in what order."""
