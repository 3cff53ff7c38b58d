"""``jpki-app``: the simulated phone's Mynaportal-style app (docs/phone-app.md).

Secrets are never arguments: they are prompted without echo (new ones twice), or read from
JPKI_CARD_PASSWORD, JPKI_SIGN_PASSWORD, JPKI_NEW_SIGN_PASSWORD and JPKI_AUTH_PIN for scripts.
Every refusal is one line on stderr and a non-zero exit, never a traceback (which could show a
secret among its locals).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from cryptography import x509

from app_client import flows
from app_client.app_data import EndedRegistration
from app_client.card_reader import CardReader
from app_client.errors import AppError
from app_client.pdf import http_timestamper, load_certificate
from app_client.service_client import Registration
from jpki_common.card_rules import SecretRuleViolation, check_pin, normalise_signature_password

LIFT_COMMAND = "jpki-app lift-suspension --card FILE"

app = typer.Typer(help="The JPKI smartphone app (simulated phone, secure element and card reader).",
                  no_args_is_help=True, pretty_exceptions_enable=False)

F = TypeVar("F", bound=Callable[..., Any])

CARD_PASSWORD = ("JPKI_CARD_PASSWORD", "Card signature password")
SIGN_PASSWORD = ("JPKI_SIGN_PASSWORD", "Phone signature password")
NEW_SIGN_PASSWORD = ("JPKI_NEW_SIGN_PASSWORD", "New phone signature password")
AUTH_PIN = ("JPKI_AUTH_PIN", "Phone user-authentication PIN (4 digits)")


@dataclass
class Options:
    home: Path
    service_url: str | None

    def phone(self) -> flows.Phone:
        return flows.open_phone(self.home, self.service_url)


def fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def command(name: str | None = None) -> Callable[[F], F]:
    """Register a command whose refusals become one line on stderr (set JPKI_APP_DEBUG=1 for tracebacks)."""
    def register(function: F) -> F:
        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except (AppError, SecretRuleViolation) as exc:
                fail(str(exc))
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise
            except Exception as exc:
                if os.environ.get("JPKI_APP_DEBUG"):
                    raise
                fail(f"unexpected {type(exc).__name__}: {exc}")

        app.command(name)(run)
        return function
    return register


def secret(source: tuple[str, str], new: bool = False, rule: Callable[[str], str] | None = None) -> str:
    """The secret from its environment variable, else prompted without echo (twice when ``new``).

    A prompted new secret that breaks ``rule`` is asked again, with the rule's message (which
    never contains the secret); one from the environment is checked by the flow instead.
    """
    env, prompt = source
    value = os.environ.get(env)
    if value is not None:
        return value
    while True:
        value = typer.prompt(prompt, hide_input=True)
        try:
            if rule is not None:
                rule(value)
        except SecretRuleViolation as exc:
            typer.echo(f"{exc}; try again", err=True)
            continue
        if not new or typer.prompt("Repeat for confirmation", hide_input=True) == value:
            return value
        typer.echo("the two entries do not match; try again", err=True)


def _options(ctx: typer.Context) -> Options:
    return ctx.obj


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path = typer.Option(Path("var/phone"), "--home", envvar="JPKI_APP_HOME",
                              help="The simulated phone's folder: se/ (secure element) and app/ (app data)."),
    service: str | None = typer.Option(None, "--service", envvar="JPKI_SERVICE_URL",
                                          help=f"Lifecycle service URL (default: the one registered with, "
                                               f"else {flows.DEFAULT_SERVICE_URL})."),
) -> None:
    ctx.obj = Options(home, service)
    _quiet_libraries()


def _quiet_libraries() -> None:
    """Keep library logs off the terminal: pyHanko logs every failed validation with a traceback,
    which the verdict already says in one line. With no handler configured, Python's last-resort
    handler would print them; a null handler on the root logger prevents that. Where logging is
    configured already (pytest, an embedding program), it is left alone."""
    root = logging.getLogger()
    if not root.handlers and not os.environ.get("JPKI_APP_DEBUG"):
        root.addHandler(logging.NullHandler())


# -- registration and status ---------------------------------------------------------------------

@command()
def register(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The My Number card file (jpki-ca card issue)."),
    model: str = typer.Option(flows.DEFAULT_DEVICE_MODEL, "--model", help="Device model told to the service."),
    key_algorithm: str = typer.Option("rsa2048", "--key-algorithm", help="rsa2048 (default) or p256."),
) -> None:
    """Copy the card's certificates onto this phone. Secrets: JPKI_CARD_PASSWORD, JPKI_SIGN_PASSWORD, JPKI_AUTH_PIN."""
    if key_algorithm not in ("rsa2048", "p256"):
        fail(f"--key-algorithm {key_algorithm!r}: use rsa2048 or p256")
    reader = CardReader(card)
    card_password = secret(CARD_PASSWORD)
    new_password = secret(SIGN_PASSWORD, new=True, rule=normalise_signature_password)
    new_pin = secret(AUTH_PIN, new=True, rule=check_pin)
    registration = flows.register(_options(ctx).phone(), reader, card_password, new_password, new_pin, model,
                                  key_algorithm)
    typer.echo(f"registered this phone: registration {registration.registration_id} ({registration.state})")
    if registration.case_reference:
        typer.echo(f"case reference: {registration.case_reference} (give it when you call the My Number line)")
    _print_certificates(registration)
    if registration.superseded:
        typer.echo(f"  superseded (revoked, their phones delete their copy when next online): "
                   f"{', '.join(registration.superseded)}")
    if registration.suspension_code:
        typer.echo(f"Write down your suspension code: {registration.suspension_code} — the call centre asks "
                   "for it if your phone is lost")
    if registration.state == "pending":
        typer.echo("the CA has not issued the certificates yet; `jpki-app status` fetches them when it has")


