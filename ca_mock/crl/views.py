"""Public: full and delta CRLs at the URLs written into every certificate."""
from __future__ import annotations

import email.utils
import re

from fastapi import APIRouter, Request, Response

from ca_mock.crl.service import current_crl
from ca_mock.problems import UnknownAuthority
from jpki_common.http import problem_responses

_PARTITION = re.compile(r"(?P<name>[a-z]+)-p(?P<partition>0|[1-9][0-9]{0,8})")

router = APIRouter(tags=["public"])


@router.get("/crl/{filename}",
            summary="NAME.crl (full) or NAME-delta.crl, or a partition's NAME-pN.crl / NAME-pN-delta.crl; DER",
            responses=problem_responses(UnknownAuthority))
def crl(filename: str, request: Request) -> Response:
    stem, dot, extension = filename.rpartition(".")
    if not dot or extension != "crl":
        raise UnknownAuthority(f"{filename!r}: ask for NAME.crl, NAME-delta.crl, NAME-pN.crl or NAME-pN-delta.crl")
    name, kind = (stem[: -len("-delta")], "delta") if stem.endswith("-delta") else (stem, "full")
    settings = request.app.state.settings
    if match := _PARTITION.fullmatch(name):
        published = current_crl(request.app.state.store, settings, match["name"], kind,
                                partition=int(match["partition"]))
    else:
        published = current_crl(request.app.state.store, settings, name, kind)
    etag = f'"{name}-{kind}-{published.number}"'
    headers = {
        "ETag": etag,
        "Last-Modified": email.utils.format_datetime(published.this_update, usegmt=True),
        "Expires": email.utils.format_datetime(published.next_update, usegmt=True),
        # Short: a new CRL follows every status change within the publish interval.
        "Cache-Control": f"public, max-age={int(settings.crl_publish_interval_seconds)}, must-revalidate",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(published.der, media_type="application/pkix-crl", headers=headers)
