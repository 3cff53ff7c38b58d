"""The RFC 3161 time-stamping authority of the mock CA."""
