"""What every use case is handed: the adapters (the store, the CA client, the service's keys) and
the settings. Made once by the entry point (``entrypoints/app.py``), passed down explicitly.
"""
from __future__ import annotations

from dataclasses import dataclass

from jpki_service.adapters.ca_client import CAClient
from jpki_service.adapters.db import Store
from jpki_service.adapters.service_keys import ServiceKeys
from jpki_service.common.settings import ServiceSettings


@dataclass
class ServiceContext:
    """What every use case needs: the store, the CA adapter, settings, the service's keys."""

    store: Store
    ca: CAClient
    settings: ServiceSettings
    keys: ServiceKeys
