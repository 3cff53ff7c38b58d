"""The JPKI smartphone certificate lifecycle service (built in the issues after the mock CA)."""
