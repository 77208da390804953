"""Detection: read the registry (source, once registry_uri has settled its URI: driver, file
store), compare snapshots (snapshot, diff), publish what changed and remember where it got to
(detector, checkpoint, recent), with pushes for one model beside the full scan (pushes) and
the scan's cadence (cadence)."""
