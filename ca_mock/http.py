"""The CA's own HTTP piece: the bearer check. Problem responses and the body-size limit are the
shared ones of :mod:`jpki_common.http`.
"""
from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ca_mock.credentials import Credential, Credentials
from ca_mock.problems import CAProblem


class Unauthorised(CAProblem):
    status, title, slug = 401, "Unauthorised", "unauthorised"
    example = "missing bearer credential: send 'Authorization: Bearer <token>'"


# Declared in the OpenAPI document (Swagger UI's Authorize button); checked by require_bearer, which answers
# its own 401 problem, hence auto_error=False.
ca_credential = HTTPBearer(
    auto_error=False, scheme_name="caCredential",
    description="The service credential (JPKI_CA_API_TOKEN or <data>/api-token: reads, phone certificates) or the "
                "administrator credential (JPKI_CA_ADMIN_TOKEN or <data>/admin-token: card certificates too)")


def require_bearer(request: Request,
                   presented: HTTPAuthorizationCredentials | None = Security(ca_credential)) -> Credential:
    """FastAPI dependency: which of the CA's credentials (the service's or the administrator's) the
    bearer token is; what each may do is :func:`ca_mock.credentials.check_scope`."""
    credentials: Credentials = request.app.state.credentials
    if presented is None:
        raise Unauthorised("missing bearer credential: send 'Authorization: Bearer <token>'")
    credential = credentials.identify(presented.credentials)
    if credential is None:
        raise Unauthorised("bearer credential not accepted")
    return credential
