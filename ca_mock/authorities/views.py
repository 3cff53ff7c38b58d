"""Public: the CA certificates, at the caIssuers URLs written into every certificate."""
from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response

from ca_mock.authorities.service import load_hierarchy
from ca_mock.problems import UnknownAuthority
from jpki_common.http import problem_responses

router = APIRouter(tags=["public"])


@router.get("/ca/{filename}", summary="A CA certificate: NAME.cer (DER) or NAME.pem",
            responses=problem_responses(UnknownAuthority))
def ca_certificate(filename: str, request: Request) -> Response:
    name, dot, extension = filename.rpartition(".")
    if not dot or extension not in ("cer", "pem"):
        raise UnknownAuthority(f"{filename!r}: ask for NAME.cer (DER) or NAME.pem")
    authority = load_hierarchy(request.app.state.store).get(name)
    if extension == "cer":
        return Response(authority.der, media_type="application/pkix-cert",
                        headers={"Cache-Control": "public, max-age=86400"})
    pem = authority.certificate.public_bytes(serialization.Encoding.PEM)
    return Response(pem, media_type="application/x-pem-file", headers={"Cache-Control": "public, max-age=86400"})
