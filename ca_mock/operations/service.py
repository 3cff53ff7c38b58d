"""Idempotency under caller-supplied operation ids.

A retried call with the same id and the same content gets the first answer again and changes
nothing; the same id with other content is a conflict, never a silent second operation.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy.orm import Session

from ca_mock.operations.models import Operation
from ca_mock.problems import OperationConflict
from jpki_common.store import utcnow


def fingerprint(action: str, content: dict[str, Any]) -> str:
    canonical = json.dumps({"action": action, **content}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def previous_result(session: Session, operation_id: str, action: str, print_: str) -> dict | None:
    done = session.get(Operation, operation_id)
    if done is None:
        return None
    if done.action != action or done.fingerprint != print_:
        raise OperationConflict(
            f"operation id {operation_id!r} was already used for a different {done.action} request",
            field="operation_id",
        )
    return done.result


def record_result(session: Session, operation_id: str, action: str, print_: str, result: dict) -> None:
    session.add(Operation(operation_id=operation_id, action=action, fingerprint=print_,
                          result=result, created_at=utcnow()))