@command()
def status(ctx: typer.Context,
           as_json: bool = typer.Option(False, "--json", help="Print JSON, PEMs included.")) -> None:
    """Ask the service for this phone's registration; delete a revoked or expired copy from the SE.

    A registration that ended on this phone (revoke, found revoked or expired, stale) is still shown,
    with whether the CA has its end (ca sync), until `jpki-app forget`.
    """
    report = flows.status(_options(ctx).phone())
    ended = report.ended
    if as_json:
        typer.echo(json.dumps({
            "registration": report.registration.document if report.registration else None,
            "registration_id": (report.registration.registration_id if report.registration
                                else ended.registration_id if ended else None),
            "suspension_code": report.suspension_code,
            "copy_deleted": report.copy_deleted, "stored": list(report.stored),
            "secure_element": report.in_secure_element,
            # The owner token stays on the phone: it reads the registration, it is never printed.
            "ended": {k: v for k, v in dataclasses.asdict(ended).items() if k != "owner_token"} if ended else None,
            "checked": report.checked, "check_error": report.check_error,
        }, indent=2, ensure_ascii=False))
        return
    if report.registration is None and ended is not None:
        _print_last_known(ended, report.check_error)
        return
    if report.registration is None:
        typer.echo("this phone holds no JPKI certificates")
        return
    registration = report.registration
    typer.echo(f"registration    {registration.registration_id}")
    typer.echo(f"case reference  {registration.case_reference or '-'} (give it when you call the My Number line)")
    if ended is None:
        code = report.suspension_code or "- (not kept on this phone: use the one you wrote down)"
        typer.echo(f"suspension code {code}")
        typer.echo(f"state           {registration.state}")
    else:
        typer.echo(f"state           {registration.state} ({_how_it_ended(ended)})")
    typer.echo(f"reason          {registration.reason or '-'}")
    if registration.last_change:
        change = registration.last_change
        typer.echo(f"last change     {change.event} by {change.actor}, {_when(change.at)}")
    pending = registration.document.get("pending_ca_operations")
    typer.echo(f"ca sync         {_ca_sync(registration.ca_sync, pending if isinstance(pending, int) else None)}"
               + (f" ({registration.ca_sync_reason})" if registration.ca_sync_reason else ""))
    _print_certificates(registration, None if ended else report.in_secure_element)
    if report.copy_deleted:
        typer.echo(f"the registration is {registration.state}: its copy in this phone's secure element was deleted")
    if ended is not None:
        _say_whether_the_ca_has_the_end(registration.ca_sync)
        return
    for kind in report.stored:
        typer.echo(f"the {kind} certificate was written into the secure element")
    if registration.state == "suspended":
        typer.echo(f"SUSPENDED by the call centre (reason: {registration.reason or '-'}) on "
                   f"{_when(_changed_at(registration, 'suspended'))}. Lift it with: {LIFT_COMMAND}")
    elif registration.signature_reissue_needed:
        lifted_at = _when(_changed_at(registration, "supervisor-lifted"))
        typer.echo(f"The call centre lifted the suspension on {lifted_at}: the user-authentication "
                   "certificate is good again, but this phone has no valid signature certificate until you "
                   f"prove your card and this phone. Reissue it with: {LIFT_COMMAND}")


