"""Settings of the lifecycle service, from the environment (prefix ``JPKI_``)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from jpki_common.http_server import HttpServerSettings


class ServiceSettings(HttpServerSettings):  # + the HTTP limits and exposure (jpki_common/http_server.py)
    model_config = SettingsConfigDict(env_prefix="JPKI_", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Folder for the SQLite store, keys and the embedded CA.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite var/service.sqlite3.")
    ca_url: str | None = Field(None, description="The CA's API base URL; unset: serve starts the mock CA.")
    ca_token: str | None = Field(None, description="Bearer credential for the CA API.")
    ca_timeout_seconds: float = Field(5.0, description="Per-call timeout towards the CA.")
    ocsp_max_age_seconds: float = Field(
        300.0, gt=0, description="An OCSP answer whose thisUpdate is older than this is not believed (our "
                                 "requests carry a nonce, so answers are fresh; "
                                 "jpki_service/adapters/ocsp_verification.py)."
    )
    ocsp_clock_skew_seconds: float = Field(
        60.0, ge=0, description="Tolerated clock difference with the OCSP responder: a thisUpdate at most "
                                "this far in the future, a nextUpdate at most this far in the past."
    )
    challenge_ttl_seconds: int = Field(
        120, ge=1, description="Lifetime of an owner-proof or login challenge; the background worker deletes it "
                               "at its first round after expiry."
    )
    dispatch_interval_seconds: float = Field(1.0, description="How often waiting CA operations are retried.")
    max_retry_backoff_seconds: float = Field(
        30.0, description="Longest wait between two attempts to carry a change to an unreachable CA."
    )
    cascade_interval_seconds: float = Field(
        30.0, description="How often card revocations at the CA are looked for (bounds the cascade delay)."
    )
    person_key: str | None = Field(
        None, description="Secret for the keyed person index; default: a key file under data_dir."
    )
    data_key: str | None = Field(
        None, description="Root secret sealing personal data and keying the audit chain; default: a key file "
                          "under data_dir (jpki_service/adapters/service_keys.py)."
    )
    audit_key_file: Path | None = Field(
        None, description="File holding the secret the audit chain's key is derived from, best outside data_dir "
                          "(made owner-only at the first start if absent); unset: derived from the data key "
                          "(docs/security.md)."
    )
    se_maker_ca_file: Path | None = Field(
        None, description="PEM file of the secure-element makers' attestation root certificates a dealer check "
                          "trusts (docs/dealers.md); unset: the simulated maker of jpki-app's secure element."
    )
    audit_anchor_interval_seconds: float = Field(
        3600.0, ge=0, description="How often the background worker has the audit chain's head timestamped by the "
                                  "CA's RFC 3161 TSA, when it moved; 0: only `jpki-service audit anchor`."
    )
    audit_anchor_dir: Path | None = Field(
        None, description="Folder receiving a copy of every audit anchor (best on other storage than the "
                          "database); default data_dir/audit-anchors."
    )
    audit_tsa_root: Path | None = Field(
        None, description="PEM root certificate that audit anchors must chain to; default: the CA's root, pinned "
                          "in the anchor folder (tsa-root.pem) at the first anchor."
    )
    notification_sender: str = Field(
        "file", description="How owners are told of changes made by others: file (JSON lines) or log."
    )
    notification_file: Path | None = Field(
        None, description="The file sender's file; default data_dir/notifications.jsonl."
    )
    smtp_host: str | None = Field(
        None, description="SMTP server that sends owner notices by e-mail to owners who gave an address; unset: "
                          "every notice goes to the notification sender (docs/deployment.md, \"Owner notices\")."
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="The SMTP server's port.")
    smtp_from: str = Field("jpki-notices@localhost", description="The From address of the notice e-mails.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS before sending.")
    smtp_username: str | None = Field(None, description="SMTP AUTH user name (after STARTTLS); unset: no AUTH.")
    smtp_password: str | None = Field(None, description="SMTP AUTH password.")
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="Per-connection timeout towards the SMTP server.")
    operator_login_free_failures: int = Field(
        5, ge=1, description="Failed operator sign-ins per username, and per client address, answered without a "
                             "wait; each further one makes the next sign-in wait (jpki_service/operators/throttle.py)."
    )
    operator_login_first_delay_seconds: float = Field(
        2.0, gt=0, description="The wait after the first failure beyond the free ones; it doubles with each further "
                               "failure. While it runs, a sign-in answers 429 with Retry-After."
    )
    operator_login_max_delay_seconds: float = Field(
        900.0, gt=0, description="The longest wait between two sign-ins of a throttled username or address."
    )
    operator_login_failures_kept_seconds: int = Field(
        86400, ge=60, description="Failed sign-ins are forgotten this long after the last one (and at a success)."
    )
    two_person_acts: str = Field(
        "lift,revoke:keyCompromise",
        description="Supervisor acts that wait for a second supervisor's approval (the two-person rule), "
                    "comma-separated: lift, revoke (every reason) or revoke:<reason>; empty: none "
                    "(jpki_service/approvals/service.py)."
    )
    approval_ttl_seconds: int = Field(
        4 * 3600, ge=60, description="A pending approval expires this long after it was asked for: the act is "
                                     "then not done, and must be asked for again."
    )
    operator_session_idle_seconds: int = Field(1800, description="An operator session ends after this long unused.")
    operator_session_max_seconds: int = Field(12 * 3600, description="An operator session ends this long after login.")
    lang: str = Field(
        "ja", pattern="^(ja|en)$",
        description="The language of the console when the browser asks for neither Japanese nor English "
                    "(Accept-Language), and of the owner notices: ja (the default) or en."
    )
    console_secure_cookies: bool = Field(
        False, description="Mark the console's cookies Secure (set it whenever the console is served over HTTPS)."
    )
    challenges_per_client_per_minute: int = Field(
        120, description="Owner challenges (POST /api/v1/challenges) one client address may ask for per minute; "
                         "0: no limit. Generous: phones behind a carrier's NAT share addresses."
    )
    failed_proofs_per_client_per_minute: int = Field(
        30, description="Refused owner proofs (403) from one client address per minute; over it a refused proof "
                        "answers 429. A valid proof is never counted nor refused; 0: no limit."
    )
    failed_proofs_per_registration_per_hour: int = Field(
        20, description="Refused owner proofs against one registration per hour, from anywhere; over it a refused "
                        "proof answers 429, while the owner's valid proof is still admitted; 0: no limit."
    )
    rp_challenges_per_client_per_minute: int = Field(
        120, description="Login challenges of the demo relying party (POST /rp/v1/login/challenge) one client "
                         "address may ask for per minute; 0: no limit."
    )
    rp_failed_logins_per_client_per_minute: int = Field(
        30, description="Refused logins at the demo relying party from one client address per minute; over it a "
                        "refused login answers 429; 0: no limit."
    )
    login_attempts_per_client_per_minute: int = Field(
        20, description="Operator logins one client address may try per minute; 0: no limit."
    )
    trusted_proxies: str = Field(
        "", description="Comma-separated addresses (or CIDR ranges) of the reverse proxies whose X-Forwarded-For "
        "and X-Forwarded-Proto are believed (uvicorn's forwarded-allow-ips). Empty: none, so the per-client limits "
        "and the audit record the address that really connected."
    )
    max_body_bytes: int = Field(64 * 1024, description="Larger request bodies get 413.")
    request_threads: int = Field(
        10, ge=1, le=200, description="Threads answering requests in each server process (docs/benchmarks-history.md: "
                                      "40 made requests queue on the audit chain's lock; 10 did not)."
    )
    carrier_token_seconds: int = Field(
        600, ge=30, le=86400, description="A carrier's access token (POST /api/v1/carrier/token) is good this long "
                                          "(docs/carriers.md)."
    )
    carrier_reports_per_minute: int = Field(
        60, description="Reports one carrier may send per minute (POST /api/v1/carrier/reports, repeats included); "
                        "over it 429; 0: no limit."
    )
    carrier_token_requests_per_client_per_minute: int = Field(
        20, description="Carrier token requests one client address may make per minute (each costs an argon2 "
                        "check); 0: no limit."
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'service.sqlite3').resolve()}"
