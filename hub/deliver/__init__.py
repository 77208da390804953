"""Delivery: a lane per subscription on the events topic (worker, lane, running, routing), one
attempt taken to a durable end (dispatch), retries (scheduler, schedule, jobs), what may be
committed (offsets), dead letters and replay (dlq, replay)."""
