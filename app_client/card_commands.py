"""``jpki-app card list | revoke CASE | suspend CASE``: the My Number card as the owner's master key
(docs/phone-app.md, "The card alone").

From any phone or PC with a card reader: the home (``--home``) needs no registration of its own, only
the card file in the simulated reader (``--card``). The card password is read as every command reads
it (JPKI_CARD_PASSWORD, else prompted without echo). Registered in app_client/cli.py; the shared
plumbing (refusals on one line, secrets, the service's words, Japan time) is cli.py's, imported when a
command runs (cli.py imports this module, and ``jpki-app --help`` must stay light).
"""
from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from app_client.messages import N_, _

if TYPE_CHECKING:
    from app_client.service_client import CardRegistration, ServiceClient

card_app: typer.Typer = typer.Typer(
    help="The My Number card alone, from any phone or PC with a card reader (no phone needed): list your "
         "registrations, revoke or suspend any of them.", no_args_is_help=True)
# After the sub-app exists: app_client.cli registers it at its end, whichever module is imported first.
from app_client.cli import command  # noqa: E402


class Reason(str, enum.Enum):  # the call centre's reasons for a suspension (jpki_service/callcentre/choices.py)
    LOST = "lost"
    STOLEN = "stolen"
    SOLD = "sold"
    OTHER = "other"


CardOption = typer.Option(..., "--card", help="The My Number card file in the reader (jpki-ca card issue).")


# The service's refusals as the card's owner reads them (app_client/service_client.py has the phone's).
CARD_REFUSALS = {
    "registration-unknown": N_("no registration of the person this card names has this case reference: check it "
                               "with `jpki-app card list`"),
    "proof-rejected": N_("the service did not accept the card's proof"),
}


def _card_refusal(exc: Exception) -> str:
    from app_client.service_client import ServiceProblem

    plain = CARD_REFUSALS.get(exc.slug) if isinstance(exc, ServiceProblem) else None
    if plain is None:
        return str(exc)
    assert isinstance(exc, ServiceProblem)
    return _("{message} (the service said: {detail})").format(message=_(plain), detail=exc.detail)


def _service(ctx: typer.Context) -> ServiceClient:
    from app_client import cli

    return cli._options(ctx).phone().service


def _card_password() -> str:
    from app_client import cli
    from app_client.owner_secrets import CARD_PASSWORD

    return cli.secret(CARD_PASSWORD)


@command("list", on=card_app, refusal=_card_refusal)
def list_registrations(
    ctx: typer.Context,
    card: Path = CardOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the registrations of the person the card names: phone model, when registered (Japan time), state,
    whether the CA has it. Secret: JPKI_CARD_PASSWORD."""
    from app_client import card_owner, cli
    from app_client.card_reader import CardReader

    reader = CardReader(card)
    registrations = card_owner.list_registrations(_service(ctx), reader, _card_password())
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in registrations], indent=2, ensure_ascii=False))
        return
    if not registrations:
        typer.echo(_("the service holds no registration of the person this card names"))
        return
    columns = [(N_("case reference"), 16), (N_("phone model"), 26), (N_("registered on"), 26), (N_("state"), 11),
               (N_("ca sync"), 0)]
    typer.echo(" ".join(cli._pad(_(label), width) for label, width in columns).rstrip())
    for registration in registrations:
        values = (registration.case_reference, registration.device_model, cli._when(registration.registered_at),
                  cli.word(registration.state), cli.word(registration.ca_sync))
        cells = zip(values, (width for _label, width in columns), strict=True)
        typer.echo(" ".join(cli._pad(value, width) for value, width in cells).rstrip())
    typer.echo(_("revoke or suspend one with `jpki-app card revoke CASE` or `jpki-app card suspend CASE`"))


@command("revoke", on=card_app, refusal=_card_refusal)
def revoke(
    ctx: typer.Context,
    case_reference: str = typer.Argument(..., help="The registration's case reference (`jpki-app card list`)."),
    card: Path = CardOption,
) -> None:
    """Revoke one of your phones with the card alone (e.g. an old phone sold or given away). Secret:
    JPKI_CARD_PASSWORD."""
    from app_client import card_owner
    from app_client.card_reader import CardReader

    reader = CardReader(card)
    registration = card_owner.act(_service(ctx), reader, _card_password(), "revoke", case_reference)
    _say(_("revoked with the card: {reference} ({model}) is {state}"), registration)
    _say_where_the_ca_stands(registration)


@command("suspend", on=card_app, refusal=_card_refusal)
def suspend(
    ctx: typer.Context,
    case_reference: str = typer.Argument(..., help="The registration's case reference (`jpki-app card list`)."),
    card: Path = CardOption,
    reason: Reason = typer.Option(Reason.LOST, "--reason", help="Why: lost (default), stolen, sold, other."),
) -> None:
    """Suspend one of your phones with the card alone (e.g. a lost phone). Lifting needs the card and that
    phone: `jpki-app lift-suspension --card FILE` on it. Secret: JPKI_CARD_PASSWORD."""
    from app_client import card_owner, cli
    from app_client.card_reader import CardReader

    reader = CardReader(card)
    registration = card_owner.act(_service(ctx), reader, _card_password(), "suspend", case_reference, reason.value)
    _say(_("suspended with the card: {reference} ({model}) is {state}"), registration)
    _say_where_the_ca_stands(registration)
    typer.echo(_("to lift the suspension, use the card and that phone: {command}").format(command=cli.LIFT_COMMAND))


def _say(message: str, registration: CardRegistration) -> None:
    from app_client import cli

    typer.echo(message.format(reference=registration.case_reference, model=registration.device_model,
                              state=cli.word(registration.state)))


def _say_where_the_ca_stands(registration: CardRegistration) -> None:
    """Only the CA's record makes it count for relying parties: say whether it has it yet."""
    if registration.ca_sync == "done":
        typer.echo(_("the CA has it (ca_sync done): relying parties see it at OCSP"))
    elif registration.ca_sync == "pending":
        typer.echo(_("the CA does not have it yet (ca_sync pending): the service keeps carrying it; check with "
                     "`jpki-app card list`"))
    else:
        typer.echo(_("the CA refused a change (ca_sync failed): the service's operators can re-queue it; check with "
                     "`jpki-app card list`"))
