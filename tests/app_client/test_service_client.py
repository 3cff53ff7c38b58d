"""How the service's refusals reach the owner: ``problem_from`` on real httpx responses (the
end-to-end tests see the real service's problem documents; these cover the shapes around them)."""
from __future__ import annotations

import httpx

from app_client.service_client import Challenge, Proof, problem_from
from jpki_common.owner_proof import proof_message


def test_a_problem_document_keeps_status_title_detail_type_and_field():
    response = httpx.Response(409, headers={"content-type": "application/problem+json"}, json={
        "type": "https://jpki.invalid/problems/challenge-used", "title": "Challenge already used", "status": 409,
        "detail": "challenge 9d1c was spent at 21:02", "field": "proof.challenge_id"})

    problem = problem_from(response)

    # Said in plain words, what to do included, with the service's own detail after it (no HTTP jargon).
    assert str(problem) == ("the request's one-time code was used already: try again "
                            "(the service said: challenge 9d1c was spent at 21:02)")
    assert (problem.status, problem.slug, problem.field) == (409, "challenge-used", "proof.challenge_id")


def test_an_answer_that_is_no_problem_document_still_reads_clearly():
    bare = problem_from(httpx.Response(502, text="<html><body>Bad   gateway\n</body></html>"))
    assert str(bare) == "the service refused: Bad Gateway (the service said: <html><body>Bad gateway </body></html>)"
    listed = problem_from(httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "field required"}]}))
    assert listed.status == 422 and "field required" in listed.detail


def test_a_challenge_signs_the_protocols_message_and_a_proof_omits_what_it_lacks():
    challenge = Challenge("c1", "n1", "revoke", "r" * 32, "2026-01-01T00:00:00+00:00")
    assert challenge.message() == proof_message("revoke", "r" * 32, "c1", "n1")
    assert Proof("c1", "sig").to_json() == {"challenge_id": "c1", "signature": "sig"}
