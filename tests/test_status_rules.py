"""The status rules of the CA as one pure function, checked over every (status, action, reason).

``next_status`` decides; the service only writes what it answers. So every rule of a real CA
(RFC 5280) is pinned here: revoked is final except a move to keyCompromise, only a held
certificate is released, certificateHold and removeFromCRL are not revocation reasons.
"""
from __future__ import annotations

import itertools

import pytest

from ca_mock.certificates.status_rules import CertStatus, StatusAction, StatusChange, next_status
from ca_mock.problems import InvalidRequest, StatusChangeRefused
from jpki_common.profiles import HOLD_REASON, KEY_COMPROMISE, REMOVE_FROM_CRL, REVOCATION_REASONS

# RFC 5280 section 5.3.1, reason codes 0-10 without 7 (unused), 6 (certificateHold) and 8 (removeFromCRL).
RFC5280_REVOCATION_REASONS = [
    "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
    "cessationOfOperation", "privilegeWithdrawn", "aACompromise",
]
NOT_REVOCATION_REASONS = [
    HOLD_REASON, REMOVE_FROM_CRL, None, "", "keycompromise", "KEYCOMPROMISE", "key_compromise",
    "compromised", "certificateHold ", " superseded", "removefromcrl", "7", "1",
]
WEAKER_THAN_KEY_COMPROMISE = [r for r in RFC5280_REVOCATION_REASONS if r != KEY_COMPROMISE]


def test_the_reason_list_is_exactly_rfc5280():
    assert list(REVOCATION_REASONS) == RFC5280_REVOCATION_REASONS
    assert HOLD_REASON == "certificateHold" and REMOVE_FROM_CRL == "removeFromCRL"
    assert HOLD_REASON not in REVOCATION_REASONS and REMOVE_FROM_CRL not in REVOCATION_REASONS


# -- good -------------------------------------------------------------------------------------
@pytest.mark.parametrize("reason", RFC5280_REVOCATION_REASONS)
def test_good_is_revoked_with_every_rfc5280_reason(reason):
    change = next_status(CertStatus.GOOD, None, StatusAction.REVOKE, reason)
    assert change == StatusChange(CertStatus.REVOKED, reason)


def test_good_is_held_with_certificate_hold():
    change = next_status(CertStatus.GOOD, None, StatusAction.HOLD)
    assert change == StatusChange(CertStatus.HELD, "certificateHold")


def test_hold_ignores_a_reason_given_with_it():
    # Hold has one reason only; whatever the caller passes, the answer is certificateHold.
    assert next_status(CertStatus.GOOD, None, StatusAction.HOLD, "keyCompromise") == StatusChange(
        CertStatus.HELD, HOLD_REASON)


def test_release_of_good_is_refused():
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.GOOD, None, StatusAction.RELEASE)
    problem = caught.value
    assert problem.status == 409
    assert "only a held certificate can be released" in problem.detail and "good" in problem.detail
    assert problem.extra == {"current_status": "good", "current_reason": None}


# -- held -------------------------------------------------------------------------------------
def test_held_is_released_to_good_without_reason():
    change = next_status(CertStatus.HELD, HOLD_REASON, StatusAction.RELEASE)
    assert change == StatusChange(CertStatus.GOOD, None)


@pytest.mark.parametrize("reason", RFC5280_REVOCATION_REASONS)
def test_held_is_revoked_for_good_with_every_reason(reason):
    assert next_status(CertStatus.HELD, HOLD_REASON, StatusAction.REVOKE, reason) == StatusChange(
        CertStatus.REVOKED, reason)


def test_hold_of_held_is_refused():
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.HELD, HOLD_REASON, StatusAction.HOLD)
    assert "only a good certificate can be put on hold" in caught.value.detail
    assert "held" in caught.value.detail
    assert caught.value.extra == {"current_status": "held", "current_reason": HOLD_REASON}


# -- revoked is final -------------------------------------------------------------------------
@pytest.mark.parametrize("current_reason", RFC5280_REVOCATION_REASONS)
def test_hold_of_revoked_is_refused(current_reason):
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.REVOKED, current_reason, StatusAction.HOLD)
    assert "revoked" in caught.value.detail
    assert caught.value.extra == {"current_status": "revoked", "current_reason": current_reason}


@pytest.mark.parametrize("current_reason", RFC5280_REVOCATION_REASONS)
def test_release_of_revoked_is_refused(current_reason):
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.REVOKED, current_reason, StatusAction.RELEASE)
    assert "only a held certificate can be released" in caught.value.detail
    assert "revoked" in caught.value.detail
    assert caught.value.extra == {"current_status": "revoked", "current_reason": current_reason}


@pytest.mark.parametrize("current_reason", RFC5280_REVOCATION_REASONS)
def test_revoke_of_revoked_with_the_same_reason_is_refused(current_reason):
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.REVOKED, current_reason, StatusAction.REVOKE, current_reason)
    problem = caught.value
    assert problem.status == 409
    assert "already revoked" in problem.detail and current_reason in problem.detail
    assert "keyCompromise" in problem.detail  # it says which change would still be allowed
    assert problem.extra == {"current_status": "revoked", "current_reason": current_reason}


