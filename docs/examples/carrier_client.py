"""A carrier's system reporting a lost phone to the JPKI lifecycle service (docs/carriers.md).

    CARRIER_CLIENT_ID=carrier-0123456789abcdef CARRIER_CLIENT_SECRET=... \\
      python docs/examples/carrier_client.py --service http://127.0.0.1:8000 \\
        --case-number DC-2026-000123 --kind lost \\
        --name "山田 太郎" --birth 1990-01-02 --address "東京都千代田区千代田1-1"

It gets an access token with the client credentials (OAuth2, RFC 6749 section 4.4: HTTP Basic,
grant_type=client_credentials), then sends the report with it, and prints the service's answer (JSON). On a
refusal it prints the problem's status, title and detail on stderr and exits 1. Sending the same case number
again is safe: the service answers the first outcome and changes nothing, so a timeout may be retried as is.
Needs only httpx.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import httpx


class Refused(Exception):
    """The service said no: an RFC 9457 problem document."""

    def __init__(self, answer: httpx.Response) -> None:
        try:
            problem = answer.json()
        except ValueError:
            problem = {"title": answer.reason_phrase, "detail": answer.text[:200]}
        super().__init__(f"{answer.status_code} {problem.get('title')}: {problem.get('detail')}")


def access_token(client: httpx.Client, client_id: str, client_secret: str) -> str:
    answer = client.post("/api/v1/carrier/token", data={"grant_type": "client_credentials"},
                         auth=httpx.BasicAuth(client_id, client_secret))
    if answer.status_code != 200:
        raise Refused(answer)
    return str(answer.json()["access_token"])


def report(client: httpx.Client, token: str, case_number: str, kind: str, name: str, birth: str,
           address: str) -> dict:
    answer = client.post("/api/v1/carrier/reports", headers={"Authorization": f"Bearer {token}"},
                         json={"case_number": case_number, "kind": kind,
                               "subscriber": {"name": name, "birth": birth, "address": address}})
    if answer.status_code != 200:
        raise Refused(answer)
    return dict(answer.json())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report a lost or stolen phone, or a remote wipe, to JPKI.")
    parser.add_argument("--service", required=True, help="The lifecycle service's URL")
    parser.add_argument("--case-number", required=True, help="Your own case number (the idempotency key)")
    parser.add_argument("--kind", required=True, choices=["lost", "stolen", "remote-wipe"])
    parser.add_argument("--name", required=True, help="The subscriber's name, as verified at contract")
    parser.add_argument("--birth", required=True, help="The date of birth: YYYY-MM-DD or the card's era date")
    parser.add_argument("--address", required=True, help="The address, as verified at contract")
    arguments = parser.parse_args(argv)
    client_id, client_secret = os.environ.get("CARRIER_CLIENT_ID"), os.environ.get("CARRIER_CLIENT_SECRET")
    if not client_id or not client_secret:
        print("set CARRIER_CLIENT_ID and CARRIER_CLIENT_SECRET (from `jpki-service carrier add`)", file=sys.stderr)
        return 2
    with httpx.Client(base_url=arguments.service, timeout=30) as client:
        try:
            token = access_token(client, client_id, client_secret)
            answer = report(client, token, arguments.case_number, arguments.kind, arguments.name, arguments.birth,
                            arguments.address)
        except Refused as refused:
            print(f"refused: {refused}", file=sys.stderr)
            return 1
    print(json.dumps(answer, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
