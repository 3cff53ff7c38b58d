"""What the app itself remembers, in ``<home>/app/``: erased by a factory reset and by uninstall.

Unlike the secure element, this is ordinary app storage. Knowing the registration here is what
tells a working installation from a fresh one that finds certificates left in the SE.
"""
from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app_client import storage

APP_FORMAT = "jpki-app-data/1"


@dataclass(frozen=True)
class EndedRegistration:
    """A registration that ended while this app was installed, kept until the owner forgets it.

    Its keys and certificates are gone from the SE (a revoked phone cannot sign); what stays is
    what lets the owner check later that the end reached the CA: the id and its owner token, how
    and when it ended, and what the service said last. No personal data: no certificate, only serials.
    """

    registration_id: str
    state: str  # revoked | expired, as the service said last
    reason: str | None  # owner-revoked, superseded, uninstalled, stale-certificate, ...
    ended_by: str  # owner-revoke | found-ended (status) | stale-certificate (install)
    ended_at: str  # ISO 8601, the phone's clock when the app saw the end
    checked_at: str  # ISO 8601, when the service last answered about it
    ca_sync: str | None = None  # done | pending | failed, as the service said last
    ca_sync_reason: str | None = None
    pending_ca_operations: int | None = None  # changes still on their way to the CA, as last said
    serials: dict[str, str] = field(default_factory=dict)  # kind -> serial of the ended certificates
    case_reference: str | None = None  # what the call centre names it by
    # What reads it at the service (from the SE, before its keys were deleted); None: ended before
    # owner tokens existed, and then the service cannot be asked about it.
    owner_token: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EndedRegistration:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> EndedRegistration:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class AppState:
    registration_id: str | None = None
    service_url: str | None = None
    device_model: str | None = None
    # The CA's certificates (root, sign, auth) as read from the card at registration: the trust
    # anchor the app pins, so signing and verifying do not take a root from a document.
    ca_chain: dict[str, str] = field(default_factory=dict)
    # The code the call centre asks for to suspend this registration if the phone is lost. The
    # service shows it once, at registration, and never again: the app is the only copy the
    # owner has besides what they wrote down. It belongs to ``registration_id`` and goes with it.
    suspension_code: str | None = None
    # The last registration that ended on this phone (revoked, expired, found stale), until the
    # owner forgets it or registers again: ``status`` keeps reporting it meanwhile.
    ended: EndedRegistration | None = None

    def replace(self, **changes: Any) -> AppState:
        return dataclasses.replace(self, **changes)


class AppData:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def _file(self) -> Path:
        return self.folder / "app.json"

    def exists(self) -> bool:
        return self._file.exists()

    def load(self) -> AppState:
        """The saved state; an empty one for an app never opened (or erased)."""
        if not self.exists():
            return AppState()
        data = storage.read_json(self._file)
        return AppState(registration_id=data.get("registration_id"), service_url=data.get("service_url"),
                        device_model=data.get("device_model"), ca_chain=dict(data.get("ca_chain") or {}),
                        suspension_code=data.get("suspension_code"),
                        ended=EndedRegistration.from_json(data["ended"]) if data.get("ended") else None)

    def save(self, state: AppState) -> None:
        storage.write_json(self._file, {"format": APP_FORMAT, **dataclasses.asdict(state)})

    def erase(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
