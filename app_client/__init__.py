"""The Mynaportal-style phone app with its simulated secure element (built after the mock CA)."""