ENDED_BY = {
    "owner-revoke": "revoked by you",
    "found-ended": "found ended by status",
    "stale-certificate": "certificates found left in the secure element, reported stale",
}
FORGET_HINT = ("its keys and certificates are deleted from this phone's secure element; `jpki-app status` shows it "
               "until you remove this record with `jpki-app forget`")


def _how_it_ended(ended: EndedRegistration) -> str:
    return f"ended on this phone: {ENDED_BY.get(ended.ended_by, ended.ended_by)}, {_when(ended.ended_at)}"


def _ca_sync(ca_sync: str | None, pending: int | None) -> str:
    """``done``, ``pending, 2 changes waiting``, ``failed``: the service's ca_sync with its waiting count."""
    if ca_sync == "pending" and pending:
        return f"pending, {pending} change{'s' if pending != 1 else ''} waiting"
    return ca_sync or "-"


def _say_whether_the_ca_has_the_end(ca_sync: str | None) -> None:
    if ca_sync == "done":
        typer.echo("the CA has it (ca_sync done): relying parties see its certificates revoked")
    elif ca_sync == "pending":
        typer.echo("the CA does not have it yet (ca_sync pending): the service keeps carrying it; "
                   "check again with `jpki-app status`")
    elif ca_sync == "failed":
        typer.echo("the CA refused a change (ca_sync failed): the service's operators can re-queue it; "
                   "check again with `jpki-app status`")
    typer.echo(f"this registration has ended: {FORGET_HINT}")


def _print_last_known(ended: EndedRegistration, why: str | None) -> None:
    """The ended registration as the phone last knew it: the service could not be asked now."""
    typer.echo(f"registration    {ended.registration_id}")
    typer.echo(f"state           {ended.state} ({_how_it_ended(ended)})")
    typer.echo(f"reason          {ended.reason or '-'}")
    typer.echo(f"ca sync         {_ca_sync(ended.ca_sync, ended.pending_ca_operations)}"
               + (f" ({ended.ca_sync_reason})" if ended.ca_sync_reason else ""))
    for kind, serial in ended.serials.items():
        typer.echo(f"  {kind:15} serial {serial}")
    typer.echo(f"could not check with the service now ({why or 'no answer'}): this is what the phone last knew, "
               f"as the service said on {_when(ended.checked_at)}")
    typer.echo(f"this registration has ended: {FORGET_HINT}")


def _say_where_the_ca_stands(registration: Registration, change: str) -> None:
    """Only the CA's record makes a change count for relying parties: say whether it has it yet."""
    if registration.ca_sync == "pending":
        typer.echo(f"{change} is recorded by the service and will be carried to the CA; the service keeps trying "
                   "until the CA has it (ca_sync pending). Check with `jpki-app status`: `ca sync done` means "
                   "the CA has it")
    elif registration.ca_sync == "failed":
        typer.echo(f"{change} is recorded by the service, but the CA refused it (ca_sync failed: "
                   f"{registration.ca_sync_reason or 'no reason given'}). The service's operators can re-queue "
                   "it; check with `jpki-app status`")


def _changed_at(registration: Registration, event: str) -> str:
    """When ``event`` happened, if it is the last change the service reports; else the last update."""
    change = registration.last_change
    if change is not None and change.event == event:
        return change.at
    return str(registration.document.get("updated_at") or "")


def _when(iso: str) -> str:
    """An ISO 8601 time as the owner reads it, in UTC to the minute (as given, if it does not parse)."""
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso or "an unknown date"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _print_certificates(registration: Registration, in_se: dict[str, str] | None = None) -> None:
    for certificate in registration.certificates:
        if not certificate.current:
            continue
        held = ""
        if in_se is not None:
            held = "in SE" if certificate.serial and in_se.get(certificate.kind) == certificate.serial else "not in SE"
        typer.echo(f"  {certificate.kind:15} serial {certificate.serial or '-':34} {certificate.status:8} {held}")


# -- owner actions -------------------------------------------------------------------------------

@command()
def revoke(ctx: typer.Context) -> None:
    """Revoke both certificates (e.g. before selling the phone). Secret: JPKI_SIGN_PASSWORD."""
    registration = flows.revoke(_options(ctx).phone(), secret(SIGN_PASSWORD))
    typer.echo(f"revoked: registration {registration.registration_id} is {registration.state}"
               f" ({registration.reason or 'owner-revoked'}); the certificates were deleted from the secure element")
    _say_where_the_ca_stands(registration, "the revocation")
    typer.echo("`jpki-app status` keeps showing this registration (and whether the CA has the revocation) "
               "until you remove the record with `jpki-app forget`")


