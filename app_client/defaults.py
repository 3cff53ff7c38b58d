"""What ``jpki-app`` assumes when told nothing: light on purpose, the CLI reads it to print ``--help``."""
from __future__ import annotations

DEFAULT_SERVICE_URL = "http://127.0.0.1:8000"
DEFAULT_DEVICE_MODEL = "jpki-app simulated phone"
DEFAULT_TIMEOUT = 10.0  # seconds to wait for the service (--timeout, JPKI_APP_TIMEOUT)
SLOW_AFTER = 2.0  # seconds after which the app says it is still waiting
