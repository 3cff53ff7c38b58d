"""Public: the RFC 3161 time-stamping authority over HTTP (RFC 3161 section 3.4)."""
from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from ca_mock.authorities.service import load_hierarchy
from ca_mock.problems import CAProblem
from ca_mock.tsa.service import (
    REQUEST_MEDIA_TYPE,
    RESPONSE_MEDIA_TYPE,
    TimestampingUnavailable,
    respond,
    tsa_authority,
)
from jpki_common.http import problem_responses
from jpki_common.problems import BodyTooLarge

router = APIRouter(tags=["public"])


class UnsupportedMediaType(CAProblem):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"
    example = "send the DER TimeStampReq as application/timestamp-query, not application/json"


@router.post(
    "/tsa",
    summary="RFC 3161 time-stamp request: DER TimeStampReq in, DER TimeStampResp out",
    description="A request the TSA will not sign (undecodable, unknown hash, wrong digest length, another "
                "policy, extensions) is answered 200 with a TimeStampResp of status `rejection` and the "
                "RFC 3161 failure bit. A CA store made before the TSA existed has none: 404.",
    openapi_extra={
        "requestBody": {"required": True,
                        "content": {REQUEST_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
    },
    responses={
        200: {"description": "A TimeStampResp, granted or rejected",
              "content": {RESPONSE_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}},
        **problem_responses(TimestampingUnavailable, UnsupportedMediaType, BodyTooLarge),
    },
)
async def timestamp(request: Request) -> Response:
    hierarchy = load_hierarchy(request.app.state.store)
    tsa_authority(hierarchy)  # 404 before anything else when this store has no TSA
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != REQUEST_MEDIA_TYPE:
        raise UnsupportedMediaType(f"send the DER TimeStampReq as {REQUEST_MEDIA_TYPE}, not {media_type or 'nothing'}")
    body = await request.body()
    answer = await anyio.to_thread.run_sync(respond, hierarchy, body)
    return Response(answer.der, media_type=RESPONSE_MEDIA_TYPE, headers={"Cache-Control": "no-store"})