@pytest.mark.parametrize(
    "current_reason,requested",
    [(c, r) for c, r in itertools.product(RFC5280_REVOCATION_REASONS, WEAKER_THAN_KEY_COMPROMISE) if c != r],
)
def test_revoke_of_revoked_with_any_other_non_key_compromise_reason_is_refused(current_reason, requested):
    # Every reason but keyCompromise is "weaker" for this rule: only the move to keyCompromise is allowed.
    with pytest.raises(StatusChangeRefused) as caught:
        next_status(CertStatus.REVOKED, current_reason, StatusAction.REVOKE, requested)
    assert "already revoked" in caught.value.detail


@pytest.mark.parametrize("current_reason", WEAKER_THAN_KEY_COMPROMISE)
def test_revoked_reason_moves_to_key_compromise(current_reason):
    change = next_status(CertStatus.REVOKED, current_reason, StatusAction.REVOKE, KEY_COMPROMISE)
    assert change == StatusChange(CertStatus.REVOKED, KEY_COMPROMISE)


def test_revoked_with_key_compromise_cannot_be_revoked_again():
    for requested in RFC5280_REVOCATION_REASONS:
        with pytest.raises(StatusChangeRefused):
            next_status(CertStatus.REVOKED, KEY_COMPROMISE, StatusAction.REVOKE, requested)


# -- reasons that are not revocation reasons --------------------------------------------------
@pytest.mark.parametrize("current", list(CertStatus))
@pytest.mark.parametrize("reason", NOT_REVOCATION_REASONS)
def test_non_revocation_reasons_are_invalid_requests_from_any_status(current, reason):
    current_reason = {CertStatus.GOOD: None, CertStatus.HELD: HOLD_REASON,
                      CertStatus.REVOKED: "superseded"}[current]
    with pytest.raises(InvalidRequest) as caught:
        next_status(current, current_reason, StatusAction.REVOKE, reason)
    problem = caught.value
    assert not isinstance(problem, StatusChangeRefused)
    assert problem.status == 422
    assert problem.extra == {"field": "reason"}
    assert repr(reason) in problem.detail
    assert "is not one of" in problem.detail and "keyCompromise" in problem.detail


@pytest.mark.parametrize("reason", [HOLD_REASON, REMOVE_FROM_CRL])
def test_hold_and_remove_from_crl_point_to_hold_and_release(reason):
    with pytest.raises(InvalidRequest) as caught:
        next_status(CertStatus.GOOD, None, StatusAction.REVOKE, reason)
    assert "use hold / release" in caught.value.detail


def test_unknown_reason_does_not_mention_hold_release():
    with pytest.raises(InvalidRequest) as caught:
        next_status(CertStatus.GOOD, None, StatusAction.REVOKE, "stolen")
    assert "hold / release" not in caught.value.detail


# -- the whole table at once ------------------------------------------------------------------
def _expected(current: CertStatus, current_reason: str | None, action: StatusAction, reason: str | None):
    """An independent restatement of the rules, to compare every combination against."""
    if action is StatusAction.REVOKE:
        if reason not in RFC5280_REVOCATION_REASONS:
            return InvalidRequest
        if current is CertStatus.REVOKED:
            if reason == KEY_COMPROMISE and current_reason != KEY_COMPROMISE:
                return StatusChange(CertStatus.REVOKED, KEY_COMPROMISE)
            return StatusChangeRefused
        return StatusChange(CertStatus.REVOKED, reason)
    if action is StatusAction.HOLD:
        if current is CertStatus.GOOD:
            return StatusChange(CertStatus.HELD, HOLD_REASON)
        return StatusChangeRefused
    return StatusChange(CertStatus.GOOD, None) if current is CertStatus.HELD else StatusChangeRefused


STATES = [(CertStatus.GOOD, None), (CertStatus.HELD, HOLD_REASON)] + [
    (CertStatus.REVOKED, r) for r in RFC5280_REVOCATION_REASONS
]
REASONS = [None, *RFC5280_REVOCATION_REASONS, HOLD_REASON, REMOVE_FROM_CRL, "bogus"]


def test_every_combination_matches_the_rules():
    checked = 0
    for (current, current_reason), action, reason in itertools.product(STATES, StatusAction, REASONS):
        expected = _expected(current, current_reason, action, reason)
        if isinstance(expected, StatusChange):
            assert next_status(current, current_reason, action, reason) == expected, (current, action, reason)
        else:
            with pytest.raises(expected):
                next_status(current, current_reason, action, reason)
        checked += 1
    assert checked == len(STATES) * len(StatusAction) * len(REASONS)


def test_next_status_is_pure():
    # Same question, same answer, and the inputs are not touched (enums and strings are immutable;
    # the answer is a frozen dataclass).
    first = next_status(CertStatus.HELD, HOLD_REASON, StatusAction.REVOKE, "superseded")
    second = next_status(CertStatus.HELD, HOLD_REASON, StatusAction.REVOKE, "superseded")
    assert first == second and first is not second
    with pytest.raises(AttributeError):
        first.status = CertStatus.GOOD  # type: ignore[misc]
