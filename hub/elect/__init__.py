"""Leader election: which detector process publishes (election), and running the detector only while
this process leads (lead)."""
