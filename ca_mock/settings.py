"""Settings of the mock CA, read from the environment (prefix ``JPKI_CA_``).

Every policy number of DESIGN.md section 4 lives here with its default, so an operator can see
and change it without reading code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jpki_common.http_server import HttpServerSettings

KeyAlgorithm = Literal["rsa2048", "p256"]


class CASettings(HttpServerSettings):  # + the HTTP limits and exposure (jpki_common/http_server.py)
    model_config = SettingsConfigDict(env_prefix="JPKI_CA_", extra="ignore")

    data_dir: Path = Field(Path("var/ca"), description="Folder holding the CA's SQLite store.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file ca.sqlite3 under data_dir."
    )
    public_url: str = Field(
        "http://127.0.0.1:8100",
        description="Base URL written into certificates (CRL, OCSP, caIssuers). Fixed at init.",
    )
    api_token: str | None = Field(
        None,
        description="Bearer credential the lifecycle service presents; default: the token file "
        "that `jpki-ca init` writes under data_dir. It may issue phone certificates and change the "
        "status of phone certificates only.",
    )
    admin_token: str | None = Field(
        None,
        description="Bearer credential of the CA's administrator, needed over HTTP to issue card "
        "certificates and to change a card certificate's status; default: the admin-token file that "
        "`jpki-ca init` writes under data_dir. Must differ from api_token.",
    )
    key_algorithm: KeyAlgorithm = Field("rsa2048", description="Algorithm of the CA keys made at init.")
    card_validity_days: int = Field(5 * 365, description="Longest validity of a card certificate.")
    phone_validity_days: int = Field(5 * 365, description="Longest validity of a phone certificate.")
    crl_validity_hours: int = Field(24, description="nextUpdate - thisUpdate of every CRL.")
    crl_publish_interval_seconds: float = Field(
        2.0, description="Upper bound between a status change and the CRLs that show it."
    )
    delta_base_hours: int = Field(
        24, description="A delta CRL lists changes since a base full CRL at most this old."
    )
    crl_partition_size: int = Field(
        8192, ge=0, le=12_500,
        description="Certificates per CRL partition of the signature and user-authentication CAs; each "
        "certificate's CRL DP names its partition's CRL. 0: no partitions (new certificates name the "
        "whole-issuer CRL). The bound keeps a partition's full CRL under 1 MiB even if every certificate "
        "in it were revoked: an entry is at most 81 bytes (docs/ca.md, CRL partitions).",
    )
    issuer_crl_background_interval_seconds: float = Field(
        60.0, description="The background publisher re-publishes a changed whole-issuer CRL (sign.crl, "
        "auth.crl) at most this often; a fetch of it still publishes a changed one at once. Partition "
        "CRLs follow crl_publish_interval_seconds.",
    )
    ocsp_validity_hours: int = Field(24, description="nextUpdate - thisUpdate of OCSP responses.")
    ocsp_cache_max_age_seconds: int = Field(
        5, description="max-age of GET OCSP answers: how long a cache may hide a status change."
    )
    max_body_bytes: int = Field(64 * 1024, description="Requests with a larger body get 413.")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ca.sqlite3').resolve()}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    def resolved_api_token(self) -> str | None:
        return _token(self.api_token, self.token_file)

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"

    def resolved_admin_token(self) -> str | None:
        return _token(self.admin_token, self.admin_token_file)


def _token(given: str | None, file: Path) -> str | None:
    """The token from the environment, or failing that from its file (None if neither)."""
    if given:
        return given
    if file.exists():
        return file.read_text().strip()
    return None
