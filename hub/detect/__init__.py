"""Detection: read the registry (source), compare snapshots (snapshot, diff), publish what changed
and remember where it got to (detector, checkpoint, recent)."""
