"""Where each published object lives, relative to the CA's public URL. One place, so the URLs
written into certificates and the routes that serve them cannot drift apart."""
from __future__ import annotations


def ca_certificate_url(base: str, authority: str) -> str:
    return f"{base}/ca/{authority}.cer"


def crl_url(base: str, authority: str) -> str:
    return f"{base}/crl/{authority}.crl"


def delta_crl_url(base: str, authority: str) -> str:
    return f"{base}/crl/{authority}-delta.crl"


def ocsp_url(base: str) -> str:
    return f"{base}/ocsp"


def tsa_url(base: str) -> str:
    """The RFC 3161 time-stamping authority (POST application/timestamp-query)."""
    return f"{base}/tsa"


def partition_crl_url(base: str, authority: str, partition: int) -> str:
    """The full CRL of one partition of ``authority``'s certificates (ca_mock/crl/partitions.py)."""
    return f"{base}/crl/{authority}-p{partition}.crl"


def partition_delta_crl_url(base: str, authority: str, partition: int) -> str:
    return f"{base}/crl/{authority}-p{partition}-delta.crl"