@command()
def forget(ctx: typer.Context) -> None:
    """Remove the record of a registration that ended on this phone (revoked, expired, stale): `status` shows it
    until then. Refused while the phone holds a live registration."""
    ended = flows.forget_ended(_options(ctx).phone())
    if ended is None:
        typer.echo("this phone keeps no ended registration: nothing to forget")
        return
    typer.echo(f"forgot registration {ended.registration_id} ({ended.state}, {ended.reason or '-'}): "
               "`jpki-app status` no longer shows it")
    if ended.ca_sync != "done":
        typer.echo(f"when last checked ({_when(ended.checked_at)}) the CA did not have all of it yet "
                   f"(ca_sync {ended.ca_sync or '-'}); the service keeps carrying it all the same")


@command("reset-password")
def reset_password(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
) -> None:
    """Set a new phone signature password after a card proof. Secrets: JPKI_CARD_PASSWORD, JPKI_NEW_SIGN_PASSWORD."""
    reader = CardReader(card)
    card_password = secret(CARD_PASSWORD)
    new_password = secret(NEW_SIGN_PASSWORD, new=True, rule=normalise_signature_password)
    flows.reset_password(_options(ctx).phone(), reader, card_password, new_password)
    typer.echo("the phone signature password is set anew and its lock is cleared")


@command("lift-suspension")
def lift_suspension(
    ctx: typer.Context,
    card: Path = typer.Option(..., "--card", help="The card that registered this phone."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, PEMs included."),
) -> None:
    """The phone is found: lift the call centre's suspension, or reissue the signature certificate after a
    supervisor lifted it. The SE makes a new signature key (same password). Secret: JPKI_CARD_PASSWORD."""
    reader = CardReader(card)
    phone = _options(ctx).phone()
    registration = flows.lift_suspension(phone, reader, secret(CARD_PASSWORD))
    in_se = flows.serials_in_secure_element(phone)
    if as_json:
        typer.echo(json.dumps({"registration": registration.document, "secure_element": in_se},
                              indent=2, ensure_ascii=False))
        return
    reissued = registration.last_change is not None and registration.last_change.event == "signature-reissued"
    typer.echo(f"{'reissued the signature certificate' if reissued else 'lifted the suspension'}: "
               f"registration {registration.registration_id} is {registration.state}")
    _print_certificates(registration, in_se)
    replaced = registration.replaced("signature")
    old = f" (the old one, {replaced[-1].serial}, is {replaced[-1].status})" if replaced else ""
    reinstated = "" if reissued else "the user-authentication certificate is reinstated (same serial); "
    typer.echo(f"{reinstated}the signature certificate is new, for a new key made in the secure element, "
               f"under the same phone signature password{old}")
    signature = registration.current("signature")
    if signature is None or not signature.certificate_pem:
        typer.echo("the CA has not issued the new signature certificate yet; "
                   "`jpki-app status` fetches it when it has")
    else:
        _say_where_the_ca_stands(registration, "the change")


@command()
def login(ctx: typer.Context) -> None:
    """Log in to the demo relying party with the user-authentication key. Secret: JPKI_AUTH_PIN."""
    answer = flows.login(_options(ctx).phone(), secret(AUTH_PIN))
    typer.echo(f"logged in: certificate {answer.get('serial')}, OCSP {answer.get('ocsp')}")


# -- the phone's own life ------------------------------------------------------------------------

@command()
def uninstall(
    ctx: typer.Context,
    offline: bool = typer.Option(False, "--offline", help="Uninstall without network: the service is not told."),
) -> None:
    """Uninstall the app. Online: the certificates expire and leave the SE. Offline: they stay, live."""
    report = flows.uninstall(_options(ctx).phone(), offline)
    if offline:
        typer.echo("uninstalled offline: the service was not told")
        if report.registration_id:
            typer.echo(f"the secure element still holds the live certificates of registration "
                       f"{report.registration_id}; reinstall the app and open it online to end them")
        return
    if report.registration is not None:
        typer.echo(f"registration {report.registration_id} is {report.registration.state}"
                   f" ({report.registration.reason or '-'})")
    typer.echo("uninstalled: " + ("the certificates were deleted from the secure element"
                                  if report.copy_deleted else "the secure element held no certificates"))


@command("factory-reset")
def factory_reset(ctx: typer.Context) -> None:
    """Initialise the phone: the app's data is erased, the secure element is not."""
    phone = _options(ctx).phone()
    flows.factory_reset(phone)
    typer.echo("factory reset: the app's data is erased; the secure element was not touched")
    if phone.se.registration_id:
        typer.echo(f"it still holds the certificates of registration {phone.se.registration_id}")


@command()
def install(ctx: typer.Context) -> None:
    """Install and open the app online: certificates left in the SE are reported stale and deleted."""
    report = flows.install(_options(ctx).phone())
    if report.stale_registration_id:
        state = report.registration.state if report.registration else "?"
        typer.echo(f"found the certificates of registration {report.stale_registration_id} left in the secure "
                   f"element: the service was told (registration {state}) and they were deleted")
        typer.echo("`jpki-app status` shows that registration (and whether the CA has its end) until you remove "
                   "the record with `jpki-app forget`")
    elif report.discarded_unbound_keys:
        typer.echo("deleted keys of an enrolment the service never accepted")
    typer.echo("installed")


# -- documents -----------------------------------------------------------------------------------

@command()
def sign(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="The PDF to sign."),
    target: Path = typer.Argument(..., help="Where to write the signed PDF."),
    tsa_url: str | None = typer.Option(None, "--tsa-url", envvar="JPKI_TSA_URL",
                                          help="RFC 3161 timestamp authority (default: the CA's own, "
                                               "<CA URL>/tsa, from the signature certificate)."),
    tsa_root: Path | None = typer.Option(None, "--tsa-root", help="Root certificate of that TSA (PEM/DER), "
                                            "if it is not the CA's root."),
    no_timestamp: bool = typer.Option(False, "--no-timestamp",
                                      help="Sign without a signature timestamp (PAdES B-B): such a signature "
                                           "becomes invalid once the certificate is revoked."),
) -> None:
    ("PAdES-sign a PDF with the phone signature key, timestamped (B-LT). "  # still the docstring; one line in the help
     "Secret: JPKI_SIGN_PASSWORD (asked only to really sign).")
    if no_timestamp and tsa_url:
        fail("--no-timestamp and --tsa-url (or JPKI_TSA_URL) contradict each other; give one")
    timestamper = http_timestamper(tsa_url) if tsa_url else None
    signed = flows.sign_pdf(_options(ctx).phone(), source, target, lambda: secret(SIGN_PASSWORD), timestamper,
                            _certificates(tsa_root), timestamp=not no_timestamp)
    typer.echo(f"signed {signed.target} ({signed.level}) with phone signature certificate {signed.serial}")
    if signed.tsa:
        typer.echo(f"  timestamp from {signed.tsa}")


