"""Who may do what over the CA's HTTP API.

Two bearer credentials (docs/ca.md, "The two credentials"):

* the **service** credential (``JPKI_CA_API_TOKEN`` or ``<data>/api-token``), which the lifecycle service
  presents: it may read, issue phone certificates and change the status of phone certificates, nothing
  about cards;
* the **administrator** credential (``JPKI_CA_ADMIN_TOKEN`` or ``<data>/admin-token``): everything,
  card certificates included.

The ``jpki-ca`` CLI works on the store directly and needs neither.
"""
from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from ca_mock.problems import CAProblem
from ca_mock.settings import CASettings
from jpki_common.profiles import Profile


class Credential(str, enum.Enum):
    SERVICE = "service"
    ADMINISTRATOR = "administrator"


class OutsideCredentialScope(CAProblem):
    status, title, slug = 403, "Not allowed for this credential", "outside-credential-scope"
    example = "the service credential may not issue card-signature certificates: only phone certificates. ..."
    example_members = {"credential": "service", "profile": "card-signature", "action": "issue"}


class CredentialsMisconfigured(ValueError):
    """The two credentials would not be told apart."""


@dataclass(frozen=True)
class Credentials:
    """The tokens this CA accepts, read once at start."""

    service_token: str | None
    admin_token: str | None

    @classmethod
    def from_settings(cls, settings: CASettings) -> Credentials:
        service, admin = settings.resolved_api_token(), settings.resolved_admin_token()
        if service is not None and service == admin:
            raise CredentialsMisconfigured(
                "the administrator token equals the service token; give JPKI_CA_ADMIN_TOKEN (or "
                "<data>/admin-token) a value of its own"
            )
        return cls(service, admin)

    def identify(self, presented: str) -> Credential | None:
        """Which credential ``presented`` is, compared in constant time; None for neither."""
        matches = {
            credential: token is not None and secrets.compare_digest(presented.encode(), token.encode())
            for credential, token in ((Credential.SERVICE, self.service_token),
                                      (Credential.ADMINISTRATOR, self.admin_token))
        }
        return next((credential for credential, matched in matches.items() if matched), None)


def check_scope(credential: Credential, profile: Profile, act: str) -> None:
    """Refuse (403) when ``credential`` may not ``act`` ("issue", "revoke", ...) on ``profile``
    certificates: the service credential is for phone certificates only."""
    if credential is Credential.ADMINISTRATOR or profile.is_phone:
        return
    raise OutsideCredentialScope(
        f"the service credential may not {act} {profile.name} certificates: only phone certificates. "
        "Card certificates need the administrator credential (JPKI_CA_ADMIN_TOKEN or <data>/admin-token; "
        "a CA initialised before it existed gets one from `jpki-ca init --exist-ok`), or the jpki-ca CLI",
        credential=credential.value, profile=profile.name, action=act,
    )
