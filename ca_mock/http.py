"""The CA's own HTTP piece: the bearer check. Problem responses and the body-size limit are the
shared ones of :mod:`jpki_common.http`.
"""
from __future__ import annotations

from fastapi import Request

from ca_mock.credentials import Credential, Credentials
from ca_mock.problems import CAProblem


class Unauthorised(CAProblem):
    status, title, slug = 401, "Unauthorised", "unauthorised"


def require_bearer(request: Request) -> Credential:
    """FastAPI dependency: which of the CA's credentials (the service's or the administrator's) the
    bearer token is; what each may do is :func:`ca_mock.credentials.check_scope`."""
    credentials: Credentials = request.app.state.credentials
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        raise Unauthorised("missing bearer credential: send 'Authorization: Bearer <token>'")
    credential = credentials.identify(presented.strip())
    if credential is None:
        raise Unauthorised("bearer credential not accepted")
    return credential
