"""Leader election: who should lead (claim), membership, lease and fencing (election), and
running the detector only while this process leads (lead)."""
