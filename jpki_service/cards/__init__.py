"""Checking a My Number card's proof against the CA."""
