"""Who in the call centre may do what: one table, checked in one place (:func:`require`)."""
from __future__ import annotations

import enum

from jpki_common.i18n import N_, Sentence
from jpki_service.common.problems import RoleForbidden


class Role(str, enum.Enum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"


class Permission(str, enum.Enum):
    # What a refusal says may not be done (translated where a page shows it).
    FIND = N_("find registrations")
    SUSPEND = N_("suspend")
    HISTORY = N_("see a registration's history")
    LIFT = N_("lift a suspension")
    REVOKE = N_("revoke")
    APPROVE = N_("approve or reject another supervisor's lift or revocation")
    READ_AUDIT = N_("read the audit trail")


_CALL_CENTRE = frozenset({Permission.FIND, Permission.SUSPEND, Permission.HISTORY})

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: _CALL_CENTRE,
    # Lifting and revoking are irreversible for the certificates: a second, senior person.
    Role.SUPERVISOR: _CALL_CENTRE | {Permission.LIFT, Permission.REVOKE, Permission.APPROVE},
    # The auditor watches the call centre and must not be able to act in it.
    Role.AUDITOR: frozenset({Permission.READ_AUDIT}),
}


def may(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def require(role: Role, permission: Permission) -> None:
    if not may(role, permission):
        allowed = ", ".join(r.value for r in Role if may(r, permission))
        article = "an" if role.value[0] in "aeiou" else "a"
        raise RoleForbidden(Sentence("{article} {role} may not {permission} (only: {allowed})", article=article,
                                     role=role.value, permission=permission.value, allowed=allowed), role=role.value)