@command()
def verify(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="The signed PDF."),
    root: Path | None = typer.Option(None, "--root", help="Trusted root (PEM/DER); default: the root pinned "
                                        "at registration, else fetched through the certificate's caIssuers URLs."),
    tsa_root: Path | None = typer.Option(None, "--tsa-root", help="Trusted root of the timestamp authority, "
                                            "if it is not the CA's root."),
) -> None:
    """Judge every signature of a PDF (hard-fail revocation check). Exit 0 only if all are valid.

    A signature is judged at the current time, except one whose certificate was revoked after its
    trusted signature timestamp: that one is judged at the timestamp, with the revocation
    information embedded when it was signed.
    """
    trusted = _certificates(root)
    verdict = flows.verify_pdf(_options(ctx).phone(), source, trusted[0] if trusted else None, _certificates(tsa_root))
    if not verdict.signatures:
        typer.echo(f"{source}: no signature")
    for signature in verdict.signatures:
        typer.echo(f"{signature.field_name}: {signature.summary}")
        typer.echo(f"  signer       {signature.signer_name or '-'} (certificate {signature.serial})")
        typer.echo(f"  signed at    {signature.signed_at.isoformat() if signature.signed_at else '-'}"
                   " (as the signer says)")
        if signature.timestamp:
            trusted_word = "trusted" if signature.timestamp_trusted else "NOT trusted"
            typer.echo(f"  timestamp    {signature.timestamp.isoformat()} ({trusted_word} TSA)")
        judged = f"at its timestamp {signature.judged_at.isoformat()}" if signature.judged_at else "now"
        typer.echo(f"  judged       {judged}")
        typer.echo(f"  trust root   {signature.trust}")
    if not verdict.valid:
        raise typer.Exit(1)


def _certificates(path: Path | None) -> list[x509.Certificate]:
    if path is None:
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AppError(f"cannot read {path}: {exc.strerror}") from None
    return [load_certificate(data)]


def main() -> None:
    app()
