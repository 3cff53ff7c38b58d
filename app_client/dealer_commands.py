"""``jpki-app dealer-check``: a used-phone dealer's check that no live JPKI certificate remains on the phone,
and the service's signed receipt saying so (docs/dealers.md). Needs no secret: the device key ends what the
secure element still holds (the stale-certificate flow, as a reinstalled app does) and the SE's attestation
key shows the service what it holds. Registered in app_client/cli.py, whose plumbing (refusals on one line,
``--home``, ``--service``, ``--lang``) it shares.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from app_client.cli import _options, command
from app_client.messages import _


@command("dealer-check")
def dealer_check(
    ctx: typer.Context,
    out: Path = typer.Option(Path("erasure-receipt.p7s"), "--out",
                             help="Where to write the receipt (CMS SignedData, DER)."),
    ca_out: Path | None = typer.Option(None, "--ca-out",
                                       help="Also write the receipt authority's certificate (PEM) here, to verify "
                                            "the receipt with: openssl cms -verify -inform DER -in RECEIPT "
                                            "-CAfile THIS."),
    as_json: bool = typer.Option(False, "--json", help="Print the receipt's document as JSON."),
) -> None:
    """Dealer's check: end the JPKI certificates left in the secure element and get the service's signed
    erasure receipt (no secret needed)."""
    from app_client import flows

    report = flows.dealer_check(_options(ctx).phone())
    out.write_bytes(report.receipt)
    if ca_out is not None:
        ca_out.write_text(report.certificate_pem)
    if as_json:
        typer.echo(json.dumps(report.document, ensure_ascii=False, indent=2, sort_keys=True))
        return
    if report.revoked_now is not None:
        typer.echo(_("the secure element held registration {case}: revoked at the CA and deleted from the secure "
                     "element").format(case=report.revoked_now.case_reference or report.revoked_now.registration_id))
    typer.echo(_("no live JPKI certificate remains on this phone (device {device}, checked {at})").format(
        device=report.document["device"], at=report.document["checked_at"]))
    typer.echo(_("erasure receipt signed by the service written to {path}").format(path=out))
