"""``jpki-app email set ADDRESS | remove``: where the owner's notices go (docs/phone-app.md, "Notices by e-mail").

The service tells the owner by e-mail of every change to this phone's certificates made by someone else
(the call centre, a supervisor, the carrier, another phone registered with the card, ...) and, when asked
with ``--login-notices``, of each log-in with the phone's user-authentication certificate. The address is
set, changed or removed with the card that registered this phone: the card signs the address with the
challenge (``jpki_common.owner_proof.email_digest``), so nobody without the card and its password can
redirect the notices. Registered in app_client/cli.py; the shared plumbing (refusals on one line, the card
password) is cli.py's, imported when a command runs (``jpki-app --help`` must stay light).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from app_client.messages import _

if TYPE_CHECKING:
    from app_client.card_reader import CardReader
    from app_client.flows import Phone

email_app: typer.Typer = typer.Typer(
    help="The e-mail address the service sends your notices to (set or removed with the card).", no_args_is_help=True)
# After the sub-app exists: app_client.cli registers it at its end, whichever module is imported first.
from app_client.cli import command  # noqa: E402


def set_email(phone: Phone, card: CardReader, card_password: str, address: str | None,
              login_notices: bool) -> dict[str, Any]:
    """Set (or, with None, remove) the notice address of this phone's registration, proven by its card."""
    from app_client import flows
    from app_client.owner_secrets import CARD_PASSWORD
    from app_client.service_client import Proof
    from jpki_common.owner_proof import Action, email_digest

    registration_id = flows._require_registration(phone)
    CARD_PASSWORD.check(card_password)
    challenge = phone.service.challenge(Action.EMAIL, registration_id)
    proof = Proof(challenge.challenge_id,
                  card.sign_proof(card_password, challenge.message(email_digest(address, login_notices))),
                  card_certificate_pem=card.signature_certificate_pem)
    return phone.service._call("POST", f"/api/v1/registrations/{registration_id}/email",
                               {"proof": proof.to_json(), "email": address, "login_notices": login_notices})


def _change(ctx: typer.Context, card: Path, address: str | None, login_notices: bool) -> dict[str, Any]:
    from app_client import cli
    from app_client.card_reader import CardReader
    from app_client.owner_secrets import CARD_PASSWORD

    reader = CardReader(card)
    return set_email(cli._options(ctx).phone(), reader, cli.secret(CARD_PASSWORD), address, login_notices)


@command("set", on=email_app)
def set_command(
    ctx: typer.Context,
    address: str = typer.Argument(..., help="Your e-mail address for the notices."),
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
    login_notices: bool = typer.Option(False, "--login-notices/--no-login-notices",
                                       help="Also be told of each log-in with this phone's user-authentication "
                                            "certificate."),
) -> None:
    """Send the notices to ADDRESS (replacing any address set before). Secret: JPKI_CARD_PASSWORD."""
    answer = _change(ctx, card, address, login_notices)
    typer.echo(_("notices for registration {reference} now go to {address}").format(
        reference=answer.get("case_reference"), address=answer.get("email")))
    typer.echo(_("log-in notices: on") if answer.get("login_notices") else _("log-in notices: off"))


@command("remove", on=email_app)
def remove_command(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
) -> None:
    """Send no more notices by e-mail (log-in notices end too). Secret: JPKI_CARD_PASSWORD."""
    answer = _change(ctx, card, None, False)
    typer.echo(_("notices for registration {reference} are no longer sent by e-mail").format(
        reference=answer.get("case_reference")))
