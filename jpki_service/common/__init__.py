"""Shared plumbing of the service: settings, problem documents, retry and crash points for tests."""
