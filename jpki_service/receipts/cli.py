"""``jpki-service verify-receipt FILE``: check a dealer's erasure receipt offline (docs/dealers.md).

Needs no database, no network and no key: only the receipt and the receipt authority's certificate
(``--ca``, as published at ``GET /api/v1/receipts/certificate``; default: the one in the data folder).
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from jpki_service.operators.cli import DataOption


def verify_receipt(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="The receipt (CMS SignedData, DER)."),
    ca: Path | None = typer.Option(None, "--ca", exists=True, dir_okay=False,
                                   help="The receipt authority's certificate(s), PEM (default: "
                                        "<data>/receipt-certificate.pem)."),
    data: Path | None = DataOption,
) -> None:
    """Check a dealer's erasure receipt (the same verdict as openssl cms -verify); print its document (JSON).
    Exit 1, naming the reason, for a forged, altered or untrusted receipt."""
    from cryptography import x509

    from jpki_service.common.settings import ServiceSettings
    from jpki_service.receipts.verify import ReceiptRefused
    from jpki_service.receipts.verify import verify_receipt as check

    if ca is None:
        ca = (ServiceSettings(data_dir=data) if data else ServiceSettings()).data_dir / "receipt-certificate.pem"
        if not ca.exists():
            _fail(f"no receipt authority certificate {ca}: give it with --ca")
    try:
        trusted = x509.load_pem_x509_certificates(ca.read_bytes())
    except ValueError:
        _fail(f"{ca} holds no PEM certificate")
    try:
        document = check(file.read_bytes(), trusted)
    except ReceiptRefused as refused:
        _fail(f"{file}: receipt refused: {refused}")
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True))
    typer.echo(f"{file}: receipt verified", err=True)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)
