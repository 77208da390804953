"""Helpers shared by the test suites (real subprocesses, no mocks)."""
